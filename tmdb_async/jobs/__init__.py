"""The jobs: a run end to end, built on :mod:`tmdb_async.tmdb` and :mod:`tmdb_async.lake`.

- :mod:`~tmdb_async.jobs.ingest`: a run (``tmdb-ingest run``, a Lambda batch): ids in, records
  out, its summary and manifest.
- :mod:`~tmdb_async.jobs.source`: a CSV (or a Distributed Map batch) read into distinct ids.
- :mod:`~tmdb_async.jobs.chunks`: the producer, the workers and the committer of a run.
- :mod:`~tmdb_async.jobs.refresh`: ``tmdb-ingest refresh``, TMDB's change lists since the
  last refresh.
- :mod:`~tmdb_async.jobs.prepare`: the state machine's first step: the ids, the batch plan.
- :mod:`~tmdb_async.jobs.fleet`, :mod:`~tmdb_async.jobs.deadlines`,
  :mod:`~tmdb_async.jobs.summary`: the fleet's shares, stopping in time, what a run did.

The entry points (:mod:`tmdb_async.cli`, :mod:`tmdb_async.events`) sit above this layer.
"""
