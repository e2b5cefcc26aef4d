"""A small Fyers API v3 stand-in for the adapter tests: an aiohttp server on 127.0.0.1 (a free port) serving the
documented reply shapes (``{"s", "code", "message", <payload>}``), with per-route scripted replies (status, body,
or a delay) and a log of every request it received."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from trader.adapters.fyers.rest import FyersRestClient
from trader.clock import NS_PER_SECOND, SimClock

APP_ID = "XB12345-100"
TOKEN = "eyJ0eXAi.fyers.token"
START_NS = 1_000 * NS_PER_SECOND


def ok(**payload: Any) -> dict[str, Any]:
    return {"s": "ok", "code": 200, "message": "", **payload}


def error(code: int, message: str) -> dict[str, Any]:
    return {"s": "error", "code": code, "message": message}


@dataclass
class Reply:
    body: Any
    status: int = 200
    delay_s: float = 0.0
    raw: bool = False  # body is bytes/str sent as they are


@dataclass
class Stub:
    replies: dict[tuple[str, str], deque[Reply]] = field(default_factory=lambda: defaultdict(deque))
    defaults: dict[tuple[str, str], Reply] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any, dict[str, str]]] = field(default_factory=list)

    def script(self, method: str, path: str, *replies: Reply) -> None:
        self.replies[(method, path)].extend(replies)

    def default(self, method: str, path: str, reply: Reply) -> None:
        self.defaults[(method, path)] = reply

    def calls(self, method: str, path: str) -> list[Any]:
        return [body for m, p, _q, body, _h in self.requests if (m, p) == (method, path)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        body = json.loads(text) if text else None
        self.requests.append((request.method, request.path, dict(request.query), body, dict(request.headers)))
        key = (request.method, request.path)
        queue = self.replies.get(key)
        reply = queue.popleft() if queue else self.defaults.get(key)
        if reply is None:
            return web.json_response(error(-50, f"no such route {key}"), status=404)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.raw:
            data = reply.body.encode() if isinstance(reply.body, str) else reply.body
            return web.Response(body=data, status=reply.status, content_type="text/html")
        return web.json_response(reply.body, status=reply.status)


@asynccontextmanager
async def fyers_stub(**client_options: Any) -> AsyncIterator[tuple[Stub, FyersRestClient]]:
    stub = Stub()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    root = f"http://127.0.0.1:{server.port}"
    options: dict[str, Any] = {"clock": SimClock(START_NS), "backoff_s": 0.001, **client_options}
    client = FyersRestClient(APP_ID, TOKEN, api_root=f"{root}/api/v3", data_root=f"{root}/data", **options)
    try:
        yield stub, client
    finally:
        await client.close()
        await server.close()
