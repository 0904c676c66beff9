"""The folder lock: a lease object written with S3 conditional requests.

``If-None-Match: *`` creates it, ``If-Match`` renews, takes over or releases it, so two writers
can never both believe they hold it. No writer trusts another's clock, nor its own wall
clock: every duration is measured on the measuring process's monotonic clock.

- The holder counts its lease from the moment it *sent* the write that renewed it, so the
  lease it believes in ends no later than the one anyone else can see.
- A waiting writer counts from the moment it first *saw* the lock's current version, and
  takes it over only once that version has stayed unchanged for the whole lease (at once
  when the holder is a dead process on the same machine). A renewal changes the version.
- Every storage call the holder makes under the lease ends a sixth of the lease (10 s of
  60) before the lease does (:meth:`Lease.held` cancels it and reports :class:`LeaseLost`),
  so no slow write, botocore's retries included, reaches past the lease; renewing when a
  third of it is used leaves each call at least half the lease (30 s).

Writers whose wall clocks disagree by any amount are therefore fenced alike. What remains is
a request that S3 receives whole and applies more than that sixth after the client
gave up on it; the ledger fences its data writes with conditions too (see
:mod:`tmdb_async.lake.ledger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tmdb_async.errors import Conflict, LeaseLost, StorageError
from tmdb_async.lake.storage import Store, delete_once, write_once

log = logging.getLogger(__name__)

MARGIN_SHARE = 1 / 6  # of the lease, between a holder's last storage call and its end (10 s)


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


_LIVE: set[str] = set()
"""Holders of this process between the start of :meth:`Lease.acquire` and
:meth:`Lease.release` (or an acquire that failed): a lock this process wrote for a holder
not in it is a dead one's, such as an acquire cut short by a deadline after its write
landed, in a warm Lambda container whose next invocation must not wait the lease out."""


def _dead_here(info: Mapping[str, Any]) -> bool:
    if not _MACHINE or info.get("machine") != _MACHINE or not isinstance(info.get("pid"), int):
        return False
    if info["pid"] == os.getpid():
        return info.get("holder") not in _LIVE
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _lease_seconds(info: Mapping[str, Any], default: float) -> float:
    seconds = info.get("seconds")
    if isinstance(seconds, int | float) and 0 < seconds <= 3600:
        return float(seconds)
    return default


@dataclass(slots=True)
class Lease:
    """One holder's lease on ``key``. ``owner`` names the run (in logs and in the lock);
    ``holder`` tells this writer's own lock from any other's, so a writer whose answer was
    lost, or whose call ran out the clock, takes back a lock nobody took from it; ``clock``
    is this process's monotonic clock (injectable for tests)."""

    store: Store
    key: str
    owner: str
    clock: Callable[[], float]
    seconds: float
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)  # this lease's writer
    etag: str = ""
    renewed: float = float("-inf")  # clock() when the write that renewed it was sent
    # A call given up on may still land until a sixth of the lease later: until then the
    # holder keeps the lock, so nobody else writes in that window (see :meth:`release`).
    settle: float = float("-inf")
    _renewals: int = 0

    def _body(self) -> bytes:
        self._renewals += 1
        info = {
            "owner": self.owner,
            "holder": self.holder,
            "renewal": self._renewals,
            "nonce": uuid.uuid4().hex[:12],  # no two bodies alike, whichever Lease wrote it
            "seconds": self.seconds,
            "machine": _MACHINE,
            "pid": os.getpid(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),  # for people only
        }
        return json.dumps(info).encode()

    async def _take(self, *, if_none_match: bool = False, if_match: str | None = None) -> None:
        sent = self.clock()
        self.etag = await write_once(
            self.store,
            self.key,
            self._body(),
            if_none_match=if_none_match,
            if_match=if_match,
            durable=False,
        )
        self.renewed = sent

    async def acquire(self, wait: float) -> None:
        _LIVE.add(self.holder)
        try:
            await self._acquire(wait)
        except BaseException:
            _LIVE.discard(self.holder)  # a lock of ours that landed anyway is a dead one's
            raise

    async def _acquire(self, wait: float) -> None:
        give_up = time.monotonic() + wait
        delay = 0.01
        seen: tuple[str, float] | None = None  # the lock's version, and when we first saw it
        while True:
            with contextlib.suppress(Conflict):
                await self._take(if_none_match=True)
                return
            found = await self.store.read(self.key)
            if found is not None:
                data, etag = found
                if seen is None or seen[0] != etag:
                    seen = (etag, self.clock())
                try:
                    info = json.loads(data)
                    if not isinstance(info, dict):
                        raise TypeError
                    mine = info.get("holder") == self.holder
                    unchanged = self.clock() - seen[1]
                    stale = unchanged >= _lease_seconds(info, self.seconds) or _dead_here(info)
                except (ValueError, TypeError):
                    info, mine, stale = {}, False, True  # a damaged lock protects nothing
                if mine or stale:
                    with contextlib.suppress(Conflict):
                        await self._take(if_match=etag)
                        if not mine:
                            log.warning("took over the stale folder lock of %s", info.get("owner"))
                        return
                elif time.monotonic() > give_up:
                    raise StorageError(
                        f"{self.store.url(self.key)}: locked by another run "
                        f"({info.get('owner')}) for more than {wait:.0f} s"
                    )
            await asyncio.sleep(delay)
            delay = min(0.5, delay * 2)

    def _left(self) -> float:
        return self.renewed + self.seconds * (1 - MARGIN_SHARE) - self.clock()

    async def ensure(self) -> None:
        """Renew when a third of the lease is gone; raise :class:`LeaseLost` if taken."""
        if self.clock() < self.renewed + self.seconds / 3:
            return
        try:
            async with self._bounded():
                await self._take(if_match=self.etag)
        except Conflict:
            raise LeaseLost(self.key) from None

    @contextlib.asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        left = self._left()
        if left <= 0:
            raise LeaseLost(f"{self.key}: the lease ran out")
        try:
            async with asyncio.timeout(left) as limit:
                yield
        except TimeoutError:
            if not limit.expired():
                raise
            self.settle = max(self.settle, self.clock() + self.seconds * MARGIN_SHARE)
            raise LeaseLost(f"{self.key}: a storage call outlasted the lease") from None

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Run one storage step under the lease: renewed first if due, and cancelled before
        the lease could run out (:class:`LeaseLost`)."""
        await self.ensure()
        async with self._bounded():
            yield

    async def release(self) -> None:
        """Give the lock up, but not before a call this holder gave up on can no longer land
        (``settle``): the next holder must never see it land after its own writes."""
        wait = self.settle - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await delete_once(self.store, self.key, if_match=self.etag)
        except Conflict:
            log.warning("the folder lock %s was taken over before release", self.key)
        # Only once the lock is gone: a release that failed leaves a lock that is waited out.
        _LIVE.discard(self.holder)
