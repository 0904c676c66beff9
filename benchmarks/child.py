"""One measured client in a fresh interpreter: ``python -m benchmarks.child SPEC_JSON``.

Started by :func:`benchmarks.runner.run_child` with the repository as the working directory.
The client's libraries are imported before the first sample (as in a Lambda's init phase),
so CPU time excludes imports; peak RSS includes them. The report is one JSON line on stdout.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import clients


def _rusage() -> tuple[float, float, int]:
    """CPU seconds (user, sys) and peak RSS in KiB of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, _peak_rss_kb(usage.ru_maxrss)


def _peak_rss_kb(maxrss: int) -> int:
    """Peak RSS of this process image. Linux keeps ``ru_maxrss`` across fork + exec, so a
    child would report its parent's peak (the benchmark holding a 50 MB CSV in memory);
    ``VmHWM`` belongs to the new image alone."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return maxrss


def child_main(spec: dict[str, Any]) -> int:
    mode = spec["mode"]
    runner: Callable[[dict[str, Any]], dict[str, Any]]
    if mode == "engine":
        import tmdb_async  # noqa: F401  (imports before the "before" sample, like a Lambda)

        runner = clients.engine
    elif mode == "bare":
        import aiohttp  # noqa: F401

        runner = clients.bare
    elif mode == "seq":
        runner = clients.seq
    else:
        raise SystemExit(f"unknown child mode {mode!r}")
    user0, sys0, rss_imports = _rusage()
    started = time.perf_counter()
    profiler: Any = None
    if spec.get("profile"):
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
        profiler.start()
    report = runner(spec)
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        Path(spec["profile"]).write_text(profiler.output_text(unicode=True, show_all=False))
    user1, sys1, rss_peak = _rusage()
    report.update(
        mode=mode,
        seconds=seconds,
        cpu_user=user1 - user0,
        cpu_sys=sys1 - sys0,
        maxrss_kb=rss_peak,
        rss_after_imports_kb=rss_imports,
    )
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m benchmarks.child SPEC_JSON")
    raise SystemExit(child_main(json.loads(sys.argv[1])))
