"""Storage faults between a write and its answer, as a store wrapper.

``FaultyStore`` sits where botocore's retries sit for S3: under the engine, over the store.

- **lost answer**: the write lands, its answer is lost, and the client sends it again, as
  botocore does after a 500 or a reset. The retry of a conditional write fails its
  condition because of the first attempt; a plain write lands twice.
- **stall**: the write waits until :meth:`FaultyStore.release` (a stalled connection). If
  the caller gives up on it (cancellation), the write is kept in :attr:`late` and lands
  whenever the test applies it with :meth:`land_late`, as a request that reached S3 whole
  and was applied after the client gave up. Its conditions are those it was sent with.

Faults are chosen by a rule on (operation, key, n-th write), so tests and the stateful test
can draw them. With ``land_soon``, a write given up on lands at the store's next call, as a
request applied within moments of the client giving up on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tmdb_async.lake.storage import Store

Rule = Callable[[str, str, int], str | None]
"""(operation, key, index of this write) -> ``"lost"``, ``"stall"`` or ``None``."""


@dataclass
class LateWrite:
    op: str
    key: str
    data: bytes
    kwargs: dict[str, Any]


@dataclass
class FaultyStore:
    inner: Store
    rule: Rule = lambda op, key, n: None
    land_soon: bool = False
    writes: int = 0
    lost: list[str] = field(default_factory=list)
    late: list[LateWrite] = field(default_factory=list)
    stalling: asyncio.Event = field(default_factory=asyncio.Event)  # a write is stalled
    given_up: asyncio.Event = field(default_factory=asyncio.Event)  # a stalled one cancelled
    given_up_at: float = 0.0  # time.monotonic() when the last stalled write was given up
    _gate: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, key: str) -> str:
        return self.inner.url(key)

    def release(self) -> None:
        self._gate.set()

    async def land_late(self) -> list[Exception | None]:
        """Apply the writes given up on, in order; what each answered (an exception or
        None)."""
        answers: list[Exception | None] = []
        for late in self.late:
            try:
                if late.op == "delete":
                    await self.inner.delete(late.key, **late.kwargs)
                elif late.op == "copy":
                    await self.inner.copy(late.kwargs["src_key"], late.key, **late.kwargs["kw"])
                else:
                    await self.inner.write(late.key, late.data, **late.kwargs)
                answers.append(None)
            except Exception as exc:  # the answer nobody reads
                answers.append(exc)
        self.late.clear()
        return answers

    async def _soon(self) -> None:
        if self.land_soon and self.late:
            await self.land_late()

    async def _do(self, op: str, key: str, data: bytes, kwargs: dict[str, Any]) -> Any:
        await self._soon()
        n = self.writes
        self.writes += 1
        fault = self.rule(op, key, n)
        if fault == "stall":
            self.stalling.set()
            try:
                await self._gate.wait()
            except asyncio.CancelledError:
                self.late.append(LateWrite(op, key, data, kwargs))
                self.given_up_at = time.monotonic()
                self.given_up.set()
                raise
        answer = await self._send(op, key, data, kwargs)
        if fault == "lost":
            self.lost.append(key)
            answer = await self._send(op, key, data, kwargs)  # botocore's retry
        return answer

    async def _send(self, op: str, key: str, data: bytes, kwargs: dict[str, Any]) -> Any:
        if op == "delete":
            return await self.inner.delete(key, **kwargs)
        if op == "copy":
            return await self.inner.copy(kwargs["src_key"], key, **kwargs["kw"])
        return await self.inner.write(key, data, **kwargs)

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        await self._do("write", key, data, {"content_type": content_type})
        return self.inner.url(key)

    async def write(self, key: str, data: bytes, content_type: str = "", **kw: Any) -> str:
        if content_type:
            kw["content_type"] = content_type
        answer: str = await self._do("write", key, data, kw)
        return answer

    async def delete(self, key: str, **kw: Any) -> None:
        await self._do("delete", key, b"", kw)

    async def copy(self, src_key: str, dst_key: str, **kw: Any) -> str | None:
        """A server-side copy is a write of ``dst_key``: its answer can be lost too."""
        answer: str | None = await self._do("copy", dst_key, b"", {"src_key": src_key, "kw": kw})
        return answer

    async def get(self, key: str) -> bytes | None:
        await self._soon()
        return await self.inner.get(key)

    async def read(self, key: str) -> tuple[bytes, str] | None:
        await self._soon()
        return await self.inner.read(key)

    async def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        await self._soon()
        return await self.inner.list(prefix, start_after)
