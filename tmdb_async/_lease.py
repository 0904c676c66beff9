"""The folder lock: a lease object written with S3 conditional requests.

``If-None-Match: *`` creates it, ``If-Match`` renews, takes over or releases it, so two writers
can never both believe they hold it. It expires: a writer killed while holding it blocks the
folder for at most the lease (60 s), or not at all when the next writer runs on the same
machine and sees that the holder's process is gone. A holder renews before each write once a
third of the lease is used, and stops with :class:`LeaseLost` if another writer took it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import StorageError
from .storage import Conflict, Store

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another writer took the folder lock over: stop writing at once."""


def _machine() -> str:
    """Identifies this kernel and pid namespace, to tell a dead local holder from a live
    one elsewhere (Lambda sandboxes can share host names and pids)."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id") as handle:
            parts.append(handle.read().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts) if len(parts) == 3 else ""


_MACHINE = _machine()


def _dead_here(info: Mapping[str, Any]) -> bool:
    if not _MACHINE or info.get("machine") != _MACHINE or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


@dataclass(slots=True)
class Lease:
    store: Store
    key: str
    owner: str
    clock: Callable[[], float]
    seconds: float
    etag: str = ""
    expires: float = 0.0

    def _body(self) -> bytes:
        self.expires = self.clock() + self.seconds
        info = {"owner": self.owner, "machine": _MACHINE, "pid": os.getpid()}
        return json.dumps({**info, "expires": self.expires}).encode()

    async def acquire(self, wait: float) -> None:
        give_up = time.monotonic() + wait
        delay = 0.01
        while True:
            with contextlib.suppress(Conflict):
                self.etag = await self.store.write(
                    self.key, self._body(), if_none_match=True, durable=False
                )
                return
            found = await self.store.read(self.key)
            if found is not None:
                data, etag = found
                try:
                    info = json.loads(data)
                    stale = self.clock() > float(info["expires"]) or _dead_here(info)
                except (ValueError, KeyError, TypeError):
                    info, stale = {}, True  # a damaged lock protects nothing
                if stale:
                    with contextlib.suppress(Conflict):
                        self.etag = await self.store.write(
                            self.key, self._body(), if_match=etag, durable=False
                        )
                        log.warning("took over the stale folder lock of %s", info.get("owner"))
                        return
                elif time.monotonic() > give_up:
                    raise StorageError(
                        f"{self.store.url(self.key)}: locked by another run "
                        f"({info.get('owner')}) for more than {wait:.0f} s"
                    )
            await asyncio.sleep(delay)
            delay = min(0.5, delay * 2)

    async def ensure(self) -> None:
        """Renew when a third of the lease is gone; raise :class:`LeaseLost` if taken."""
        if self.clock() < self.expires - self.seconds * 2 / 3:
            return
        try:
            self.etag = await self.store.write(
                self.key, self._body(), if_match=self.etag, durable=False
            )
        except Conflict:
            raise LeaseLost(self.key) from None

    async def release(self) -> None:
        try:
            await self.store.delete(self.key, if_match=self.etag)
        except Conflict:
            log.warning("the folder lock %s was taken over before release", self.key)
