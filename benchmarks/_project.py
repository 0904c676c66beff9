"""The project's dev tools that the benchmarks use, imported in this one place.

The fake TMDB and the CSV generator are development tools (:mod:`tmdb_devtools`), not the
engine; when they move or are renamed, only this file changes. The engine itself
(``tmdb_async``, ``handler``) is imported where it is measured, in :mod:`benchmarks.clients`
and :mod:`benchmarks.scenarios.cold_start`. The fleet scenario also runs the tests' state
machine harness (``tests/support/sfn.py``, with moto), imported there when it runs.
"""

from __future__ import annotations

from tmdb_devtools.csvgen import kind_of, title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdbConfig, changed_ids, kind_of_number

#: run as ``python -m FAKE_TMDB_MODULE`` in its own process (see :mod:`benchmarks.fake_server`)
FAKE_TMDB_MODULE = "tmdb_devtools.fake_tmdb"

__all__ = [
    "FAKE_TMDB_MODULE",
    "FakeTmdbConfig",
    "changed_ids",
    "kind_of",
    "kind_of_number",
    "title_ids",
    "write_csv",
]
