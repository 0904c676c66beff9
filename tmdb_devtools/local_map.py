"""Local Distributed Map: what ``statemachine/ingest.asl.json`` does, on one machine.

For tests, and for running a big file locally with the same batching as in AWS::

    python -m tmdb_devtools local-map s3://data-lake-x/Raw/Local/CSV/Movies/2022/05/02/movies.csv \\
        --dest s3://data-lake-x --kind movie --max-concurrency 4 --global-rate 40 --json
    python -m tmdb_devtools local-map samples/movies.csv --dest ./lake --max-items-per-batch 200

The steps are the state machine's:

1. **PrepareIds**: the distinct ids of the source, as a one-column ``|`` CSV under
   ``Raw/TMDB/_work/`` (the handler's ``{"action": "prepare"}`` event, through
   :func:`tmdb_async.events.handle`, when source and dest are both ``s3://``; else the same
   engine function, :func:`tmdb_async.jobs.prepare.prepare_ids`);
2. **ItemReader** (``CSV``, ``FIRST_ROW``, ``PIPE``): each row becomes a dict of strings;
3. **ItemBatcher**: the prepare step's plan (:func:`tmdb_async.jobs.fleet.plan_batches`):
   ``items_per_batch`` items per batch (at most ``max_items_per_batch``, fewer for a small
   file so that every child has a batch), with the ``BatchInput`` ``{dest, kind, date,
   global_rate, max_concurrency}`` where ``max_concurrency`` is the plan's ``children``;
4. **MaxConcurrency** (the plan's ``children``) child workflows at a time, each at
   ``global_rate / children`` requests/s as in AWS. Each child runs on a warm worker process
   (:class:`WorkerPool`), one per child, whose init phase (the imports) is over before the
   Map starts and never counts against ``function_timeout``: as on Lambda, where children
   start on machines of their own and a child's next invocation finds its environment warm;
5. the child's **MoreToDo** loop: while an invocation returns ``remaining_items``, invoke again
   with ``{"Items": remaining_items, "BatchInput": batch_input}``. An invocation that hands
   back exactly the items it was given fails its batch (``LocalMap.NoProgress``) where the
   state machine would loop until the child's history is full.

What runs in the worker process: when ``dest`` is ``s3://`` it is ``handler.lambda_handler``
itself, given the batch event and a context whose clock is ``function_timeout`` (exactly the
Lambda code path). The handler refuses local paths (Lambda has no local files), so for a local
``dest`` the worker calls the handler's own event adapter, :func:`tmdb_async.events.handle`,
with ``local_paths=True``: the same ``BatchInput`` rules (``rate = global_rate /
max_concurrency``, ``concurrency = 20 // max_concurrency``), safety margin and refusal to
return no progress.

Differences from AWS, on purpose: failed batches are not retried (the state machine retries
``Lambda.*`` service errors, which cannot happen here, and ``TmdbUnreachable`` twice a minute
or more apart, which here would only make an offline run wait) and a failure above
``tolerated_failure_percentage`` does not stop the other batches; it makes the report's
``status`` ``"failed"``. There is no state machine, so no one-execution-at-a-time check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import io
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tmdb_async.credentials import Credentials
from tmdb_async.errors import CredentialsError, ExitCode, IngestError, UsageError, exit_code_of
from tmdb_async.lake.storage import parse_s3, read_source
from tmdb_async.options import parse_date
from tmdb_async.settings import Settings

ROOT = Path(__file__).resolve().parent.parent  # where handler.py lives
RESULT_MARK = "LOCAL_MAP_RESULT "
ERROR_MARK = "LOCAL_MAP_ERROR "
READY_MARK = "LOCAL_MAP_READY"
WORKER_CODE = (
    "import sys; from tmdb_devtools.local_map import worker_main; "
    "sys.exit(worker_main(sys.argv[1], sys.argv[2]))"
)
FUNCTION_NAME = "tmdb-ingest-local"

Item = dict[str, str]


# --- the worker process: one "Lambda invocation" -------------------------------------------


class WorkerContext:
    """The part of Lambda's context the handler uses; the clock starts at the invocation."""

    function_name = FUNCTION_NAME
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{FUNCTION_NAME}"

    def __init__(self, request_id: str, timeout_seconds: float) -> None:
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


