-- The current state of every title (Athena, engine v3): two tables over the lake and one
-- view. Replace s3://data-lake-x with the --dest. Both tables read text lines, so the view
-- reads both data formats: a .json file is one line holding a JSON array of records, a
-- .jsonl file one record per line (the JSON SerDe could read only the .jsonl files).
-- The partition column dt is the date folder, Raw/TMDB/JSON/YYYY/MM/DD/: the processing
-- date. Field delimiter \001 never occurs in JSON text (control characters are escaped).

-- Every data file at the top of a date folder; Athena skips the _-prefixed folders below it.
CREATE EXTERNAL TABLE tmdb_lines (line string)
PARTITIONED BY (dt string)
ROW FORMAT DELIMITED
STORED AS TEXTFILE
LOCATION 's3://data-lake-x/Raw/TMDB/JSON/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy/MM/dd',
  'projection.dt.range' = '2020/01/01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://data-lake-x/Raw/TMDB/JSON/${dt}/'
);

-- The sidecar files, each one line holding a JSON array of {imdb_id, outcome, reason, ...}.
-- A partition's location is the _sidecars/ folder itself: only the part of a path below
-- the location is checked for hidden names, and the files there are named like
-- movies-00000001.json (docs/aws-and-tooling.md).
CREATE EXTERNAL TABLE tmdb_sidecar_lines (line string)
PARTITIONED BY (dt string)
ROW FORMAT DELIMITED
STORED AS TEXTFILE
LOCATION 's3://data-lake-x/Raw/TMDB/JSON/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy/MM/dd',
  'projection.dt.range' = '2020/01/01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://data-lake-x/Raw/TMDB/JSON/${dt}/_sidecars/'
);

-- The latest record of each imdb_id across every date folder, leaving out the titles whose
-- latest event is TMDB's deletion. Within one folder an imdb_id has one home, so the latest
-- date names one record or one deletion. Fields: json_extract_scalar(record, '$.title').
CREATE OR REPLACE VIEW tmdb_current AS
WITH records AS (
    SELECT json_extract_scalar(r, '$.imdb_id') AS imdb_id,
           CAST(date_parse(dt, '%Y/%m/%d') AS date) AS processing_date,
           r AS record
    FROM tmdb_lines
    CROSS JOIN UNNEST(
        IF(starts_with(line, '['), CAST(json_parse(line) AS array(json)),
           ARRAY[json_parse(line)])
    ) AS t (r)
),
deleted AS (
    SELECT json_extract_scalar(e, '$.imdb_id') AS imdb_id,
           CAST(date_parse(dt, '%Y/%m/%d') AS date) AS processing_date
    FROM tmdb_sidecar_lines
    CROSS JOIN UNNEST(CAST(json_parse(line) AS array(json))) AS t (e)
    WHERE json_extract_scalar(e, '$.outcome') = 'deleted'
),
latest AS (
    SELECT imdb_id, max(processing_date) AS processing_date
    FROM (SELECT imdb_id, processing_date FROM records
          UNION ALL SELECT imdb_id, processing_date FROM deleted)
    GROUP BY imdb_id
)
SELECT records.imdb_id,
       json_extract_scalar(records.record, '$.media_type') AS media_type,
       CAST(json_extract_scalar(records.record, '$.id') AS bigint) AS tmdb_id,
       coalesce(json_extract_scalar(records.record, '$.title'),
                json_extract_scalar(records.record, '$.name')) AS title,
       records.processing_date,
       records.record
FROM records
JOIN latest
  ON records.imdb_id = latest.imdb_id AND records.processing_date = latest.processing_date;

-- SELECT media_type, count(*) FROM tmdb_current GROUP BY 1;
