"""Writing files: ≤100-record JSON chunks, ``_``-prefixed sidecars and the run manifest.

Layout under the destination (local folder or ``s3://bucket[/prefix]``)::

    Raw/TMDB/JSON/YYYY/MM/DD/<stem>-<tag>-<first position>.json   data, ≤ chunk_size records
    Raw/TMDB/JSON/YYYY/MM/DD/_not_found-<stem>-<tag>-<slice>.json  sidecars (readers skip "_")
    Raw/TMDB/JSON/YYYY/MM/DD/_manifest-<stem>-<tag>-<slice>.json   what the run did
    Raw/TMDB/JSON/YYYY/MM/DD/_parts/<stem>-<tag>-<first position>.json  one per finished chunk

A chunk's *part marker* is written after its data file and lists what became of each of its
ids. It is the record that the chunk is finished: a restarted run skips chunks that have one
(``resume``), and ``skip_existing`` reads them all to skip ids ingested by earlier runs.

Names are deterministic: ``tag`` hashes the source and the settings that shape the records,
and each data file of a CSV run is named by the position (in the source's distinct ids) of
the first id of its chunk, on fixed ``chunk_size`` boundaries. Running the same batch again
therefore replaces its own files, and batches that split one file never collide. A
Distributed Map batch has no positions in the file: its chunks are named by a hash of their
ids, so a chunk redone by a continuation or a retried invocation lands on the same name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .config import OutputFormat
from .storage import Store

RAW_FOLDER = "Raw/TMDB/JSON"
_STEM = re.compile(r"[^A-Za-z0-9_-]+")


def date_folder(date: dt.date) -> str:
    return f"{RAW_FOLDER}/{date:%Y/%m/%d}"


def source_stem(source: str) -> str:
    """A readable, safe file-name stem from the source (``movies`` for …/movies.csv)."""
    name = source.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    stem = _STEM.sub("-", name).strip("-_.").lower()[:40]
    return stem or "ids"


def run_tag(identity: Iterable[object]) -> str:
    """12 hex characters naming the job: same identity, same names."""
    text = json.dumps(list(identity), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_records(records: Sequence[Mapping[str, Any]], fmt: OutputFormat) -> bytes:
    if fmt == "jsonl":
        return b"".join(
            json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            for record in records
        )
    return json.dumps(list(records), ensure_ascii=False, separators=(",", ":")).encode()


class ChunkWriter:
    """Names and writes one run's files into a :class:`~tmdb_async.storage.Store`."""

    def __init__(
        self,
        store: Store,
        *,
        date: dt.date,
        stem: str,
        tag: str,
        slice_label: str,
        fmt: OutputFormat,
    ) -> None:
        self.store = store
        self.folder = date_folder(date)
        self.prefix = f"{stem}-{tag}"
        self.slice_label = slice_label
        self.fmt = fmt
        self.extension = "jsonl" if fmt == "jsonl" else "json"

    def data_key(self, chunk: str) -> str:
        return f"{self.folder}/{self.prefix}-{chunk}.{self.extension}"

    def sidecar_key(self, name: str) -> str:
        return f"{self.folder}/_{name}-{self.prefix}-{self.slice_label}.json"

    async def write_chunk(self, chunk: str, records: Sequence[Mapping[str, Any]]) -> str:
        content_type = "application/x-ndjson" if self.fmt == "jsonl" else "application/json"
        return await self.store.put(
            self.data_key(chunk), encode_records(records, self.fmt), content_type
        )

    async def write_sidecar(self, name: str, entries: Sequence[Mapping[str, Any]]) -> str:
        body = json.dumps(list(entries), ensure_ascii=False, indent=1).encode()
        return await self.store.put(self.sidecar_key(name), body, "application/json")

    def part_key(self, chunk: str) -> str:
        return f"{self.folder}/_parts/{self.prefix}-{chunk}.json"

    async def write_part(self, chunk: str, marker: Mapping[str, Any]) -> str:
        body = json.dumps(marker, ensure_ascii=False, separators=(",", ":")).encode()
        return await self.store.put(self.part_key(chunk), body, "application/json")

    async def load_parts(self) -> dict[int, dict[str, Any]]:
        """Part markers of this job (same tag and date), by chunk start."""
        keys = await self.store.list(f"{self.folder}/_parts/{self.prefix}-")
        markers = await _load_json(self.store, keys)
        return {int(m["start"]): m for m in markers if isinstance(m, dict) and "start" in m}

    async def write_manifest(self, manifest: Mapping[str, Any]) -> str:
        body = json.dumps(manifest, ensure_ascii=False, indent=2, default=str).encode()
        return await self.store.put(self.sidecar_key("manifest"), body, "application/json")


async def _load_json(store: Store, keys: Sequence[str], concurrency: int = 16) -> list[Any]:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(key: str) -> Any:
        async with semaphore:
            data = await store.get(key)
        try:
            return json.loads(data) if data else None
        except ValueError:
            return None  # a foreign or damaged file is not a marker

    return list(await asyncio.gather(*(one(key) for key in keys)))


async def ingested_ids(store: Store) -> set[str]:
    """Ids that earlier runs wrote as records anywhere under ``Raw/TMDB/JSON/``."""
    keys = [k for k in await store.list(f"{RAW_FOLDER}/") if "/_parts/" in k]
    found: set[str] = set()
    for marker in await _load_json(store, keys):
        if isinstance(marker, dict):
            found.update(marker.get("records", []))
    return found