async def engine_batch(
    event: Mapping[str, Any], context: WorkerContext, env: Mapping[str, str]
) -> dict[str, Any]:
    """A Distributed Map batch into a local folder, which the handler refuses (Lambda has no
    local files): the engine itself, under the handler's rules from the same schema
    (``BatchInput`` keys and types, ``rate = global_rate / max_concurrency``, the deadline
    margin, and the refusal to return no progress)."""
    from tmdb_async.jobs.deadlines import deadline_margin, margin_override, require_progress
    from tmdb_async.jobs.fleet import fleet_share
    from tmdb_async.jobs.ingest import run
    from tmdb_async.settings import event_values, settings_from

    batch = event.get("BatchInput") or {}
    values = fleet_share(event_values(batch, "event.BatchInput", batch=True))
    settings = settings_from(values, env, source="items").validate()

    def remaining() -> float:
        return context.get_remaining_time_in_millis() / 1000

    margin = deadline_margin(remaining(), margin_override(env))
    summary = await run(settings, items=event["Items"], remaining=remaining, safety_margin=margin)
    require_progress(summary, margin, "raise --function-timeout or lower --max-items-per-batch")
    return {**summary.as_dict(), "batch_input": dict(batch)}


def _engine_invoke(event: Any, context: WorkerContext) -> dict[str, Any]:
    """What ``handler.lambda_handler`` does, with :func:`engine_batch` in place of the handler's
    event adapter (which accepts only ``s3://`` destinations)."""
    from tmdb_async import log

    env = dict(os.environ)
    log.configure(
        level=env.get("TMDB_LOG_LEVEL", "INFO"),
        fmt="json",
        secrets=[env.get("TMDB_READ_ACCESS_TOKEN"), env.get("TMDB_API_KEY")],
        exclusive=True,
    )
    log.log_context.set({"request_id": context.aws_request_id})
    return asyncio.run(engine_batch(event, context, env))


def _error_line(exc: BaseException) -> str:
    """Lambda's function error shape: the exception's class name and first line."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    return ERROR_MARK + json.dumps({"errorType": type(exc).__name__, "errorMessage": message})


def worker_main(mode: str, dest: str) -> int:
    """Entry point of a worker process: one warm Lambda execution environment.

    Its init phase (the handler module's imports, and boto's for an ``s3://`` ``dest``, which
    the engine would import on first use) runs once, before ``LOCAL_MAP_READY``, so it never
    counts against an invocation's timeout. Then each stdin line is an invocation,
    ``{"event": {...}, "request_id": str, "timeout_seconds": float}``, answered by one line
    ``LOCAL_MAP_RESULT {"result", "started_at", "finished_at"}`` or ``LOCAL_MAP_ERROR
    {"errorType", "errorMessage"}`` (the shape Lambda gives a function error). End of stdin
    ends the process.

    The answers go to the process's stdout and nothing else does: the handler's own output
    (its CloudWatch metrics line) is sent to stderr with its logs, as Lambda sends both to
    CloudWatch, so whatever the handler prints cannot garble or fake an answer.
    """
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def answer(line: str) -> None:
        answers.write(line + "\n")
        answers.flush()

    try:
        if mode == "handler":
            import handler  # the Lambda entry point, at the repository root

            invoke: Callable[[Any, WorkerContext], dict[str, Any]] = handler.lambda_handler
        else:
            invoke = _engine_invoke
        if parse_s3(dest, "dest"):
            import aioboto3  # noqa: F401
    except Exception as exc:  # Lambda's Runtime.ImportModuleError for this invocation
        answer(_error_line(exc))
        return 1
    answer(READY_MARK)
    for line in sys.stdin:
        job = json.loads(line)
        context = WorkerContext(str(job["request_id"]), float(job["timeout_seconds"]))
        started = time.monotonic()
        try:
            result = invoke(job["event"], context)
        except Exception as exc:
            answer(_error_line(exc))
            continue
        done = {"result": result, "started_at": started, "finished_at": time.monotonic()}
        answer(RESULT_MARK + json.dumps(done))
    return 0


# --- the driver: the state machine ---------------------------------------------------------


@dataclass
class Invocation:
    """One worker run, as the driver saw it."""

    batch: int
    attempt: int
    request_id: str
    items: int
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    started_at: float | None = None  # time.monotonic() in the worker (host-wide clock)
    finished_at: float | None = None
    stderr: str = ""  #: what the worker wrote to stderr during an invocation it died in


def read_items(text: str) -> list[Item]:
    """Rows of a ``|`` CSV with a header row, as ItemReader gives them: dicts of strings."""
    return [dict(row) for row in csv.DictReader(io.StringIO(text), delimiter="|")]


def make_batches(
    items: Sequence[Item], max_items_per_batch: int, batch_input: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """ItemBatcher: consecutive slices of ``max_items_per_batch`` items, each with BatchInput."""
    if max_items_per_batch < 1:
        raise UsageError(f"max_items_per_batch: {max_items_per_batch} must be at least 1")
    return [
        {"Items": list(items[i : i + max_items_per_batch]), "BatchInput": dict(batch_input)}
        for i in range(0, len(items), max_items_per_batch)
    ]


def make_batch_input(
    dest: str, kind: str, date: dt.date, global_rate: float, max_concurrency: int
) -> dict[str, Any]:
    """The ItemBatcher's BatchInput of the state machine, for these settings."""
    return {
        "dest": dest,
        "kind": kind,
        "date": date.isoformat(),
        "global_rate": _number(global_rate),
        "max_concurrency": max_concurrency,
    }


