"""Dead TMDB is found in seconds: the client's breaker (:class:`tmdb_async.tmdb.breaker.Breaker`).

A TMDB that cannot be reached at all (a closed port, a name that does not resolve), or a
server that takes the connection and never answers HTTP (closes it, sends a TLS alert, lets
the request time out), stops the run with one line naming the cause and the URL, exit code 5,
and no id marked failed. A connection lost or garbled now and then among answers, one
title's malformed answers, or a body cut after the headers never trips it. Time is
virtual: the breaker's clock and the waits between attempts are the breaker module's seams
``_now`` and ``_pause``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from tests.conftest import TOKEN
from tests.support.lake import read_local
from tmdb_async import Credentials, Settings, cli, run
from tmdb_async.errors import ExitCode, TmdbUnreachable, exit_code_of
from tmdb_async.jobs import chunks
from tmdb_async.tmdb import breaker as breaker_module
from tmdb_async.tmdb.breaker import TRIP_FAILURES, TRIP_SECONDS, Breaker
from tmdb_async.tmdb.client import ClientOptions, TmdbClient
from tmdb_devtools.csvgen import title_ids, write_csv
from tmdb_devtools.fake_tmdb import FakeTmdb, FakeTmdbConfig

FOLDER = "Raw/TMDB/JSON/2022/05/02"


class VirtualTime:
    """The client's clock, advanced by its own waits (all of them, one after the other: an
    upper bound of the time the run would take)."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def pause(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def virtual(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    time = VirtualTime()
    monkeypatch.setattr(breaker_module, "_now", time.clock)
    monkeypatch.setattr(breaker_module, "_pause", time.pause)
    return time


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nobody listens on (bound, never listening: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class _NoSuchName(aiohttp.ThreadedResolver):
    """The system resolver, except that ``*.invalid`` (RFC 2606: never resolves) fails at
    once as getaddrinfo does, offline or not (no DNS server to wait for in CI)."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> Any:
        if host.endswith(".invalid"):
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return await super().resolve(host, port, family)


@pytest.fixture
def no_such_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiohttp.connector, "DefaultResolver", _NoSuchName)


def _settings(source: Path, dest: Path, url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "credentials": Credentials(read_access_token=TOKEN),
        "tmdb_url": url,
        "date": dt.date(2022, 5, 2),
        "rate": 1000.0,
    }
    values.update(changes)
    return Settings(source=str(source), dest=str(dest), **values)


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("TMDB_READ_ACCESS_TOKEN", TOKEN)
    return cli.main(list(args))


@pytest.mark.parametrize(
    ("where", "cause"),
    [("closed port", "connection refused"), ("no such name", "DNS: cannot resolve tmdb.invalid")],
)
def test_an_unreachable_tmdb_ends_the_run_in_seconds_with_one_line_exit_5_and_no_id_failed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    virtual: VirtualTime,
    closed_port: int,
    no_such_name: None,
    where: str,
    cause: str,
) -> None:
    url = f"http://127.0.0.1:{closed_port}" if where == "closed port" else "http://tmdb.invalid"
    ids = title_ids(20, "movie")
    source = write_csv(tmp_path / "movies.csv", ids)
    code = _cli(
        monkeypatch,
        "run",
        str(source),
        "--dest",
        str(tmp_path / "lake"),
        "--tmdb-url",
        url,
        "--date",
        "2022-05-02",
        "--json",
    )
    out, err = capsys.readouterr()
    assert code == ExitCode.UNREACHABLE == 5
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: TMDB unreachable at {url}: {cause} (")
    assert TOKEN not in err + out
    assert json.loads(out.strip().splitlines()[-1])["exit_code"] == 5
    # Seconds, not hours: the breaker trips TRIP_SECONDS into the outage, within one round of
    # backoff; 20 ids were each tried 12 times before (240 requests, 38 s).
    assert virtual.now < 10 * TRIP_SECONDS
    view = read_local(tmp_path / "lake" / FOLDER)
    assert not view.all_ids()  # no id has a home: none is marked failed
    manifest = next((tmp_path / "lake" / FOLDER / "_manifests").glob("movies-*.json"))
    recorded = json.loads(manifest.read_text())
    assert recorded["outcome"] == "error"
    assert recorded["counts"]["failed"] == 0
    assert recorded["tmdb"]["requests"] < 12 * len(ids)


async def test_a_tmdb_unreachable_midway_keeps_what_was_fetched_and_the_rerun_does_the_rest(
    tmp_path: Path, virtual: VirtualTime
) -> None:
    """TMDB goes away after some chunks: those stay committed, no id is marked failed, and
    the same run once TMDB is back fetches only the rest, every id once."""
    ids = title_ids(60, "movie")
    source = write_csv(tmp_path / "movies.csv", ids)
    dest = tmp_path / "lake"
    fake = FakeTmdb(FakeTmdbConfig(token=TOKEN))
    url = await fake.start()
    port = int(url.rsplit(":", 1)[1])
    first = _settings(source, dest, url, chunk_size=10, concurrency=2)
    commit = chunks.ChunkedRun._commit
    gone = False

    async def commit_then_stop(self: chunks.ChunkedRun, batch: list[chunks.Chunk]) -> None:
        """TMDB goes away once 20 ids have a home: its port refuses from then on."""
        nonlocal gone
        await commit(self, batch)
        if self.counts.records + self.counts.not_found >= 20 and not gone:
            gone = True
            await fake.stop()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chunks.ChunkedRun, "_commit", commit_then_stop)
        with pytest.raises(TmdbUnreachable, match=rf"127\.0\.0\.1:{port}: connection refused"):
            await run(first)
    view = read_local(dest / FOLDER)
    assert 20 <= len(view.all_ids()) < len(ids)
    assert all(e["outcome"] != "failed" for places in view.outcomes.values() for _, e in places)
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as again:
        summary = await run(_settings(source, dest, again.url, chunk_size=10, concurrency=2))
    assert summary.status == "ok"
    assert summary.kept >= 20
    view = read_local(dest / FOLDER)
    assert view.all_ids() == set(ids)
    assert not view.duplicates()


TLS_ALERT = b"\x15\x03\x01\x00\x02\x02\x46"  # what a TLS port sends to a plain-HTTP request
Fault = Callable[[int], Literal["drop", "garble"] | None]
"""The n-th connection (from 1) -> closed unanswered, answered with bytes that are not HTTP,
or forwarded."""


@asynccontextmanager
async def faulty_proxy(target: str, fault: Fault) -> AsyncIterator[tuple[str, Counter[str]]]:
    """A loopback TCP proxy to ``target`` that does to each connection what ``fault`` says;
    yields its URL and the counts of connections and of each fault."""
    host, port = target.removeprefix("http://").rsplit(":", 1)
    counts: Counter[str] = Counter()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts["connections"] += 1
        what = fault(counts["connections"])
        try:
            if what is not None:
                counts[what] += 1
                if what == "garble":
                    writer.write(TLS_ALERT)
                    await writer.drain()
                return
            # One request per connection (Connection: close), so connections come and go
            # as requests do and the faults hit every part of the run.
            head = await reader.readuntil(b"\r\n\r\n")
            lines = [line for line in head.split(b"\r\n") if line]
            kept = [line for line in lines if not line.lower().startswith(b"connection:")]
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(b"\r\n".join([*kept, b"Connection: close", b"", b""]))
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", counts
    finally:
        server.close()


def _refused() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("tmdb", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


async def test_a_refused_connection_among_answers_never_trips_the_breaker(
    virtual: VirtualTime,
) -> None:
    """Every 20th request refused (a connection-level failure, unlike a lost connection):
    an answer comes between them, so the streak never grows; every title is found."""
    options = ClientOptions(
        base_url="https://tmdb",
        credentials=Credentials(read_access_token=TOKEN),
        detail="find",
        rate=1000.0,
        concurrency=4,
    )
    ids = [f"tt{n:07d}" for n in range(1, 101)]
    sent = 0

    def answer(url: Any, **kwargs: Any) -> Any:
        nonlocal sent
        sent += 1
        virtual.now += 1.0  # answers come a second apart: refusals span minutes
        if sent % 20 == 0:
            raise _refused()
        return CallbackResult(status=200, payload={"movie_results": [{"id": sent}]})

    with aioresponses() as mocked:
        mocked.get(re.compile(r"https://tmdb/3/find/.*"), callback=answer, repeat=True)
        async with TmdbClient.open(options) as tmdb:
            found = await asyncio.gather(*(tmdb.lookup(i) for i in ids))
            assert tmdb.unreachable is None
    assert all(f.media_type == "movie" for f in found)  # type: ignore[union-attr]
    assert sent > len(ids)  # the refused ones were asked again


def test_the_breaker_trips_on_a_long_streak_of_failures_only(virtual: VirtualTime) -> None:
    async def scenario() -> None:
        breaker = Breaker("https://user:pw@tmdb.example/x?api_key=secret")
        # A burst at one instant (20 workers hitting one restart) is not an outage yet.
        for _ in range(20):
            breaker.failed(0.0, _refused())
        assert breaker.tripped is None
        breaker.answered()
        virtual.now = 100.0
        breaker.failed(90.0, _refused())  # one slow connect alone is not one either
        assert breaker.tripped is None
        for _ in range(TRIP_FAILURES - 2):
            breaker.failed(99.0, _refused())
        with pytest.raises(TmdbUnreachable) as caught:
            breaker.failed(99.0, _refused())
        assert str(caught.value).startswith(
            "TMDB unreachable at https://tmdb.example/x: connection refused ("
        )
        assert "secret" not in str(caught.value) and "pw" not in str(caught.value)
        with pytest.raises(TmdbUnreachable):
            breaker.check()  # tripped for good

    asyncio.run(scenario())


def test_silence_is_measured_from_the_last_answer_not_from_when_a_timed_out_request_left(
    virtual: VirtualTime,
) -> None:
    """Requests sent at 0 s time out at 10 s, just after TMDB answered another one: TMDB was
    not silent for 10 s, so that first wave does not trip the breaker; silence that goes on
    does."""

    async def scenario() -> None:
        breaker = Breaker("https://tmdb.example")
        virtual.now = 9.99
        breaker.answered()
        virtual.now = 10.0
        for n in range(20):  # the whole first wave, on as many URLs
            breaker.failed(0.0, TimeoutError(), f"/3/movie/tt{n}")
        assert breaker.tripped is None
        virtual.now = 20.5  # their retries time out too, and nobody was answered since
        with pytest.raises(TmdbUnreachable, match="no answer: read timeout"):
            breaker.failed(10.5, TimeoutError(), "/3/movie/tt0")

    asyncio.run(scenario())


def test_lambda_and_step_functions_tell_an_unreachable_tmdb_by_its_error_type() -> None:
    assert exit_code_of("TmdbUnreachable", ExitCode.FAILED_IDS) == ExitCode.UNREACHABLE


# --- a refresh: an unreachable TMDB marks no title failed or carried, moves no day ----------


async def test_a_refresh_that_finds_tmdb_unreachable_marks_nothing_and_moves_no_day(
    tmp_path: Path, virtual: VirtualTime, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.jobs.test_refresh import INGESTED, TODAY, config, expected, folder, imdb, ingest
    from tests.jobs.test_refresh import options as refresh_options
    from tmdb_async.jobs.refresh import STATE_KEY, Window
    from tmdb_async.jobs.refresh import run as refreshing

    ids = [imdb(n) for n in range(1, 201)]
    lake = tmp_path / "lake"
    async with FakeTmdb(config()) as fake:
        await ingest(tmp_path, lake, fake.url, ids)
    state = lake / STATE_KEY
    # Listing: the change lists cannot be read at all.
    dead = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(TmdbUnreachable, match=rf"at {dead}: connection refused"):
        await refreshing.refresh(refresh_options(lake, dead))
    assert not state.exists() or json.loads(state.read_text())["failed"] == []
    before = state.read_text() if state.exists() else None
    # Fetching: the lists are read, then TMDB goes away before the titles are fetched.
    fetch = refreshing._fetch
    fake = FakeTmdb(config())
    url = await fake.start()

    async def fetch_after_tmdb_left(*args: Any, **kwargs: Any) -> None:
        await fake.stop()
        await fetch(*args, **kwargs)

    monkeypatch.setattr(refreshing, "_fetch", fetch_after_tmdb_left)
    with pytest.raises(TmdbUnreachable, match="connection refused"):
        await refreshing.refresh(refresh_options(lake, url))
    monkeypatch.setattr(refreshing, "_fetch", fetch)
    assert (state.read_text() if state.exists() else None) == before  # no day moved
    view = read_local(lake / folder(TODAY))
    assert all(e["outcome"] != "failed" for places in view.outcomes.values() for _, e in places)
    # TMDB back: the same refresh does every changed title, once.
    async with FakeTmdb(config()) as fake:
        done = await refreshing.refresh(refresh_options(lake, fake.url))
    assert done.status == "ok" and done.carried == []
    want = expected(ids, Window(INGESTED, TODAY - dt.timedelta(days=1)), config())
    assert set(read_local(lake / folder(TODAY)).records) == want


# --- Lambda: its own error type, so Step Functions tells "TMDB is down" from a failed batch --


async def test_a_lambda_batch_that_finds_tmdb_unreachable_fails_as_tmdb_unreachable(
    s3: Any, lake: str, virtual: VirtualTime, closed_port: int
) -> None:
    from tests.test_events import Context, lambda_env
    from tmdb_async.events import handle

    ids = title_ids(30, "movie")
    event = {
        "Items": [{"id": i} for i in ids],
        "BatchInput": {"dest": f"s3://{lake}", "kind": "movie", "date": "2022-05-02"},
    }
    url = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(TmdbUnreachable) as caught:
        await handle(event, Context(), lambda_env(url))
    assert type(caught.value).__name__ == "TmdbUnreachable"  # the Lambda errorType
    assert str(caught.value).startswith(f"TMDB unreachable at {url}: connection refused")
    listed = s3.list_objects_v2(Bucket=lake, Prefix=f"{FOLDER}/").get("Contents", [])
    assert not [o["Key"] for o in listed if "/_sidecars/" in o["Key"] or "/_ledger/" in o["Key"]]


# --- a wrong --tmdb-url that reaches another HTTP server: its 404s are not TMDB's answers --


@asynccontextmanager
async def not_tmdb() -> AsyncIterator[str]:
    """A loopback HTTP server that is not TMDB: 404 with no body to every request (a proxy or
    another service at a wrong ``--tmdb-url``)."""
    from aiohttp import web

    async def nothing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", nothing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_404s_without_tmdbs_error_body_are_no_answer_and_replace_no_record(
    tmp_path: Path,
) -> None:
    """A rerun with --no-resume (or other settings) pointed at a server that answers 404 to
    everything: its 404s carry no TMDB error body, so they are failures, not "not found";
    every record the folder held is kept (``held``), exit 1. Before, every record was
    replaced by a ``not_found`` entry and the run exited 0."""
    ids = title_ids(20, "movie")
    source = write_csv(tmp_path / "movies.csv", ids)
    dest = tmp_path / "lake"
    async with FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake:
        first = await run(_settings(source, dest, fake.url, kind="movie"))
    held = read_local(dest / FOLDER)
    assert first.status == "ok" and len(held.records) == first.records >= len(ids) - 2
    async with not_tmdb() as url:
        again = await run(_settings(source, dest, url, kind="movie", resume=False))
    assert again.not_found == again.records == 0
    assert again.failed == again.held == len(ids)  # each keeps its record or not_found entry
    assert again.exit_code == ExitCode.FAILED_IDS == 1
    view = read_local(dest / FOLDER)
    assert view.records == held.records and view.outcomes == held.outcomes
    assert not view.duplicates()


# --- a --tmdb-url that reaches a server which never answers HTTP: no answer, as no connection --


@asynccontextmanager
async def never_answering(how: str) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback TCP server that takes every connection and never answers HTTP: ``closes``
    it at once, sends ``not HTTP`` bytes (a TLS alert) then closes, or ``hangs`` (reads the
    request, answers nothing). Yields its URL and [connections]."""
    counts = [0]
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts[0] += 1
        if how == "hangs":
            held.append(writer)
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
            return
        if how == "not HTTP":
            writer.write(TLS_ALERT)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", counts
    finally:
        for writer in held:
            writer.close()
        server.close()


@pytest.mark.parametrize(
    ("how", "cause"),
    [
        ("closes", r"no answer: (server disconnected|connection reset)"),
        ("not HTTP", r"no answer: not HTTP \(Bad status line: b'\\x15\\x03.*use https://\)"),
        ("hangs", r"no answer: read timeout"),
    ],
)
def test_a_server_that_never_answers_http_ends_the_run_in_seconds_with_one_line_exit_5(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    virtual: VirtualTime,
    how: str,
    cause: str,
) -> None:
    """A --tmdb-url reaching a server that takes connections but never answers HTTP (closes
    them, sends a TLS alert, or answers nothing until the request timeout): before, every
    id was tried 12 times and marked failed, exit 1, nothing on stderr (20 ids: 38 s, or
    164 s for a server that hangs)."""
    ids = title_ids(20, "movie")
    source = write_csv(tmp_path / "movies.csv", ids)

    async def scenario() -> tuple[int, list[int]]:
        async with never_answering(how) as (url, counts):
            args = ["run", str(source), "--dest", str(tmp_path / "lake"), "--tmdb-url", url]
            args += ["--date", "2022-05-02", "--timeout", "0.5"]
            monkeypatch.setenv("TMDB_READ_ACCESS_TOKEN", TOKEN)
            # The CLI runs its own event loop: in a thread, so this loop keeps serving.
            code = await asyncio.to_thread(cli.main, args)
            return code, counts

    code, counts = asyncio.run(scenario())
    out, err = capsys.readouterr()
    assert code == ExitCode.UNREACHABLE == 5
    lines = err.strip().splitlines()
    assert len(lines) == 1
    url = f"http://127.0.0.1:{lines[0].split('127.0.0.1:')[1].split(':')[0]}"
    assert re.fullmatch(
        rf"error: TMDB unreachable at {re.escape(url)}: {cause} "
        r"\(\d+ attempts without an answer in \d+s\); stopped: no id was marked failed, "
        "run it again once TMDB answers",
        lines[0],
    ), lines[0]
    assert TOKEN not in err + out
    assert virtual.now < 10 * TRIP_SECONDS
    assert TRIP_FAILURES <= counts[0] < 12 * len(ids)  # 240 before: every id's 12 attempts
    manifest = next((tmp_path / "lake" / FOLDER / "_manifests").glob("movies-*.json"))
    recorded = json.loads(manifest.read_text())
    assert recorded["outcome"] == "error"
    assert recorded["counts"]["failed"] == 0
    view = read_local(tmp_path / "lake" / FOLDER)
    assert not view.all_ids()  # no id has a home: none is marked failed


def _one_in_20_dropped(n: int) -> Literal["drop", "garble"] | None:
    return "drop" if n % 20 == 0 else None


def _dropped_and_garbled(n: int) -> Literal["drop", "garble"] | None:
    return "drop" if n % 5 == 0 else "garble" if n % 10 == 3 else None


@pytest.mark.parametrize(
    ("fault", "least"),
    [(_one_in_20_dropped, {"drop": 10}), (_dropped_and_garbled, {"drop": 40, "garble": 20})],
    ids=["1 in 20 dropped", "1 in 5 dropped, 1 in 10 not HTTP"],
)
async def test_dropped_and_garbled_connections_among_answers_never_trip_the_breaker(
    tmp_path: Path, virtual: VirtualTime, fault: Fault, least: dict[str, int]
) -> None:
    """Connections closed unanswered, or answered with bytes that are not HTTP: each is no
    answer, but answers come between them, so every id is written."""
    ids = title_ids(200, "movie")
    source = write_csv(tmp_path / "movies.csv", ids)
    async with (
        FakeTmdb(FakeTmdbConfig(token=TOKEN)) as fake,
        faulty_proxy(fake.url, fault) as (url, counts),
    ):
        summary = await run(_settings(source, tmp_path / "lake", url, chunk_size=50))
    assert all(counts[k] >= n for k, n in least.items()), counts  # the faults happened...
    assert summary.status == "ok"  # ... and every id was written
    assert summary.failed == 0
    view = read_local(tmp_path / "lake" / FOLDER)
    assert view.all_ids() == set(ids)
    assert not view.duplicates()


async def test_a_body_cut_short_after_the_headers_is_an_answer_the_breaker_never_counts(
    virtual: VirtualTime,
) -> None:
    """Headers arrived, then the body was cut: a normal retry, the breaker untouched, so a
    server doing that to every request fails its ids (exit 1) instead of stopping the run."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    options = ClientOptions(
        base_url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}",
        credentials=Credentials(read_access_token=TOKEN),
        detail="find",
        rate=1000.0,
        max_attempts=6,
    )
    try:
        async with TmdbClient.open(options) as tmdb:
            outcomes = await asyncio.gather(
                *(tmdb.lookup(f"tt{n:07d}") for n in range(1, 21)), return_exceptions=True
            )
            assert tmdb.unreachable is None
            assert tmdb._breaker.streak == 0
    finally:
        server.close()
    assert all(type(o).__name__ == "LookupFailed" for o in outcomes)
    assert virtual.now > TRIP_SECONDS  # long enough that a counted streak would have tripped


def test_one_titles_answers_that_are_not_http_never_trip_the_breaker(
    virtual: VirtualTime,
) -> None:
    """A server that took the connection and answered no HTTP counts as an outage only on
    TRIP_URLS different URLs: one title's malformed answers (its IMDb-id path, then /find),
    the last request left with nobody else answered, fail that title, not the run."""
    bad = aiohttp.ServerDisconnectedError()

    async def scenario() -> None:
        breaker = Breaker("https://tmdb.example")
        for n in range(40):  # a minute of one title's attempts, on its two URLs
            virtual.now = n * 1.5
            breaker.failed(0.0, bad, "/3/movie/tt0000007" if n < 20 else "/3/find/tt0000007")
        assert breaker.tripped is None
        assert not breaker.holding  # its attempts, once spent, fail that title
        with pytest.raises(TmdbUnreachable, match=r": no answer: server disconnected \(41 "):
            breaker.failed(0.0, bad, "/3/find/tt0000008")
        assert breaker.holding

    asyncio.run(scenario())
