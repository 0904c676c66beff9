"""Where things go in the lake: the date folders and the names of the files in them.

Under the destination (a local folder or ``s3://bucket[/prefix]``), for processing date D::

    Raw/TMDB/JSON/YYYY/MM/DD/<stem>-<commit:08d>-<part:02d>.json   data: ≤ chunk_size records
    Raw/TMDB/JSON/YYYY/MM/DD/_sidecars/<stem>-<commit:08d>.json    [{imdb_id, outcome, reason}]
    Raw/TMDB/JSON/YYYY/MM/DD/_manifests/<stem>-<run>.json          what one run did
    Raw/TMDB/JSON/YYYY/MM/DD/_ledger/…                             id → file (lake.ledger)
    Raw/TMDB/_state/…                          the id map, run pins, the refresh's state

``<stem>`` is the source file's name (``movies``, ``series``) or ``refresh``; ``<commit>``
numbers the folder's ledger commits; ``.jsonl`` instead of ``.json`` with
``--format jsonl``. For example ``movies-00000042-00.json``.

Only data files sit at the top of a date folder, so ``…/DD/*.json`` (or ``*.jsonl``) in
DuckDB, Polars, pandas or Spark reads records and nothing else; everything else is in
``_``-prefixed folders, which Spark, Hive, Glue and Athena skip as hidden.

The bytes of each file are :mod:`tmdb_async.lake.codec`'s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable

RAW_FOLDER = "Raw/TMDB/JSON"
STATE_FOLDER = "Raw/TMDB/_state"
_STEM = re.compile(r"[^A-Za-z0-9_-]+")


def date_folder(date: dt.date) -> str:
    return f"{RAW_FOLDER}/{date:%Y/%m/%d}"


_DATA_FILE = re.compile(rf"^{RAW_FOLDER}/(\d{{4}})/(\d{{2}})/(\d{{2}})/[^/_.][^/]*\.jsonl?$")


def data_file_date(key: str) -> dt.date | None:
    """The date of the folder holding ``key`` if ``key`` is a data file (``.json``/``.jsonl``
    at the top of a date folder, not ``_``-prefixed bookkeeping nor a ``.``-hidden temporary
    file), else ``None``."""
    if (m := _DATA_FILE.match(key)) is None:
        return None
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:  # e.g. a folder named 2024/13/45: not one of ours
        return None


def source_stem(source: str) -> str:
    """A readable, safe file-name stem from the source (``movies`` for …/movies.csv)."""
    name = source.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    stem = _STEM.sub("-", name).strip("-_.").lower()[:40]
    return stem or "ids"


def digest(identity: Iterable[object]) -> str:
    """12 hex characters naming a value: same identity, same name."""
    text = json.dumps(list(identity), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
