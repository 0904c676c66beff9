"""Prepare a CSV for Step Functions: its distinct ids as a small one-column CSV, and the
lake's id map compacted once for the whole execution.

The Distributed Map reads this file instead of the raw CSV, where one title's rows (one per
artist) could straddle two batches and be fetched twice. Invalid values are kept, so the
batch that gets them lists them in its sidecar.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any

from .config import Settings
from .errors import StorageError
from .idmap import LakeIdMap
from .ids import ReadStats, read_csv_ids
from .storage import LocalStore, S3Store, Store, open_s3, parse_s3, read_source
from .writer import digest, source_stem

log = logging.getLogger(__name__)


async def _compact_id_map(store: Store) -> None:
    """Fold the id map's segments once per execution, here, before the Map starts: its
    children start together and only read (see :mod:`tmdb_async.idmap`)."""
    try:
        await LakeIdMap(store, "prepare").load(compact=True)
    except StorageError as exc:
        log.warning("id map not compacted: %s", exc)


async def prepare_ids(settings: Settings) -> dict[str, Any]:
    """Write the distinct id values of ``settings.source`` under ``Raw/TMDB/_work/``."""
    settings.validate()
    dest_url = parse_s3(settings.dest, "dest")
    source_url = parse_s3(settings.source, "source")
    stats = ReadStats()
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="|", lineterminator="\n")
    writer.writerow(["id"])
    async with open_s3(bool(dest_url or source_url), 4) as s3:
        async for entry in read_csv_ids(
            read_source(settings.source, s3), where=settings.source, stats=stats
        ):
            writer.writerow([entry.imdb_id])
        store: Store = S3Store(s3, dest_url) if dest_url else LocalStore(settings.dest)
        key = f"Raw/TMDB/_work/{source_stem(settings.source)}-{digest([settings.source])}/ids.csv"
        url = await store.put(key, buffer.getvalue().encode(), "text/csv")
        await _compact_id_map(store)
    bucket, _, ids_key = url.removeprefix("s3://").partition("/")
    return {
        "ids_url": url,
        "ids_bucket": bucket if dest_url else None,
        "ids_key": ids_key if dest_url else url,
        "unique_ids": stats.distinct,
        "rows_read": stats.rows,
    }
