"""An asyncio event loop on a virtual clock, for tests about time that must not take it.

``loop.time()`` starts at ``start`` (0) and moves only when the loop has nothing to do but
wait for its next timer: the selector then jumps the clock to that timer instead of blocking.
So ``await asyncio.sleep(100)`` returns at once while ``loop.time()`` advances by exactly
100, timers fire in the order and at the instants the code under test asked for, and a test
measures pacing without sleeping for real or depending on the machine's load. This is the
technique aiolimiter's own tests use (they patch the loop's ``time``).

Real I/O still works: the loop polls its real selector (its self-pipe, sockets) without
blocking first, and only advances the clock when nothing is ready.

Usage, from a plain (synchronous) pytest test::

    def test_something() -> None:
        async def scenario() -> None:
            ...

        run_virtual(scenario())
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# How long (real seconds) an idle loop with no timer at all may wait for outside events (a
# thread's call_soon_threadsafe) before the test is declared deadlocked: virtual time cannot
# advance to "never".
IDLE_TIMEOUT = 10.0


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock advances only when it would otherwise wait."""

    def __init__(self, start: float = 0.0, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._virtual_now = start
        super().__init__(_VirtualSelector(self, idle_timeout))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward: the selector's way of "waiting" ``seconds``.

        Always by at least one tick (the next float), as a real clock would between two
        looks: code that computes a wait too small to move the sum (aiolimiter rounding a
        level of ~1e-17 into a timer due "now") would otherwise spin forever at one instant.
        """
        later = self._virtual_now + seconds
        self._virtual_now = later if later > self._virtual_now else math.nextafter(later, math.inf)


class _VirtualSelector(selectors.DefaultSelector):
    """Polls the real selector; where it would block for ``timeout``, advances the clock."""

    def __init__(self, loop: VirtualClockLoop, idle_timeout: float) -> None:
        super().__init__()
        self._clock = loop
        self._idle_timeout = idle_timeout

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            # No timer will ever fire: only another thread can wake the loop now.
            ready = super().select(self._idle_timeout)
            if not ready:
                raise RuntimeError(
                    f"virtual clock: nothing scheduled and no event for {self._idle_timeout} s"
                    " (deadlock in the test?)"
                )
            return ready
        # Nothing ready to run (CPython's loop keeps its runnable callbacks in ``_ready``):
        # the loop would wait for, or spin on, its next timer.
        if timeout > 0 or not getattr(self._clock, "_ready", None):
            self._clock.advance(timeout)
        return []


def run_virtual(main: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualClockLoop`, then close it.

    Like :func:`asyncio.run` (tasks left over are cancelled, async generators closed), so it
    must be called where no loop is running: from a synchronous test.
    """
    with asyncio.Runner(loop_factory=lambda: VirtualClockLoop(start)) as runner:
        return runner.run(main)
