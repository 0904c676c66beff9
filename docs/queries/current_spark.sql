-- The current state of every title (Spark SQL): the latest record of each imdb_id across
-- every date folder, leaving out the titles whose latest event is TMDB's deletion.
-- First:  SET lake=s3a://data-lake-x;  -- the --dest (a local folder works too)
-- A record's processing date is its date folder, Raw/TMDB/JSON/YYYY/MM/DD/, read from
-- input_file_name(). Spark's line mode reads both data formats: a .json file is one line
-- holding an array (one row per element), a .jsonl file one object per line. A title TMDB
-- deleted is a 'deleted' entry in a later folder's _sidecars/: that folder is hidden from a
-- plain path, so it is named in the glob; the data files are in the same glob so that it
-- matches even in a lake without sidecars. Within one folder an imdb_id has one home, so
-- the latest date names one record or one deletion.
CREATE OR REPLACE TEMPORARY VIEW tmdb_records
USING json OPTIONS (path '${lake}/Raw/TMDB/JSON/*/*/*/[!_.]*.json*');

CREATE OR REPLACE TEMPORARY VIEW tmdb_events (imdb_id STRING, outcome STRING)
USING json OPTIONS (path '${lake}/Raw/TMDB/JSON/*/*/*/{[!_.]*.json*,_sidecars/*.json}');

WITH records AS (
    SELECT *, to_date(regexp_extract(input_file_name(),
                                     'Raw/TMDB/JSON/([0-9]{4}/[0-9]{2}/[0-9]{2})/', 1),
                      'yyyy/MM/dd') AS processing_date
    FROM tmdb_records
),
deleted AS (
    SELECT imdb_id, to_date(regexp_extract(input_file_name(),
                                           'Raw/TMDB/JSON/([0-9]{4}/[0-9]{2}/[0-9]{2})/', 1),
                            'yyyy/MM/dd') AS processing_date
    FROM tmdb_events
    WHERE outcome = 'deleted' AND input_file_name() LIKE '%/\\_sidecars/%'
),
latest AS (
    SELECT imdb_id, max(processing_date) AS processing_date
    FROM (SELECT imdb_id, processing_date FROM records
          UNION ALL SELECT imdb_id, processing_date FROM deleted)
    GROUP BY imdb_id
)
SELECT records.*
FROM records JOIN latest USING (imdb_id, processing_date)
ORDER BY imdb_id;
