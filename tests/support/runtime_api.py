"""A minimal AWS Lambda Runtime API on loopback, for running the handler the way Lambda does.

``python -m awslambdaric handler.lambda_handler`` (the runtime interface client, the same code
Lambda's managed Python runtimes run) long-polls this server for invocations and posts the
handler's result or error back. The test side calls :meth:`RuntimeApi.invoke` and awaits what
the runtime answers, so a warm runtime process can be given several invocations in a row.

Implemented (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):

- ``GET  /2018-06-01/runtime/invocation/next`` long-polls an :class:`asyncio.Queue` and serves
  the event with ``Content-Type: application/json`` *exactly* (awslambdaric passes the event as
  a string when a charset is appended) and the ``Lambda-Runtime-*`` headers;
- ``POST /2018-06-01/runtime/invocation/{id}/response`` and ``.../{id}/error`` resolve the
  invocation's future;
- ``POST /2018-06-01/runtime/init/error`` records an initialisation failure and fails every
  invocation that is waiting, so a test never waits on a runtime that has given up.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

Kind = Literal["response", "error"]

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tmdb-ingest"
_PREFIX = "/2018-06-01/runtime"


class RuntimeInitError(RuntimeError):
    """The runtime posted to ``/runtime/init/error`` (e.g. the handler failed to import)."""


@dataclass
class Invocation:
    """One invocation, as the server saw it (times are epoch milliseconds)."""

    request_id: str
    body: bytes
    deadline_ms: int
    queued_at_ms: int
    future: asyncio.Future[tuple[Kind, dict[str, Any]]]
    served_at_ms: int | None = None
    answered_at_ms: int | None = None
    kind: Kind | None = None
    payload: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # of the runtime's answer


def _now_ms() -> int:
    return int(time.time() * 1000)


class RuntimeApi:
    """``async with RuntimeApi() as api:`` then ``AWS_LAMBDA_RUNTIME_API=api.address``."""

    def __init__(self, function_arn: str = FUNCTION_ARN) -> None:
        self.function_arn = function_arn
        self.invocations: dict[str, Invocation] = {}
        self.init_errors: list[dict[str, Any]] = []
        self.polls = 0
        self.first_poll = asyncio.Event()
        self._queue: asyncio.Queue[Invocation] = asyncio.Queue()
        self._runner: web.AppRunner | None = None
        self._address: str | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the value of ``AWS_LAMBDA_RUNTIME_API``."""
        if self._address is None:
            raise RuntimeError("RuntimeApi is not started")
        return self._address

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get(f"{_PREFIX}/invocation/next", self._next)
        app.router.add_post(f"{_PREFIX}/invocation/{{request_id}}/response", self._response)
        app.router.add_post(f"{_PREFIX}/invocation/{{request_id}}/error", self._error)
        app.router.add_post(f"{_PREFIX}/init/error", self._init_error)
        # handler_cancellation: a runtime that goes away stops its pending long-poll.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._address = f"127.0.0.1:{runner.addresses[0][1]}"
        return self._address

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        for invocation in self.invocations.values():
            if not invocation.future.done():
                invocation.future.cancel()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def submit(
        self, event: Any, deadline_ms_from_now: int, request_id: str | None = None
    ) -> Invocation:
        """Queue an invocation; its ``future`` resolves when the runtime answers."""
        if self.init_errors:
            raise RuntimeInitError(json.dumps(self.init_errors[-1]))
        request_id = request_id or str(uuid.uuid4())
        if request_id in self.invocations:
            raise ValueError(f"request id {request_id!r} was already used")
        now = _now_ms()
        invocation = Invocation(
            request_id=request_id,
            body=json.dumps(event).encode(),
            deadline_ms=now + deadline_ms_from_now,
            queued_at_ms=now,
            future=asyncio.get_running_loop().create_future(),
        )
        self.invocations[request_id] = invocation
        self._queue.put_nowait(invocation)
        return invocation

    async def invoke(
        self, event: Any, deadline_ms_from_now: int, request_id: str | None = None
    ) -> tuple[Kind, dict[str, Any]]:
        """Invoke the function once: ``("response", result)`` or ``("error", error)``."""
        return await self.submit(event, deadline_ms_from_now, request_id).future

    # --- the Runtime API ---------------------------------------------------------------

    async def _next(self, request: web.Request) -> web.Response:
        self.polls += 1
        self.first_poll.set()
        invocation = await self._queue.get()
        invocation.served_at_ms = _now_ms()
        return web.Response(
            body=invocation.body,
            headers={
                # Exactly this: with "; charset=utf-8" awslambdaric hands over a str.
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
                "Lambda-Runtime-Trace-Id": (
                    f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
                    f"Parent={uuid.uuid4().hex[:16]};Sampled=0"
                ),
            },
        )

    async def _answer(self, request: web.Request, kind: Kind) -> web.Response:
        invocation = self.invocations.get(request.match_info["request_id"])
        if invocation is None or invocation.served_at_ms is None:
            return web.json_response({"errorMessage": "unknown request id"}, status=400)
        if invocation.future.done():
            return web.json_response({"errorMessage": "already answered"}, status=400)
        payload = json.loads(await request.read())
        invocation.answered_at_ms = _now_ms()
        invocation.kind = kind
        invocation.payload = payload
        invocation.headers = dict(request.headers)
        invocation.future.set_result((kind, payload))
        return web.json_response({"status": "OK"}, status=202)

    async def _response(self, request: web.Request) -> web.Response:
        return await self._answer(request, "response")

    async def _error(self, request: web.Request) -> web.Response:
        return await self._answer(request, "error")

    async def _init_error(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        self.init_errors.append(payload)
        failure = RuntimeInitError(json.dumps(payload))
        for invocation in self.invocations.values():
            if not invocation.future.done():
                invocation.future.set_exception(failure)
        return web.json_response({"status": "OK"}, status=202)
