#!/usr/bin/env python3
"""Benchmark suite for tmdb-ingest: how close a run gets to TMDB's rate limit, and at what cost.

Every figure is a *ratio* of two things measured side by side in the same invocation, because
the machines this runs on are shared and noisy: absolute seconds move from run to run, the
ratio of two neighbouring measurements much less.

Layout of one invocation:

- the fake TMDB (``python -m tmdb_async.fake_tmdb``) runs in its own process on loopback, so
  its CPU time does not compete with the client's event loop;
- each measured client (the engine, a bare aiohttp loop, the seeds' sequential urllib loop)
  runs in a fresh child process (``run.py --child SPEC``), so its CPU time (``getrusage``)
  and peak RSS (``ru_maxrss``) belong to that run alone; it prints one JSON line.

Usage::

    python benchmarks/run.py            # full run (~5 min on 2 cores): results/latest.json,
                                        # results/scaling.png and the table in BENCHMARKS.md
    python benchmarks/run.py --quick    # seconds-long smoke version (used by the test suite)

See ``benchmarks/BENCHMARKS.md`` for what each figure means and what limits it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make tmdb_async and tests.support importable
    sys.path.insert(0, str(ROOT))

BENCH_DIR = ROOT / "benchmarks"
RESULTS = BENCH_DIR / "results"
TMP = RESULTS / "tmp"  # git-ignored scratch space (CSVs, engine output)
MARKDOWN = BENCH_DIR / "BENCHMARKS.md"
TABLE_START = "<!-- results:start -->"
TABLE_END = "<!-- results:end -->"

TOKEN = "bench-token-3c5e"
LATENCY = 0.05  # seconds the fake adds to every answer (roughly TMDB's from a nearby region)
# Latency-bound runs draw each answer's latency from LATENCY ± JITTER/2 (same mean). With a
# constant latency, N workers that start together stay in lockstep: the fake receives them
# as one burst, answers them one after another, and the last of each burst waits for the
# others on both sides (measured: a bare loop 8% slower than the same loop with jitter).
JITTER = 0.01
TMDB_RATE = 40.0  # requests/s: what the fake enforces in the rate-bound case, and the client's
UNLIMITED = 100_000.0  # client rate for "no limit" runs
LANGUAGE = "pt-BR"  # the engine's default; the bare loops ask for the same
APPEND = "credits,keywords,external_ids"  # the engine's default append_to_response
COLD_IMPORTS = "import aiohttp, aioboto3, tenacity, aiolimiter"
HEAVY_MODULES = ("pandas", "numpy", "boto3", "botocore", "aioboto3", "matplotlib")


@dataclass(frozen=True)
class Plan:
    """Sizes of one invocation: the full run or the quick smoke run."""

    quick: bool
    rate_ids: int  # ids of the rate-bound runs (engine, full and find)
    seq_ids: int  # ids of the seeds' sequential loop (a subset: it is slow by design)
    latency_ids: int
    cpu_ids: int
    pairs: int  # engine/bare pairs per ratio; the median of the pair ratios is reported
    memory_small: int
    memory_large: int
    memory_max_artists: int  # rows per id are 1..this: 6 gives ~3.5 rows per id
    cold_repeats: int
    scaling: tuple[int, ...]
    scaling_ids_per_worker: int


FULL = Plan(
    quick=False,
    rate_ids=1000,
    seq_ids=200,
    latency_ids=1000,
    cpu_ids=2000,
    pairs=3,
    memory_small=1000,
    memory_large=100_000,
    memory_max_artists=6,
    cold_repeats=7,
    scaling=(1, 5, 10, 20, 40),
    scaling_ids_per_worker=30,
)
QUICK = Plan(
    quick=True,
    rate_ids=30,
    seq_ids=5,
    latency_ids=100,
    cpu_ids=200,
    pairs=1,
    memory_small=100,
    memory_large=2000,
    memory_max_artists=6,
    cold_repeats=1,
    scaling=(1, 20),
    scaling_ids_per_worker=6,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the fake TMDB in its own process ------------------------------------------------------


def _cpu_seconds_of(pid: int) -> float | None:
    """user+sys CPU seconds of another process (Linux /proc), ``None`` elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class FakeServer:
    """``python -m tmdb_async.fake_tmdb`` on 127.0.0.1 with a free port, stopped on exit."""

    def __init__(
        self, *, latency: float = 0.0, rate_limit: float | None = None, jitter: float = 0.0
    ) -> None:
        self.latency = latency
        self.jitter = jitter
        self.rate_limit = rate_limit
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="fake-", dir=TMP))

    def __enter__(self) -> FakeServer:
        port_file = self._folder / "port"
        command = [
            sys.executable,
            "-m",
            "tmdb_async.fake_tmdb",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--token",
            TOKEN,
            "--latency",
            str(self.latency),
        ]
        if self.rate_limit is not None:
            command += ["--rate-limit", str(self.rate_limit)]
        if self.jitter:
            command += ["--latency-jitter", str(self.jitter)]
        stderr = (self._folder / "stderr").open("wb")
        with stderr:
            self._proc = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + 20.0
        while not port_file.exists():
            if self._proc.poll() is not None:
                raise RuntimeError(f"fake TMDB exited: {self._stderr()}")
            if time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"fake TMDB did not start in 20 s: {self._stderr()}")
            time.sleep(0.02)
        port = int(port_file.read_text().strip())
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stderr(self) -> str:
        with contextlib.suppress(OSError):
            return (self._folder / "stderr").read_text(errors="replace")[-2000:]
        return ""

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self._folder, ignore_errors=True)

    def cpu_seconds(self) -> float | None:
        return None if self._proc is None else _cpu_seconds_of(self._proc.pid)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/__reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/__stats", timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data


