"""A store in a dict, with no thread: for lake tests on the virtual clock.

:class:`~tmdb_async.lake.storage.LocalStore` runs its file calls in threads, and a virtual
clock (``tests/support/virtual_clock.py``) jumps to the next timer while a thread works, as
if the call had taken that long: a lease's bound would then cut off calls that took no time.
Here every call completes within the loop step that makes it, so virtual time passes only
where the code under test waits. Same semantics as the local folder: whole-object writes,
MD5 ETags, conditional writes and deletes that raise :class:`Conflict`, sorted listings.
"""

from __future__ import annotations

from pathlib import Path

from tmdb_async.lake.storage import Conflict, md5_hex


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def url(self, key: str) -> str:
        return f"memory://{key}"

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        await self.write(key, data, content_type)
        return self.url(key)

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
        current = self.objects.get(key)
        if if_none_match and current is not None:
            raise Conflict(key)
        if if_match is not None and (current is None or md5_hex(current) != if_match):
            raise Conflict(key)
        self.objects[key] = bytes(data)
        return md5_hex(data)

    async def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    async def read(self, key: str) -> tuple[bytes, str] | None:
        data = self.objects.get(key)
        return None if data is None else (data, md5_hex(data))

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        current = self.objects.get(key)
        if if_match is not None and (current is None or md5_hex(current) != if_match):
            raise Conflict(key)
        self.objects.pop(key, None)

    async def copy(self, src_key: str, dst_key: str, *, if_none_match: bool = True) -> str | None:
        """A write of the source's bytes (through :meth:`write`, so a subclass watching
        writes sees the file arrive under its name)."""
        data = self.objects.get(src_key)
        if data is None:
            return None
        return await self.write(dst_key, data, if_none_match=if_none_match)

    async def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        keys = sorted(k for k in self.objects if k.startswith(prefix))
        return keys if start_after is None else [k for k in keys if k > start_after]

    def objects_under(self, part: str) -> list[str]:
        """The keys holding ``part``."""
        return [key for key in self.objects if part in key]

    def dump(self, root: Path) -> None:
        """Write every object under ``root``, as a local folder would hold them."""
        for key, data in self.objects.items():
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
