"""Talking to TMDB: everything that knows TMDB's API v3, and nothing about the lake.

- :mod:`~tmdb_async.tmdb.client`: one aiohttp session per run; a title's lookup (by the id
  map's TMDB id, by IMDb id, or ``/find`` then details) and TMDB's change lists.
- :mod:`~tmdb_async.tmdb.answers`: what an answer means (pure functions), and the answers a
  lookup gives (found, not found, deleted, failed).
- :mod:`~tmdb_async.tmdb.retry`: the retry policy, tenacity's ``AsyncRetrying`` with
  backoff and ``Retry-After``, and the hold while TMDB answers nobody.
- :mod:`~tmdb_async.tmdb.breaker`: the breaker that tells a dead TMDB from a bad moment.
- :mod:`~tmdb_async.tmdb.route`: which lookup to try first for an id of unknown kind.
- :mod:`~tmdb_async.tmdb.throttle`: TMDB's rate limit, shared by every request of a run.

This layer imports nothing from :mod:`tmdb_async.lake` or :mod:`tmdb_async.jobs`
(``tests/test_layers.py``). Inside it, imports go one way: client → retry → breaker, and
client → answers.
"""