# --- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One id list, as a Compass-style CSV (for the engine) and a plain list (for loops)."""

    ids: list[str]
    csv: Path
    id_file: Path
    needed_full: int  # requests a find + details run needs: 2 per found id, 1 per unknown
    found: int


def make_input(count: int, folder: Path, *, max_artists: int = 4, start: int = 1_000_000) -> Input:
    from tests.support.csvgen import kind_of, title_ids, write_csv

    ids = title_ids(count, "movie", start=start)
    stem = f"ids-{count}-{start}-{max_artists}"
    csv_path = folder / f"{stem}.csv"
    id_file = folder / f"{stem}.txt"
    if not csv_path.exists():
        write_csv(csv_path, ids, max_artists=max_artists)
        id_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
    found = sum(1 for imdb_id in ids if kind_of(int(imdb_id[2:])) == "movie")
    return Input(ids, csv_path, id_file, needed_full=2 * found + (count - found), found=found)


def needed_requests(data: Input, detail: str) -> int:
    return data.needed_full if detail == "full" else len(data.ids)


# --- children: one measured client per process ---------------------------------------------


def run_child(spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``spec`` in a fresh interpreter; return its JSON report."""
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"child {spec['mode']} failed ({completed.returncode}): {completed.stderr[-3000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"child {spec['mode']} printed no report: {completed.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


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

        runner = _child_engine
    elif mode == "bare":
        import aiohttp  # noqa: F401

        runner = _child_bare
    elif mode == "seq":
        runner = _child_seq
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


def _child_engine(spec: dict[str, Any]) -> dict[str, Any]:
    from tmdb_async import Credentials, Settings, run

    settings = Settings(
        source=spec["csv"],
        dest=spec["dest"],
        credentials=Credentials(read_access_token=TOKEN),
        tmdb_url=spec["url"],
        rate=spec["rate"],
        concurrency=spec["concurrency"],
        detail=spec["detail"],
        kind="movie",
    )
    summary = asyncio.run(run(settings))
    return {
        "status": summary.status,
        "ids": summary.unique_ids,
        "records": summary.records,
        "not_found": summary.not_found,
        "failed": summary.failed,
        "invalid": summary.invalid,
        "requests": summary.requests,
        "retries": summary.retries,
        "throttled_429": summary.throttled_429,
        "files": len(summary.files),
        "rows_read": summary.rows_read,
        "engine_seconds": summary.seconds,
    }


def _child_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """The floor: one aiohttp session, N workers, find (+ details), parse JSON; nothing else."""
    import aiohttp

    ids = Path(spec["ids"]).read_text(encoding="utf-8").split()
    url, detail, concurrency = spec["url"], spec["detail"], spec["concurrency"]
    headers = {"Accept": "application/json", "Authorization": f"Bearer {TOKEN}"}
    find_params = {"external_source": "imdb_id", "language": LANGUAGE}
    detail_params = {"language": LANGUAGE, "append_to_response": APPEND}
    counts: Counter[str] = Counter()
    request_options: dict[str, Any] = {}

    async def main() -> None:
        if spec.get("timeout"):
            request_options["timeout"] = aiohttp.ClientTimeout(total=spec["timeout"])
        pending = iter(ids)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def get(path: str, params: dict[str, str]) -> Any:
                async with session.get(
                    url + path, params=params, headers=headers, **request_options
                ) as response:
                    counts[f"status_{response.status}"] += 1
                    counts["requests"] += 1
                    body = await response.read()
                    return json.loads(body) if response.status == 200 else None

            async def worker() -> None:
                for imdb_id in pending:
                    found = await get(f"/3/find/{imdb_id}", find_params)
                    movies = (found or {}).get("movie_results") or []
                    if not movies:
                        counts["not_found"] += 1
                        continue
                    if detail == "full":
                        details = await get(f"/3/movie/{movies[0]['id']}", detail_params)
                        if details is None:
                            counts["failed"] += 1
                            continue
                    counts["records"] += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(main())
    return {
        "ids": len(ids),
        "records": counts["records"],
        "not_found": counts["not_found"],
        "failed": counts["failed"],
        "requests": counts["requests"],
        "throttled_429": counts["status_429"],
    }


def _child_seq(spec: dict[str, Any]) -> dict[str, Any]:
    """The seeds' way: one id after another, blocking urllib requests, find then details."""
    ids = Path(spec["ids"]).read_text(encoding="utf-8").split()
    url, detail = spec["url"], spec["detail"]
    headers = {"Accept": "application/json", "Authorization": f"Bearer {TOKEN}"}
    counts: Counter[str] = Counter()

    def get(path: str, params: dict[str, str]) -> Any:
        request = urllib.request.Request(
            f"{url}{path}?{urllib.parse.urlencode(params)}", headers=headers
        )
        for _ in range(10):
            counts["requests"] += 1
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                exc.read()
                if exc.code == 404:
                    return None
                if exc.code != 429:
                    raise
                counts["throttled_429"] += 1
                time.sleep(1.0)
        raise RuntimeError(f"{path}: still throttled after 10 attempts")

    find_params = {"external_source": "imdb_id", "language": LANGUAGE}
    detail_params = {"language": LANGUAGE, "append_to_response": APPEND}
    for imdb_id in ids:
        movies = (get(f"/3/find/{imdb_id}", find_params) or {}).get("movie_results") or []
        if not movies:
            counts["not_found"] += 1
            continue
        if detail == "full" and get(f"/3/movie/{movies[0]['id']}", detail_params) is None:
            counts["failed"] += 1
            continue
        counts["records"] += 1
    return {
        "ids": len(ids),
        "records": counts["records"],
        "not_found": counts["not_found"],
        "failed": counts["failed"],
        "requests": counts["requests"],
        "throttled_429": counts["throttled_429"],
    }


# --- measurements --------------------------------------------------------------------------


class Bench:
    """One invocation: inputs, servers and children, collecting a JSON-able result."""

    def __init__(self, plan: Plan, work: Path, profile: bool) -> None:
        self.plan = plan
        self.work = work
        self.profile = profile
        self.runs = 0

    def engine(
        self,
        server: FakeServer,
        data: Input,
        *,
        concurrency: int,
        rate: float = UNLIMITED,
        detail: str = "full",
        label: str = "",
    ) -> dict[str, Any]:
        self.runs += 1
        dest = self.work / f"out-{self.runs}"
        spec: dict[str, Any] = {
            "mode": "engine",
            "url": server.url,
            "csv": str(data.csv),
            "dest": str(dest),
            "rate": rate,
            "concurrency": concurrency,
            "detail": detail,
        }
        if self.profile and label:
            spec["profile"] = str(self.work / f"profile-{label}.txt")
        try:
            return self._measure(server, spec)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def bare(
        self, server: FakeServer, data: Input, *, concurrency: int, detail: str = "full"
    ) -> dict[str, Any]:
        spec = {
            "mode": "bare",
            "url": server.url,
            "ids": str(data.id_file),
            "concurrency": concurrency,
            "detail": detail,
        }
        return self._measure(server, spec)

    def seq(self, server: FakeServer, data: Input, *, detail: str = "full") -> dict[str, Any]:
        spec = {"mode": "seq", "url": server.url, "ids": str(data.id_file), "detail": detail}
        return self._measure(server, spec)

    @staticmethod
    def _measure(server: FakeServer, spec: dict[str, Any]) -> dict[str, Any]:
        server.reset()
        cpu0 = server.cpu_seconds()
        report = run_child(spec)
        cpu1 = server.cpu_seconds()
        stats = server.stats()
        report["server"] = {
            "requests": stats["total_requests"],
            "throttled": stats["throttled"],
            "max_in_flight": stats["max_in_flight"],
            "cpu_seconds": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 3),
        }
        report["ids_per_s"] = report["ids"] / report["seconds"] if report["seconds"] else 0.0
        report["cpu_ms_per_id"] = 1000 * (report["cpu_user"] + report["cpu_sys"]) / report["ids"]
        return report

    # -- 1. rate-bound --

    def rate_bound(self) -> dict[str, Any]:
        data = make_input(self.plan.rate_ids, self.work)
        seq_data = make_input(self.plan.seq_ids, self.work)
        out: dict[str, Any] = {
            "ids": len(data.ids),
            "found": data.found,
            "tmdb_rate": TMDB_RATE,
            "latency_s": LATENCY,
        }
        for detail in ("full", "find"):
            # A fresh server per run: its sliding window must not remember the previous run.
            with FakeServer(latency=LATENCY, rate_limit=TMDB_RATE) as server:
                log(f"rate-bound: engine, detail={detail}, {len(data.ids)} ids at 40 req/s")
                report = self.engine(
                    server,
                    data,
                    concurrency=20,
                    rate=TMDB_RATE,
                    detail=detail,
                    label=f"rate-{detail}",
                )
            needed = needed_requests(data, detail)
            ideal = needed / TMDB_RATE
            out[detail] = {
                "run": report,
                "needed_requests": needed,
                "ideal_seconds": ideal,
                "wall_over_ideal": report["seconds"] / ideal,
                "share_429": report["throttled_429"] / max(1, report["requests"]),
            }
        with FakeServer(latency=LATENCY, rate_limit=TMDB_RATE) as server:
            log(f"rate-bound: seeds' sequential loop, {len(seq_data.ids)} ids")
            report = self.seq(server, seq_data)
        seq_per_id = report["seconds"] / len(seq_data.ids)
        ideal_per_id = seq_data.needed_full / TMDB_RATE / len(seq_data.ids)
        engine_per_id = out["full"]["run"]["seconds"] / len(data.ids)
        out["sequential"] = {
            "run": report,
            "ids": len(seq_data.ids),
            "seconds_per_id": seq_per_id,
            "wall_over_ideal": seq_per_id / ideal_per_id,
            "engine_speedup": seq_per_id / engine_per_id,
            "projected_seconds_for_rate_ids": seq_per_id * len(data.ids),
        }
        return out

    # -- 2. latency-bound and 3. CPU-bound: engine against the bare loop, in pairs --

    def _pairs(
        self, server: FakeServer, data: Input, concurrency: int, detail: str, label: str
    ) -> dict[str, Any]:
        pairs = []
        for index in range(self.plan.pairs):
            log(
                f"{label}: pair {index + 1}/{self.plan.pairs}, {len(data.ids)} ids, c={concurrency}"
            )
            # Alternate the order so that a drift in machine load does not favour one side.
            if index % 2 == 0:
                engine = self.engine(
                    server, data, concurrency=concurrency, detail=detail, label=label
                )
                bare = self.bare(server, data, concurrency=concurrency, detail=detail)
            else:
                bare = self.bare(server, data, concurrency=concurrency, detail=detail)
                engine = self.engine(server, data, concurrency=concurrency, detail=detail)
            pairs.append(
                {
                    "engine": engine,
                    "bare": bare,
                    "ratio": engine["ids_per_s"] / bare["ids_per_s"],
                    "cpu_ratio": engine["cpu_ms_per_id"] / bare["cpu_ms_per_id"],
                }
            )
        return {
            "ids": len(data.ids),
            "concurrency": concurrency,
            "detail": detail,
            "ratio": statistics.median(p["ratio"] for p in pairs),
            "cpu_ratio": statistics.median(p["cpu_ratio"] for p in pairs),
            "engine_ids_per_s": statistics.median(p["engine"]["ids_per_s"] for p in pairs),
            "bare_ids_per_s": statistics.median(p["bare"]["ids_per_s"] for p in pairs),
            "engine_cpu_ms_per_id": statistics.median(p["engine"]["cpu_ms_per_id"] for p in pairs),
            "bare_cpu_ms_per_id": statistics.median(p["bare"]["cpu_ms_per_id"] for p in pairs),
            "pairs": pairs,
        }

    def latency_bound(self) -> dict[str, Any]:
        data = make_input(self.plan.latency_ids, self.work)
        with FakeServer(latency=LATENCY - JITTER / 2, jitter=JITTER) as server:
            result = self._pairs(server, data, 20, "full", "latency")
        result["latency_s"] = LATENCY
        result["jitter_s"] = JITTER
        return result

    def cpu_bound(self) -> dict[str, Any]:
        data = make_input(self.plan.cpu_ids, self.work)
        with FakeServer(latency=0.0) as server:
            result = self._pairs(server, data, 64, "full", "cpu")
        server_ms = [
            1000 * p[side]["server"]["cpu_seconds"] / p[side]["ids"]
            for p in result["pairs"]
            for side in ("engine", "bare")
            if p[side]["server"]["cpu_seconds"] is not None
        ]
        result["server_cpu_ms_per_id"] = statistics.median(server_ms) if server_ms else None
        return result

    # -- 4. memory --

    def memory(self) -> dict[str, Any]:
        plan = self.plan
        small = make_input(plan.memory_small, self.work, max_artists=plan.memory_max_artists)
        log(f"memory: writing a CSV of {plan.memory_large} ids")
        large = make_input(plan.memory_large, self.work, max_artists=plan.memory_max_artists)
        runs = {}
        with FakeServer(latency=0.0) as server:
            for name, data in (("small", small), ("large", large)):
                log(f"memory: engine, detail=find, {len(data.ids)} ids, c=64")
                runs[name] = self.engine(
                    server, data, concurrency=64, detail="find", label=f"memory-{name}"
                )
        small_mb = runs["small"]["maxrss_kb"] / 1024
        large_mb = runs["large"]["maxrss_kb"] / 1024
        return {
            "small": runs["small"],
            "large": runs["large"],
            "small_ids": len(small.ids),
            "large_ids": len(large.ids),
            "large_csv_rows": runs["large"]["rows_read"],
            "large_csv_mb": large.csv.stat().st_size / 2**20,
            "small_peak_mb": small_mb,
            "large_peak_mb": large_mb,
            "imports_mb": runs["large"]["rss_after_imports_kb"] / 1024,
            "ratio": large_mb / small_mb,
        }

    # -- 5. cold start --

    def cold_start(self) -> dict[str, Any]:
        commands = {
            "interpreter": "pass",
            "handler": "import handler",
            "libraries": COLD_IMPORTS,
            "handler_and_aioboto3": "import handler, aioboto3",
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        log(f"cold start: {len(commands)} imports x {self.plan.cold_repeats}")
        for _ in range(self.plan.cold_repeats):
            for name, code in commands.items():  # interleaved: load drift hits all alike
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120
                )
                times[name].append(time.perf_counter() - started)
        median = {name: statistics.median(values) for name, values in times.items()}
        probe = (
            "import sys, handler; "
            f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
        )
        loaded = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout.strip()
        base = median["interpreter"]
        return {
            "repeats": self.plan.cold_repeats,
            "median_seconds": median,
            "samples": times,
            "ratio": median["handler"] / median["libraries"],
            "ratio_net_of_interpreter": (median["handler"] - base)
            / max(1e-9, median["libraries"] - base),
            "ratio_with_aioboto3": median["handler_and_aioboto3"] / median["libraries"],
            "heavy_modules_loaded_by_handler": [m for m in loaded.split(",") if m],
        }

    # -- 6. scaling --

    def scaling(self) -> dict[str, Any]:
        points = []
        with FakeServer(latency=LATENCY - JITTER / 2, jitter=JITTER) as server:
            for concurrency in self.plan.scaling:
                count = self.plan.scaling_ids_per_worker * concurrency
                data = make_input(count, self.work)
                log(f"scaling: c={concurrency}, {count} ids, engine and bare")
                engine = self.engine(server, data, concurrency=concurrency)
                bare = self.bare(server, data, concurrency=concurrency)
                requests_per_id = data.needed_full / count
                points.append(
                    {
                        "concurrency": concurrency,
                        "ids": count,
                        "engine_ids_per_s": engine["ids_per_s"],
                        "bare_ids_per_s": bare["ids_per_s"],
                        "ratio": engine["ids_per_s"] / bare["ids_per_s"],
                        "requests_per_id": requests_per_id,
                        "ideal_ids_per_s": concurrency / (LATENCY * requests_per_id),
                        "engine": engine,
                        "bare": bare,
                    }
                )
        tmdb_ceiling = TMDB_RATE / points[-1]["requests_per_id"]
        return {
            "latency_s": LATENCY,
            "jitter_s": JITTER,
            "points": points,
            "tmdb_ceiling_ids_per_s": tmdb_ceiling,
        }


