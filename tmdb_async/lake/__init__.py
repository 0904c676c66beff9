"""The lake: everything under ``Raw/TMDB/`` in S3 (or a local folder), and nothing about TMDB.

- :mod:`~tmdb_async.lake.layout`: where things go, the date folders and file names.
- :mod:`~tmdb_async.lake.codec`: the data files, JSON arrays or JSON Lines.
- :mod:`~tmdb_async.lake.storage`: the store (S3 or a local folder) and its conditional writes.
- :mod:`~tmdb_async.lake.ledger`: a date folder's commits; each id in exactly one place.
- :mod:`~tmdb_async.lake.lease` and :mod:`~tmdb_async.lake.homes`: the ledger's lock and its
  index of where each id lives.
- :mod:`~tmdb_async.lake.idmap`: every title the lake holds, with its TMDB id and profile.
- :mod:`~tmdb_async.lake.profile`: the record settings a title was written with.
- :mod:`~tmdb_async.lake.manifest` and :mod:`~tmdb_async.lake.runstate`: what each run did and
  which runs hold which dates.

This layer imports nothing from :mod:`tmdb_async.tmdb` or :mod:`tmdb_async.jobs`
(``tests/test_layers.py``).
"""
