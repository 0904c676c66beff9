-- The current state of every title (DuckDB): the latest record of each imdb_id across every
-- date folder, leaving out the titles whose latest event is TMDB's deletion.
-- First:  SET VARIABLE lake = 's3://data-lake-x';  -- the --dest (a local folder works too)
-- A record's processing date is its date folder, Raw/TMDB/JSON/YYYY/MM/DD/, read from
-- filename. Data files (.json arrays and .jsonl lines) sit at the top of a date folder;
-- a title TMDB deleted is a 'deleted' entry in a later folder's _sidecars/. Within one
-- folder an imdb_id has one home, so the latest date names one record or one deletion.
WITH records AS (
    SELECT *, strptime(regexp_extract(filename, 'Raw/TMDB/JSON/([0-9]{4}/[0-9]{2}/[0-9]{2})/', 1),
                       '%Y/%m/%d')::DATE AS processing_date
    FROM read_json(getvariable('lake') || '/Raw/TMDB/JSON/*/*/*/[!_.]*.json*',
                   union_by_name = true, filename = true)
),
deleted AS (
    -- The data files are in the list too, so that it matches in a lake without sidecars.
    SELECT imdb_id, strptime(regexp_extract(filename, 'Raw/TMDB/JSON/([0-9]{4}/[0-9]{2}/[0-9]{2})/', 1),
                             '%Y/%m/%d')::DATE AS processing_date
    FROM read_json([getvariable('lake') || '/Raw/TMDB/JSON/*/*/*/[!_.]*.json*',
                    getvariable('lake') || '/Raw/TMDB/JSON/*/*/*/_sidecars/*.json'],
                   columns = {imdb_id: 'VARCHAR', outcome: 'VARCHAR'},
                   filename = true, allow_empty = true)
    WHERE outcome = 'deleted' AND contains(filename, '/_sidecars/')
),
latest AS (
    SELECT imdb_id, max(processing_date) AS processing_date
    FROM (SELECT imdb_id, processing_date FROM records
          UNION ALL SELECT imdb_id, processing_date FROM deleted)
    GROUP BY imdb_id
)
SELECT records.* EXCLUDE (filename)
FROM records JOIN latest USING (imdb_id, processing_date)
ORDER BY imdb_id;
