"""A dry run's view of the destination: everything it holds, and nothing written to it.

A refresh's dry run goes through the refresh's own steps (the state pinned the first time,
the plan saved as the change lists are read, the id map repaired), so that what it tells is
what a refresh would do. :class:`DryStore` keeps those writes in memory, over the real
destination: the run reads back what it wrote, with the same conditional semantics (create
only if absent, replace only a known version), and the destination is left as it was.
"""

from __future__ import annotations

from tmdb_async.errors import Conflict
from tmdb_async.lake.storage import Store, md5_hex

__all__ = ["DryStore"]


class DryStore:
    """``inner`` for reading; writes and deletes stay in this object."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self._written: dict[str, bytes] = {}
        self._deleted: set[str] = set()

    @property
    def written(self) -> list[str]:
        """The keys a real run would have written (for tests and logs)."""
        return sorted(self._written)

    def url(self, key: str) -> str:
        return self._inner.url(key)

    async def read(self, key: str) -> tuple[bytes, str] | None:
        if key in self._deleted:
            return None
        if key in self._written:
            data = self._written[key]
            return data, md5_hex(data)
        return await self._inner.read(key)

    async def get(self, key: str) -> bytes | None:
        found = await self.read(key)
        return None if found is None else found[0]

    async def write(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        durable: bool = True,
    ) -> str:
        if if_none_match or if_match is not None:
            found = await self.read(key)
            if (if_none_match and found is not None) or (
                if_match is not None and (found is None or found[1] != if_match)
            ):
                raise Conflict(self.url(key))
        self._written[key] = data
        self._deleted.discard(key)
        return md5_hex(data)

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        await self.write(key, data, content_type)
        return self.url(key)

    async def copy(self, src_key: str, dst_key: str, *, if_none_match: bool = True) -> str | None:
        found = await self.read(src_key)
        if found is None:
            return None
        return await self.write(dst_key, found[0], if_none_match=if_none_match)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        if if_match is not None:
            found = await self.read(key)
            if found is not None and found[1] != if_match:
                raise Conflict(self.url(key))
        self._written.pop(key, None)
        self._deleted.add(key)

    async def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        keys = set(await self._inner.list(prefix, start_after)) - self._deleted
        keys |= {
            key
            for key in self._written
            if key.startswith(prefix) and (start_after is None or key > start_after)
        }
        return sorted(keys)