# --- targets, table, chart -----------------------------------------------------------------


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure as a row: measured value, target, and whether it is met."""
    rows: list[dict[str, Any]] = []

    def add(key: str, figure: str, value: float, fmt: str, target: str, met: bool | None) -> None:
        rows.append(
            {
                "key": key,
                "figure": figure,
                "value": value,
                "shown": fmt.format(value),
                "target": target,
                "met": met,
            }
        )

    rate = result["rate_bound"]
    for detail in ("full", "find"):
        part = rate[detail]
        add(
            f"rate_{detail}_wall",
            f"1. rate-bound, {detail}: wall ÷ (requests needed ÷ 40/s)",
            part["wall_over_ideal"],
            "{:.3f}",
            "≤ 1.05",
            part["wall_over_ideal"] <= 1.05,
        )
        add(
            f"rate_{detail}_429",
            f"1. rate-bound, {detail}: 429 answers ÷ requests",
            part["share_429"],
            "{:.2%}",
            "≤ 1%",
            part["share_429"] <= 0.01,
        )
    seq = rate["sequential"]
    add(
        "rate_seq_wall",
        "1. seeds' sequential loop: wall ÷ ideal (per id)",
        seq["wall_over_ideal"],
        "{:.2f}",
        "baseline",
        None,
    )
    add(
        "rate_speedup",
        "1. engine speed-up over the seeds' loop (per id)",
        seq["engine_speedup"],
        "{:.2f}×",
        "report",
        None,
    )
    lat = result["latency_bound"]
    add(
        "latency_ratio",
        "2. latency-bound (c=20, 50 ms): engine ÷ bare aiohttp, ids/s",
        lat["ratio"],
        "{:.3f}",
        "≥ 0.9",
        lat["ratio"] >= 0.9,
    )
    cpu = result["cpu_bound"]
    add(
        "cpu_ratio",
        "3. CPU-bound (c=64, no latency): engine ÷ bare aiohttp, ids/s",
        cpu["ratio"],
        "{:.3f}",
        "≥ 0.6",
        cpu["ratio"] >= 0.6,
    )
    add(
        "cpu_engine_ms",
        "3. CPU ms per id, engine (user+sys)",
        cpu["engine_cpu_ms_per_id"],
        "{:.2f}",
        "report",
        None,
    )
    add(
        "cpu_bare_ms",
        "3. CPU ms per id, bare aiohttp loop",
        cpu["bare_cpu_ms_per_id"],
        "{:.2f}",
        "report",
        None,
    )
    mem = result["memory"]
    add(
        "memory_ratio",
        f"4. peak RSS, {mem['large_ids']:,} ids ÷ {mem['small_ids']:,} ids",
        mem["ratio"],
        "{:.3f}",
        "≤ 1.3",
        mem["ratio"] <= 1.3,
    )
    add(
        "memory_peak",
        f"4. peak RSS, {mem['large_ids']:,} ids (MB)",
        mem["large_peak_mb"],
        "{:.1f}",
        "< 256",
        mem["large_peak_mb"] < 256,
    )
    cold = result["cold_start"]
    add(
        "cold_ratio",
        "5. cold start: import handler ÷ import its libraries",
        cold["ratio"],
        "{:.3f}",
        "≤ 1.3",
        cold["ratio"] <= 1.3,
    )
    points = result["scaling"]["points"]
    low, high = points[0], points[-1]
    add(
        "scaling_gain",
        f"6. scaling: ids/s at c={high['concurrency']} ÷ c={low['concurrency']}",
        high["engine_ids_per_s"] / low["engine_ids_per_s"],
        "{:.1f}×",
        "chart",
        None,
    )
    return rows


def markdown_table(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        f"Measured {meta['date']} on {meta['machine']} (Python {meta['python']}, "
        f"{meta['cpus']} CPUs), full run in {meta['seconds']:.0f} s.",
        "",
        "| Figure | Measured | Target | Met |",
        "| --- | ---: | --- | :---: |",
    ]
    for row in result["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(f"| {row['figure']} | {row['shown']} | {row['target']} | {met} |")
    rate = result["rate_bound"]
    lat, cpu, mem = result["latency_bound"], result["cpu_bound"], result["memory"]
    cold = result["cold_start"]
    heavy = ", ".join(cold["heavy_modules_loaded_by_handler"]) or "none"
    full, find, seq = rate["full"], rate["find"], rate["sequential"]
    lines += [
        "",
        "Details behind the ratios:",
        "",
        f"- Rate-bound, full: {rate['ids']} ids, {full['needed_requests']} requests needed, "
        f"ideal {full['ideal_seconds']:.1f} s, engine {full['run']['seconds']:.1f} s, "
        f"{full['run']['requests']} requests sent, {full['run']['throttled_429']} answered 429. "
        f"Find only: {find['needed_requests']} needed, ideal {find['ideal_seconds']:.1f} s, "
        f"engine {find['run']['seconds']:.1f} s, {find['run']['throttled_429']} × 429.",
        f"- Seeds' loop: {seq['ids']} ids in {seq['run']['seconds']:.1f} s "
        f"({seq['seconds_per_id'] * 1000:.0f} ms per id; {rate['ids']} ids would take "
        f"~{seq['projected_seconds_for_rate_ids']:.0f} s).",
        f"- Latency-bound: engine {lat['engine_ids_per_s']:.0f} ids/s, bare loop "
        f"{lat['bare_ids_per_s']:.0f} ids/s (median of {len(lat['pairs'])} alternating pairs).",
        f"- CPU-bound: engine {cpu['engine_ids_per_s']:.0f} ids/s, bare loop "
        f"{cpu['bare_ids_per_s']:.0f} ids/s; fake server "
        + (
            f"{cpu['server_cpu_ms_per_id']:.2f} CPU ms per id."
            if cpu["server_cpu_ms_per_id"] is not None
            else "CPU not measured."
        ),
        f"- Memory: {mem['small_peak_mb']:.1f} MB for {mem['small_ids']:,} ids, "
        f"{mem['large_peak_mb']:.1f} MB for {mem['large_ids']:,} ids "
        f"({mem['large_csv_rows']:,} CSV rows, {mem['large_csv_mb']:.0f} MB); "
        f"the interpreter with the engine imported holds {mem['imports_mb']:.1f} MB.",
        f"- Cold start (median of {cold['repeats']}): interpreter "
        f"{cold['median_seconds']['interpreter'] * 1000:.0f} ms, `import handler` "
        f"{cold['median_seconds']['handler'] * 1000:.0f} ms, the libraries "
        f"{cold['median_seconds']['libraries'] * 1000:.0f} ms, handler + aioboto3 "
        f"{cold['median_seconds']['handler_and_aioboto3'] * 1000:.0f} ms; heavy modules "
        f"loaded by `import handler`: {heavy}.",
        "",
        "| Concurrency | Engine ids/s | Bare ids/s | Engine ÷ bare | Ideal ids/s (c ÷ latency) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for point in result["scaling"]["points"]:
        lines.append(
            f"| {point['concurrency']} | {point['engine_ids_per_s']:.1f} | "
            f"{point['bare_ids_per_s']:.1f} | {point['ratio']:.3f} | "
            f"{point['ideal_ids_per_s']:.1f} |"
        )
    lines += [
        "",
        f"TMDB's own ceiling at 40 requests/s is "
        f"{result['scaling']['tmdb_ceiling_ids_per_s']:.1f} ids/s with details.",
    ]
    return "\n".join(lines)


def write_markdown(result: dict[str, Any], path: Path = MARKDOWN) -> None:
    block = f"{TABLE_START}\n{markdown_table(result)}\n{TABLE_END}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if TABLE_START in text and TABLE_END in text:
        head, _, rest = text.partition(TABLE_START)
        _, _, tail = rest.partition(TABLE_END)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def write_chart(result: dict[str, Any], path: Path) -> bool:
    """ids/s against concurrency; ``False`` (no chart) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart (pip install -r benchmarks/requirements.txt)")
        return False
    scaling = result["scaling"]
    points = scaling["points"]
    xs = [p["concurrency"] for p in points]
    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    ideal = [p["ideal_ids_per_s"] for p in points]
    axes.plot(xs, ideal, "k:", label="ideal: c ÷ (latency × requests per id)")
    bare = [p["bare_ids_per_s"] for p in points]
    axes.plot(xs, bare, "s--", color="tab:gray", label="bare aiohttp loop")
    engine = [p["engine_ids_per_s"] for p in points]
    axes.plot(xs, engine, "o-", color="tab:blue", linewidth=2, label="engine (tmdb_async.run)")
    axes.axhline(
        scaling["tmdb_ceiling_ids_per_s"],
        color="tab:red",
        linestyle="-.",
        label=f"TMDB's 40 req/s ceiling ({scaling['tmdb_ceiling_ids_per_s']:.1f} ids/s)",
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(xs, [str(x) for x in xs])
    axes.set_xlabel("concurrency (workers and connections)")
    axes.set_ylabel("ids per second (find + details)")
    latency_ms = scaling["latency_s"] * 1000
    jitter_ms = scaling.get("jitter_s", 0.0) * 1000
    axes.set_title(
        f"ids/s against concurrency: {latency_ms:.0f} ± {jitter_ms / 2:.0f} ms latency, no limit"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


# --- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Benchmarks of tmdb-ingest against the fake TMDB on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke version")
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON result path (default: results/latest.json, or results/tmp/quick.json)",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument(
        "--no-markdown", action="store_true", help="do not rewrite the table in BENCHMARKS.md"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the engine children with pyinstrument (text reports next to the JSON)",
    )
    parser.add_argument(
        "--only",
        choices=("rate", "latency", "cpu", "memory", "cold", "scaling"),
        action="append",
        help="run only these parts (repeatable); the JSON then holds only them",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(json.loads(args.child))

    plan = QUICK if args.quick else FULL
    out: Path = args.out or (TMP / "quick.json" if args.quick else RESULTS / "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    TMP.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="run-", dir=TMP) as folder:
        bench = Bench(plan, Path(folder), args.profile)
        parts: dict[str, Callable[[], dict[str, Any]]] = {
            "rate_bound": bench.rate_bound,
            "latency_bound": bench.latency_bound,
            "cpu_bound": bench.cpu_bound,
            "memory": bench.memory,
            "cold_start": bench.cold_start,
            "scaling": bench.scaling,
        }
        wanted = {
            "rate": "rate_bound",
            "latency": "latency_bound",
            "cpu": "cpu_bound",
            "memory": "memory",
            "cold": "cold_start",
            "scaling": "scaling",
        }
        selected = [wanted[name] for name in args.only] if args.only else list(parts)
        for name in selected:
            result[name] = parts[name]()
        if args.profile:
            for report in Path(folder).glob("profile-*.txt"):
                shutil.copy(report, out.parent / report.name)
    result["meta"] = {
        "quick": plan.quick,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "machine": platform.machine() or "unknown",
        "cpus": os.cpu_count(),
        "seconds": time.perf_counter() - started,
        "latency_s": LATENCY,
        "tmdb_rate": TMDB_RATE,
    }
    complete = all(name in result for name in wanted.values())
    if complete:
        result["targets"] = targets(result)
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    log(f"wrote {out}")
    if complete and not args.no_chart:
        chart = out.parent / ("quick-scaling.png" if plan.quick else "scaling.png")
        if write_chart(result, chart):
            log(f"wrote {chart}")
    if complete and not plan.quick and not args.no_markdown:
        write_markdown(result)
        log(f"rewrote the table in {MARKDOWN}")
    if complete:
        for row in result["targets"]:
            met = {True: "met", False: "MISSED", None: ""}[row["met"]]
            print(f"{row['figure']:<66} {row['shown']:>9}  {row['target']:<9} {met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
