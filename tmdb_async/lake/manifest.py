"""A run's manifest under ``<date folder>/_manifests/``: its settings, counts, files, outcome."""

from __future__ import annotations

import json
import time
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