def _number(value: float) -> int | float:
    """JSON numbers as States.StringToJson makes them: 40, not 40.0."""
    return int(value) if float(value).is_integer() else float(value)


def _absolute(location: str) -> str:
    return location if parse_s3(location, "location") else os.path.abspath(location)


async def _read_text(url: str) -> str:
    if parse_s3(url, "ids") is None:
        return await asyncio.to_thread(Path(url).read_text, encoding="utf-8")
    import aioboto3

    async with aioboto3.Session().client("s3") as s3:
        data = b"".join([chunk async for chunk in read_source(url, s3)])
    return data.decode("utf-8")


async def _prepare(
    source: str, dest: str, env: Mapping[str, str], max_items_per_batch: int, max_concurrency: int
) -> dict[str, Any]:
    """PrepareIds: the handler's prepare event if it can take it, else the engine function.
    Both return the batch plan; there is no state machine, so no execution check."""
    plan = {"max_items_per_batch": max_items_per_batch, "max_concurrency": max_concurrency}
    if parse_s3(source, "source") and parse_s3(dest, "dest"):
        from tmdb_async.events import handle

        event = {"action": "prepare", "source": source, "dest": dest, **plan}
        return await handle(event, None, env)
    from tmdb_async.jobs.prepare import prepare_ids

    return await prepare_ids(Settings(source=source, dest=dest).validate(), **plan)


