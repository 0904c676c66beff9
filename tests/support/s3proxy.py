"""A fault-injecting HTTP proxy in front of moto's S3 server, for S3 fault tests.

moto answers every request correctly; real S3 sometimes answers 500/503 SlowDown or drops
the connection, and a bucket can vanish or deny access. The proxy forwards to moto and, by
seeded chance or by rule, answers with S3's own error XML or resets the connection instead;
or it forwards a write and then answers 500 anyway (``lost_answer``): the write landed, the
client does not know, and botocore sends it again.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>proxy</RequestId></Error>"
)
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class S3Faults:
    """What to inject. Probabilities apply per request; ``deny_puts_after`` makes every PUT
    after that many succeed answer 403 AccessDenied (a permission change mid-run)."""

    slow_down: float = 0.0  # 503 SlowDown
    internal_error: float = 0.0  # 500 InternalError
    reset: float = 0.0  # connection reset, no response
    lost_answer: float = 0.0  # PUT/DELETE applied by moto, then answered 500 InternalError
    deny_puts_after: int | None = None
    seed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)  # paths whose answer was lost


class S3FaultProxy:
    def __init__(self, upstream: str, faults: S3Faults) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._puts = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> S3FaultProxy:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _error(self, status: int, code: str, message: str) -> web.Response:
        self.faults.counts[code] += 1
        return web.Response(
            status=status,
            body=_ERROR.format(code=code, message=message).encode(),
            content_type="application/xml",
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        f = self.faults
        if request.method == "PUT" and f.deny_puts_after is not None:
            if self._puts >= f.deny_puts_after:
                return self._error(403, "AccessDenied", "Access Denied")
            self._puts += 1
        roll = self._rng.random()
        if roll < f.reset:
            f.counts["reset"] += 1
            transport = request.transport
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                transport.abort()
            return web.Response(status=500)
        if roll < f.reset + f.slow_down:
            return self._error(503, "SlowDown", "Please reduce your request rate.")
        if roll < f.reset + f.slow_down + f.internal_error:
            return self._error(500, "InternalError", "We encountered an internal error.")
        lose = request.method in ("PUT", "DELETE") and self._rng.random() < f.lost_answer
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        assert self._session is not None
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            if lose and upstream.status < 300:
                f.counts["lost_answer"] += 1
                f.lost.append(request.path)
                return self._error(500, "InternalError", "We encountered an internal error.")
            out_headers = {
                k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS
            }
            f.counts["forwarded"] += 1
            return web.Response(status=upstream.status, body=payload, headers=out_headers)
