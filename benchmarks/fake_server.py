"""The fake TMDB in its own process on 127.0.0.1, so its CPU time is not the client's."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks._project import FAKE_TMDB_MODULE
from benchmarks.common import ROOT, TMP, TOKEN

#: The fake's API paths by route, for :func:`route_counts`; the first match wins.
ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("find", re.compile(r"/3/find/[^/]+")),
    ("movie_by_imdb", re.compile(r"/3/movie/tt\d+")),
    ("movie_by_id", re.compile(r"/3/movie/\d+")),
    ("tv_by_id", re.compile(r"/3/tv/\d+")),
)


def route_counts(path_counts: dict[str, int]) -> dict[str, int]:
    """The fake's ``path_counts`` (one entry per path asked) summed by route: ``find``,
    ``movie_by_imdb`` (``/3/movie/tt...``), ``movie_by_id``, ``tv_by_id``, and ``other``
    (anything else, ``/3/tv/tt...`` included)."""
    counts = dict.fromkeys([name for name, _ in ROUTES] + ["other"], 0)
    for path, count in path_counts.items():
        route = next((name for name, pattern in ROUTES if pattern.fullmatch(path)), "other")
        counts[route] += count
    return counts


def cpu_seconds_of(pid: int) -> float | None:
    """user+sys CPU seconds of another process (Linux /proc), ``None`` elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class FakeServer:
    """``python -m FAKE_TMDB_MODULE`` on 127.0.0.1 with a free port, stopped on exit."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        rate_limit: float | None = None,
        jitter: float = 0.0,
        imdb_on_movie: bool = True,
    ) -> None:
        self.latency = latency
        self.jitter = jitter
        self.rate_limit = rate_limit
        self.imdb_on_movie = imdb_on_movie  # False: /3/movie/{imdb_id} is a 404 for every id
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="fake-", dir=TMP))

    def __enter__(self) -> FakeServer:
        port_file = self._folder / "port"
        command = [
            sys.executable,
            "-m",
            FAKE_TMDB_MODULE,
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
        if not self.imdb_on_movie:
            command.append("--no-imdb-on-movie")
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
        return None if self._proc is None else cpu_seconds_of(self._proc.pid)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/__reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/__stats", timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