def _worker_env(base: Mapping[str, str], tmdb_url: str | None) -> dict[str, str]:
    env = dict(base)
    env.setdefault("TMDB_LOG_LEVEL", "WARNING")
    env.setdefault("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
    if tmdb_url:
        env["TMDB_BASE_URL"] = tmdb_url
    return env


_STREAM_LIMIT = 1 << 24  # bytes an answer line may hold (a batch's result is far less)
_TAIL = 4096  # characters of a worker's latest stderr kept for the error of a crash
_TIMEOUT_GRACE = 1.0  # seconds past its timeout before an invocation is killed


class Worker:
    """One worker process (:func:`worker_main`): a warm execution environment that takes
    invocations one at a time. Its stderr (the handler's JSON logs and metrics line) goes to
    ``log_stream`` as it comes; what an invocation wrote last is kept for its error if the
    process dies during it."""

    def __init__(self, process: asyncio.subprocess.Process, log_stream: TextIO | None) -> None:
        self._process = process
        self._tail = ""
        self._stderr = asyncio.create_task(self._drain(log_stream))
        self.init_error: dict[str, str] | None = None

    @classmethod
    async def start(
        cls, mode: str, dest: str, env: Mapping[str, str], python: str, log: TextIO | None
    ) -> Worker:
        """Start a worker and wait for its init phase to end (or fail: :attr:`init_error`)."""
        process = await asyncio.create_subprocess_exec(
            *(python, "-c", WORKER_CODE, mode, dest),
            cwd=ROOT,  # handler.py, tmdb_async and tmdb_devtools import from here, as in the layer
            env=dict(env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_STREAM_LIMIT,
        )
        worker = cls(process, log)
        try:
            answer = await worker._answer()
        except BaseException:
            worker.kill()
            await worker.close()
            raise
        if answer is None or answer[0] != READY_MARK:
            worker.init_error = answer[1] if answer else await worker._exit_error()
            worker.kill()  # a failed environment is never used again
            await worker._process.wait()
        return worker

    @property
    def alive(self) -> bool:
        return self._process.returncode is None

    async def _drain(self, log_stream: TextIO | None) -> None:
        stream = self._process.stderr
        assert stream is not None
        while chunk := await stream.read(1 << 16):  # chunks, not lines: no line is too long
            text = chunk.decode("utf-8", "replace")
            self._tail = (self._tail + text)[-_TAIL:]
            if log_stream is not None:
                log_stream.write(text)
                log_stream.flush()

    async def _answer(self) -> tuple[str, dict[str, Any]] | None:
        """The next answer as ``(mark, payload)``; ``None`` when the process ended."""
        stream = self._process.stdout
        assert stream is not None
        line = (await stream.readline()).decode("utf-8", "replace").rstrip("\n")
        if not line:
            return None
        for mark in (RESULT_MARK, ERROR_MARK):
            if line.startswith(mark):
                return mark, json.loads(line.removeprefix(mark))
        return (READY_MARK, {}) if line == READY_MARK else None

    async def _exit_error(self) -> dict[str, str]:
        """Lambda's error for an environment that exited: its last stderr line or its code."""
        self.kill()  # an answer it should not give counts as an exit
        code = await self._process.wait()
        await self._stderr
        tail = self._tail.strip().splitlines()[-1:] or [f"exit code {code}"]
        return {"errorType": "Runtime.ExitError", "errorMessage": tail[0]}

    async def invoke(self, job: dict[str, Any], invocation: Invocation) -> None:
        """Run one invocation; fill ``invocation`` with its result or its error. Past its
        timeout the process is killed, as Lambda stops an invocation that runs too long."""
        if self.init_error is not None:  # fails this invocation; the next gets a new worker
            invocation.error, self.init_error = self.init_error, None
            return
        stdin = self._process.stdin
        assert stdin is not None
        self._tail = ""
        timeout = float(job["timeout_seconds"])
        answer = None
        try:
            async with asyncio.timeout(timeout + _TIMEOUT_GRACE):
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    stdin.write(json.dumps(job).encode() + b"\n")
                    await stdin.drain()
                    answer = await self._answer()
        except TimeoutError:
            self.kill()
            await self._process.wait()
            invocation.error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {timeout:.2f} seconds",
            }
            return
        if answer is None or answer[0] == READY_MARK:
            invocation.error = await self._exit_error()
            invocation.stderr = self._tail
        elif answer[0] == ERROR_MARK:
            invocation.error = answer[1]
        else:
            invocation.result = answer[1]["result"]
            invocation.started_at = answer[1]["started_at"]
            invocation.finished_at = answer[1]["finished_at"]

    def kill(self) -> None:
        """Kill the process now, without waiting: nothing can stop it between here and the
        signal (a second Ctrl-C while a pool closes included)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def close(self) -> None:
        """End the process (end of stdin: it exits after its invocation) and reap it."""
        if self.alive and self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), 10)
        except TimeoutError:
            self.kill()
            await self._process.wait()
        with contextlib.suppress(Exception):
            await self._stderr


class WorkerPool:
    """``size`` warm workers, all through their init phase before the Map starts.

    On AWS each child's Lambda environment starts on its own machine, so their inits overlap
    and the children's first requests come together. Here they would share this machine's
    CPUs and start one after the other (on 2 CPUs, 8 inits take about a second), leaving
    part of the rate idle; and Lambda reuses a warm environment for the next invocation of a
    child where a new process would start cold. A worker that died is replaced, like an
    environment Lambda discards."""

    def __init__(
        self,
        size: int,
        mode: str,
        dest: str,
        env: Mapping[str, str],
        python: str,
        log_stream: TextIO | None,
    ) -> None:
        self._spec = (mode, dest, env, python, log_stream)
        self._size = size
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._all: list[Worker] = []

    async def _start(self) -> Worker:
        worker = await Worker.start(*self._spec)
        self._all.append(worker)
        return worker

    async def __aenter__(self) -> WorkerPool:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._start()) for _ in range(self._size)]
        except BaseException:
            await self._close(kill=True)
            raise
        for task in tasks:
            self._idle.put_nowait(task.result())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        # Cancelled (Ctrl-C) or failed: no orphan worker keeps calling TMDB.
        await self._close(kill=exc_type is not None)

    async def _close(self, *, kill: bool) -> None:
        if kill:
            for worker in self._all:  # all signalled before the first await
                worker.kill()
        await asyncio.gather(*(w.close() for w in self._all), return_exceptions=True)

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        """An idle worker for one child's invocations; at most ``size`` children at once.
        One that exited is replaced first, unless its failed init has not yet failed an
        invocation: as on Lambda, a failed init fails the invocation it was for, and the next
        one tries the init again."""
        worker = await self._idle.get()
        try:
            if not worker.alive and worker.init_error is None:
                await worker.close()
                worker = await self._start()
            yield worker
        finally:
            self._idle.put_nowait(worker)


async def run_local_map(
    source_csv: str,
    dest: str,
    *,
    kind: str = "auto",
    date: str | dt.date | None = None,
    max_items_per_batch: int = 500,
    max_concurrency: int = 4,
    global_rate: float = 40.0,
    tmdb_url: str | None = None,
    function_timeout: float = 900.0,
    tolerated_failure_percentage: float = 0.0,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
    log_stream: TextIO | None = None,
    on_invocation: Callable[[Invocation], None] | None = None,
) -> dict[str, Any]:
    """Run the state machine's steps locally; return a report (see the module docstring).

    ``env`` is the functions' environment (default: this process's), ``tmdb_url`` overrides
    its ``TMDB_BASE_URL``; the driver's own S3 calls (prepare, reading the ids) use this
    process's AWS environment. ``log_stream`` receives each worker's stderr (its JSON logs);
    ``on_invocation`` is called after each invocation (progress).
    """
    started = time.monotonic()
    base_env = dict(os.environ if env is None else env)
    if max_concurrency < 1:
        raise UsageError(f"max_concurrency: {max_concurrency} must be at least 1")
    if max_items_per_batch < 1:
        raise UsageError(f"max_items_per_batch: {max_items_per_batch} must be at least 1")
    if not global_rate > 0:
        raise UsageError(f"global_rate: {global_rate} must be above 0 requests/s")
    if not function_timeout > 0:
        raise UsageError(f"function_timeout: {function_timeout} must be above 0 s")
    if isinstance(date, dt.date):
        when = date
    else:
        when = parse_date(date, "date") if date else dt.datetime.now(dt.UTC).date()
    source, dest = _absolute(source_csv), _absolute(dest)
    mode = "handler" if parse_s3(dest, "dest") else "engine"
    if not Credentials.from_env(base_env).secret and not (
        mode == "handler" and base_env.get("TMDB_TOKEN_SSM_PARAMETER")
    ):
        raise CredentialsError(
            "no TMDB credentials: set TMDB_READ_ACCESS_TOKEN (preferred) or TMDB_API_KEY"
        )

    prepared = await _prepare(source, dest, base_env, max_items_per_batch, max_concurrency)
    ids_url = str(prepared["ids_url"])
    items = read_items(await _read_text(ids_url)) if prepared["unique_ids"] else []
    # The state machine's IngestMap: MaxItemsPerBatchPath, MaxConcurrencyPath and the
    # BatchInput's max_concurrency all come from the prepare step's plan.
    running = max(1, int(prepared["children"]))
    batch_input = make_batch_input(dest, kind, when, global_rate, running)
    batches = make_batches(items, int(prepared["items_per_batch"]), batch_input)
    worker_env = _worker_env(base_env, tmdb_url)
    invocations: list[Invocation] = []
    failed_batches: list[int] = []

    async def child(pool: WorkerPool, number: int, event: dict[str, Any]) -> None:
        async with pool.worker() as worker:
            attempt = 0
            while True:
                attempt += 1
                request_id = f"local-{number:05d}-{attempt}"
                invocation = Invocation(number, attempt, request_id, len(event["Items"]))
                invocations.append(invocation)
                job = {
                    "event": event,
                    "request_id": request_id,
                    "timeout_seconds": function_timeout,
                }
                await worker.invoke(job, invocation)
                result = invocation.result or {}
                left: list[Item] = result.get("remaining_items") or []
                if left and [i.get("id") for i in left] == [i.get("id") for i in event["Items"]]:
                    invocation.error = {
                        "errorType": "LocalMap.NoProgress",
                        "errorMessage": f"{len(left)} items handed back unchanged",
                    }
                if on_invocation is not None:
                    on_invocation(invocation)
                if invocation.error is not None:
                    failed_batches.append(number)
                    return
                if not left:  # MoreToDo's Default: BatchDone
                    return
                event = {"Items": left, "BatchInput": result["batch_input"]}

    workers = WorkerPool(min(running, len(batches)), mode, dest, worker_env, python, log_stream)
    async with workers:
        map_started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for number, event in enumerate(batches):
                group.create_task(child(workers, number, event))
        map_seconds = time.monotonic() - map_started
    return _report(
        prepared=prepared,
        source=source,
        dest=dest,
        mode=mode,
        batches=len(batches),
        invocations=invocations,
        failed_batches=sorted(failed_batches),
        tolerated=tolerated_failure_percentage,
        settings={
            "kind": kind,
            "date": when.isoformat(),
            "max_items_per_batch": max_items_per_batch,
            "max_concurrency": max_concurrency,
            "items_per_batch": prepared["items_per_batch"],
            "children": prepared["children"],
            "global_rate": global_rate,
            "function_timeout": function_timeout,
        },
        seconds=time.monotonic() - started,
        map_seconds=map_seconds,
    )


def _report(
    *,
    prepared: Mapping[str, Any],
    source: str,
    dest: str,
    mode: str,
    batches: int,
    invocations: list[Invocation],
    failed_batches: list[int],
    tolerated: float,
    settings: dict[str, Any],
    seconds: float,
    map_seconds: float,
) -> dict[str, Any]:
    results = [inv.result for inv in invocations if inv.result is not None]

    def total(name: str) -> int:
        return sum(int(r.get(name) or 0) for r in results)

    requests = total("requests")
    starts = [inv.started_at for inv in invocations if inv.started_at is not None]
    ends = [inv.finished_at for inv in invocations if inv.finished_at is not None]
    span = (max(ends) - min(starts)) if starts and ends else 0.0
    share = 100.0 * len(failed_batches) / batches if batches else 0.0
    if failed_batches and share > tolerated:
        status = "failed"
    elif total("failed") or failed_batches:
        status = "failed_ids"
    elif total("unique_ids") != int(prepared.get("unique_ids") or 0):
        status = "incomplete"
    else:
        status = "ok"
    errors = [
        {"batch": inv.batch, "request_id": inv.request_id, **inv.error}
        for inv in invocations
        if inv.error is not None
    ]
    return {
        "status": status,
        "source": source,
        "dest": dest,
        "mode": mode,
        "ids_url": prepared.get("ids_url"),
        "rows_read": prepared.get("rows_read"),
        "ids": prepared.get("unique_ids"),
        "batches": batches,
        "invocations": len(invocations),
        "ids_done": total("unique_ids"),
        "records": total("records"),
        "not_found": total("not_found"),
        "invalid": total("invalid"),
        "failed": total("failed"),
        "failed_batches": failed_batches,
        "errors": errors,
        "files": sum(len(r.get("files") or []) for r in results),
        "sidecars": sum(len(r.get("sidecars") or []) for r in results),
        "requests": requests,
        "throttled_429": total("throttled_429"),
        "seconds": round(seconds, 3),
        "map_seconds": round(map_seconds, 3),
        # Requests of every invocation over the time from the first invocation's start to the
        # last one's end: the rate TMDB saw, the children's gaps between batches included.
        "measured_global_rate": round(requests / span, 2) if span > 0 else None,
        **settings,
    }


def exit_code(report: Mapping[str, Any]) -> int:
    if report["status"] == "ok":
        return ExitCode.OK
    if report["status"] == "failed" and report["errors"]:
        return exit_code_of(report["errors"][0]["errorType"], ExitCode.FAILED_IDS)
    if report["status"] == "incomplete":
        return ExitCode.INCOMPLETE
    return ExitCode.FAILED_IDS


# --- command line --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tmdb_devtools local-map",
        description="Run the Step Functions Distributed Map of statemachine/ingest.asl.json "
        "locally: prepare the distinct ids, batch them, and run the batches in worker "
        "processes, at most --max-concurrency at a time, each at global-rate/children (the "
        "children running at once: fewer batches than --max-concurrency only for fewer ids).",
    )
    add = parser.add_argument
    add("source", help="CSV path or s3://bucket/key")
    add("--dest", help="local folder or s3://bucket[/prefix] (env TMDB_DEST)")
    add("--kind", default="auto", choices=("movie", "tv", "auto"), help="default auto")
    add("--date", help="processing date YYYY-MM-DD (default today UTC)")
    add("--max-items-per-batch", type=int, default=500, help="most ids a batch (default 500)")
    add("--max-concurrency", type=int, default=4, help="Map MaxConcurrency (default 4)")
    add("--global-rate", type=float, default=40.0, help="requests/s for all (default 40)")
    add("--tmdb-url", help="TMDB base URL (env TMDB_BASE_URL), e.g. the fake's")
    add("--function-timeout", type=float, default=900.0, help="seconds per invocation (900)")
    add("--tolerated-failure-percentage", type=float, default=0.0, help="default 0")
    add("--json", action="store_true", help="print the report as one JSON line on stdout")
    add("--verbose", action="store_true", help="show the workers' logs and each invocation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    dest = args.dest or os.environ.get("TMDB_DEST", "")
    if not dest:
        print("error: --dest: missing (or set TMDB_DEST)", file=sys.stderr)
        return ExitCode.BAD_INPUT

    def progress(invocation: Invocation) -> None:
        if invocation.error is not None:
            print(f"batch {invocation.batch}: {invocation.error}", file=sys.stderr)
        elif args.verbose and invocation.result is not None:
            result = invocation.result
            print(
                f"batch {invocation.batch} #{invocation.attempt}: {result['status']}, "
                f"{result['unique_ids']}/{invocation.items} ids, {result['requests']} requests "
                f"in {result['seconds']:.1f}s",
                file=sys.stderr,
            )

    try:
        report = asyncio.run(
            run_local_map(
                args.source,
                dest,
                kind=args.kind,
                date=args.date,
                max_items_per_batch=args.max_items_per_batch,
                max_concurrency=args.max_concurrency,
                global_rate=args.global_rate,
                tmdb_url=args.tmdb_url,
                function_timeout=args.function_timeout,
                tolerated_failure_percentage=args.tolerated_failure_percentage,
                log_stream=sys.stderr if args.verbose else None,
                on_invocation=progress,
            )
        )
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    rate = report["measured_global_rate"]
    failed_batches = report["failed_batches"]
    print(
        f"{report['status']}: {report['ids']} distinct ids in {report['batches']} batches, "
        f"{report['invocations']} invocations: {report['records']} records, "
        f"{report['not_found']} not found, {report['invalid']} invalid, {report['failed']} "
        f"failed; {report['requests']} requests ({report['throttled_429']} x 429) in "
        f"{report['seconds']:.1f}s"
        + (f", {rate} requests/s" if rate is not None else "")
        + (
            f"; {len(failed_batches)} of {report['batches']} batches failed (the counts are "
            "the other batches'; each failed batch's error is above)"
            if failed_batches
            else ""
        ),
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(report))
    return exit_code(report)


if __name__ == "__main__":
    raise SystemExit(main())
