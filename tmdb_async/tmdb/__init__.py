"""Talking to TMDB: everything that knows TMDB's API v3, and nothing about the lake.

- :mod:`~tmdb_async.tmdb.client`: one aiohttp session per run; a title's lookup (``/find``,
  then details), retries and backoff, the answer each title gets.
- :mod:`~tmdb_async.tmdb.route`: which lookup to try first for an id of unknown kind.
- :mod:`~tmdb_async.tmdb.throttle`: TMDB's rate limit, shared by every request of a run.

This layer imports nothing from :mod:`tmdb_async.lake` or :mod:`tmdb_async.jobs`
(``tests/test_layers.py``).
"""
