"""tmdb-ingest: enrich a data lake's IMDb ids with TMDB v3, at TMDB's speed limit.

The public surface is small on purpose:

- :class:`Settings` / :class:`Credentials` — what a run needs, validated.
- :func:`run` — the engine (async): CSV or Distributed Map items → TMDB → JSON files.
- :class:`Summary` — what a run did; its ``as_dict()`` is the CLI/Lambda result.
- :class:`IngestError` and :class:`ExitCode` — expected failures and their exit codes.

Everything else (modules whose names say what they do) is detail.
"""

from tmdb_async._version import __version__
from tmdb_async.credentials import Credentials
from tmdb_async.errors import ExitCode, IngestError
from tmdb_async.jobs.ingest import Summary, run
from tmdb_async.settings import Settings

__all__ = ["Credentials", "ExitCode", "IngestError", "Settings", "Summary", "__version__", "run"]
