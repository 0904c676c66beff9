"""Killing a run at a chosen storage write, and what a dead process leaves behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tmdb_async.lake.storage import Store


def declare_dead(lake: Path) -> None:
    """The killed writer is a dead process: what its lease and its run's pin say after a real
    SIGKILL (an in-process kill leaves this live process's pid in them)."""
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    for lock in [*lake.rglob("_ledger/lock.json"), *lake.glob("Raw/TMDB/_state/runs/*/*.json")]:
        lock.write_text(json.dumps({**json.loads(lock.read_text()), "pid": dead}))


class Killed(BaseException):
    """The process died: nothing it does from now on reaches storage."""


class KillingStore:
    """A store that dies before its ``budget``-th write (put, write, copy or delete)."""

    def __init__(self, inner: Store, budget: int) -> None:
        self.inner = inner
        self.budget = budget
        self.dead = False

    def _spend(self) -> None:
        if self.dead or self.budget <= 0:
            self.dead = True
            raise Killed
        self.budget -= 1

    def url(self, key: str) -> str:
        return self.inner.url(key)

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        self._spend()
        return await self.inner.put(key, data, content_type)

    async def write(self, key: str, data: bytes, content_type: str = "", **kw: Any) -> str:
        self._spend()
        return await self.inner.write(key, data, **kw)

    async def delete(self, key: str, **kw: Any) -> None:
        self._spend()
        await self.inner.delete(key, **kw)

    async def copy(self, src_key: str, dst_key: str, **kw: Any) -> str | None:
        self._spend()
        return await self.inner.copy(src_key, dst_key, **kw)

    async def get(self, key: str) -> bytes | None:
        if self.dead:
            raise Killed
        return await self.inner.get(key)

    async def read(self, key: str) -> tuple[bytes, str] | None:
        if self.dead:
            raise Killed
        return await self.inner.read(key)

    async def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        if self.dead:
            raise Killed
        return await self.inner.list(prefix, start_after)
