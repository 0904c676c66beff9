"""Development tools for tmdb-ingest: never part of what ships.

- :mod:`tmdb_devtools.fake_tmdb`: a fake TMDB v3 server (aiohttp, loopback) for the demo,
  the tests and the benchmarks, with TMDB's rate limit, errors and faults;
- :mod:`tmdb_devtools.local_map`: the Step Functions Distributed Map, run locally;
- :mod:`tmdb_devtools.csvgen`: Compass-style CSVs whose ids follow the fake's rule.

``python -m tmdb_devtools fake-tmdb …`` and ``python -m tmdb_devtools local-map …`` run the
first two from the repository root. The Lambda layer and the ``tmdb-ingest`` wheel hold only
``tmdb_async`` (and ``handler.py`` for the layer); dependencies flow one way: these tools
import the engine, never the reverse.
"""
