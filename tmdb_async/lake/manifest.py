"""A run's manifest under ``<date folder>/_manifests/``: its settings, counts, files, outcome."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from tmdb_async.lake.storage import Store

MANIFEST_FOLDER = "_manifests"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Manifest:
    """One run's manifest file, rewritten as the run goes."""

    def __init__(self, store: Store, folder: str, name: str, head: dict[str, Any]) -> None:
        self._store = store
        self.key = f"{folder}/{MANIFEST_FOLDER}/{name}.json"
        self.body: dict[str, Any] = {**head, "outcome": "running", "started_at": now_iso()}

    async def write(self) -> str:
        data = json.dumps(self.body, ensure_ascii=True, indent=2, default=str).encode()
        return await self._store.put(self.key, data, "application/json")

    async def finish(self, fields: dict[str, Any]) -> str:
        """Rewrite the manifest with the run's end: its ``outcome``, counts, files, error."""
        self.body.update(fields, finished_at=now_iso())
        return await self.write()


async def read_manifests(store: Store, keys: Iterable[str]) -> list[Mapping[str, Any]]:
    """The manifests at ``keys`` that hold their run's ``settings``, in key order; one that
    is gone, damaged or without settings is left out (a manifest is a record, never a
    lock: what reads it must go on without it)."""
    found = []
    for key in sorted(keys):
        try:
            body = json.loads(await store.get(key) or b"null")
        except ValueError:
            continue
        if isinstance(body, Mapping) and isinstance(body.get("settings"), Mapping):
            found.append(body)
    return found
