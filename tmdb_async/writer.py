"""Writing files: ≤100-record JSON chunks, ``_``-prefixed sidecars and the run manifest.

Layout under the destination (local folder or ``s3://bucket[/prefix]``)::

    Raw/TMDB/JSON/YYYY/MM/DD/<stem>-<tag>-<first position>.json   data, ≤ chunk_size records
    Raw/TMDB/JSON/YYYY/MM/DD/_not_found-<stem>-<tag>-<slice>.json  sidecars (readers skip "_")
    Raw/TMDB/JSON/YYYY/MM/DD/_manifest-<stem>-<tag>-<slice>.json   what the run did

Names are deterministic: ``tag`` hashes the source and the settings that shape the records,
and each data file is named by the position (in the source's distinct ids) of the first id
of its chunk, on fixed ``chunk_size`` boundaries. Running the same batch again therefore
replaces its own files, and batches that split one file never collide.
"""

from __future__ import annotations

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


def decode_records(data: bytes, fmt: OutputFormat) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.splitlines() if line.strip()]
    loaded = json.loads(data)
    return loaded if isinstance(loaded, list) else []


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
        self.files: list[str] = []

    def data_key(self, first_position: int) -> str:
        return f"{self.folder}/{self.prefix}-{first_position:08d}.{self.extension}"

    def sidecar_key(self, name: str) -> str:
        return f"{self.folder}/_{name}-{self.prefix}-{self.slice_label}.json"

    async def write_chunk(self, first_position: int, records: Sequence[Mapping[str, Any]]) -> str:
        content_type = "application/x-ndjson" if self.fmt == "jsonl" else "application/json"
        url = await self.store.put(
            self.data_key(first_position), encode_records(records, self.fmt), content_type
        )
        self.files.append(url)
        return url

    async def write_sidecar(self, name: str, entries: Sequence[Mapping[str, Any]]) -> str:
        body = json.dumps(list(entries), ensure_ascii=False, indent=1).encode()
        return await self.store.put(self.sidecar_key(name), body, "application/json")

    async def write_manifest(self, manifest: Mapping[str, Any]) -> str:
        body = json.dumps(manifest, ensure_ascii=False, indent=2, default=str).encode()
        return await self.store.put(self.sidecar_key("manifest"), body, "application/json")
