"""Local stand-ins for the alert destinations, on 127.0.0.1 free ports: a fake Telegram Bot API (records
sendMessage, serves getUpdates from a queue the test fills), a webhook sink, and a black hole (accepts TCP
connections and never answers)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

BOT_TOKEN = "123456:TEST-token-ABCdefGHIjkl"
CHAT_ID = 4242
STRANGER_CHAT_ID = 666
BOT_USERNAME = "TraderTestBot"


@dataclass
class FakeBotApi:
    token: str = BOT_TOKEN
    sent: list[dict[str, Any]] = field(default_factory=list)
    # Scripted answers to sendMessage, used first: (HTTP status, raw body).
    send_script: list[tuple[int, bytes]] = field(default_factory=list)
    polls: list[dict[str, Any]] = field(default_factory=list)
    poll_script: list[tuple[int, bytes]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 100
    url: str = ""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_post("/bot{token}/{method}", self._handle)
        return application

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = orjson.loads(await request.read())
        if method == "sendMessage":
            self.sent.append(params)
            if self.send_script:
                status, raw = self.send_script.pop(0)
                return web.Response(status=status, body=raw, content_type="application/json")
            return web.json_response({"ok": True, "result": {"message_id": len(self.sent),
                                                             "chat": {"id": params["chat_id"]}}})
        if method == "getMe":
            return web.json_response({"ok": True, "result": {"id": 1, "is_bot": True, "username": BOT_USERNAME}})
        if method == "getUpdates":
            self.polls.append(params)
            if self.poll_script:
                status, raw = self.poll_script.pop(0)
                return web.Response(status=status, body=raw, content_type="application/json")
            if not self.updates:  # a long poll, kept short so that the server stops promptly
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), min(float(params.get("timeout", 0)), 0.5))
            offset = int(params.get("offset", 0))
            ready = [u for u in self.updates if u.get("update_id", offset) >= offset]
            self.updates = [u for u in ready if "update_id" in u]  # a malformed one is served once
            return web.json_response({"ok": True, "result": ready})
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    def command(self, text: str, *, chat_id: int = CHAT_ID, user_id: int = 77, date: int | None = None) -> int:
        """Queue a message as Telegram would deliver it; returns its update id."""
        update_id = self.next_update_id
        self.next_update_id += 1
        self.updates.append({"update_id": update_id, "message": {
            "message_id": update_id, "date": int(time.time()) if date is None else date, "text": text,
            "chat": {"id": chat_id, "type": "private"}, "from": {"id": user_id, "is_bot": False}}})
        self._arrived.set()
        return update_id

    def texts(self) -> list[str]:
        return [str(m["text"]) for m in self.sent]


@dataclass
class WebhookSink:
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # scripted answers, used first; then 200
    url: str = ""

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_post("/hook/{secret}", self._handle)
        return application

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"status": status}, status=status)

    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for _, raw in self.received]


async def _serve(application: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(application, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # aiohttp has no public accessor for the bound port
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    fake = FakeBotApi()
    runner, fake.url = await _serve(fake.app())
    try:
        yield fake
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    sink = WebhookSink()
    runner, base = await _serve(sink.app())
    sink.url = f"{base}/hook/s3cr3t-path"
    try:
        yield sink
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """``http://127.0.0.1:<port>/`` of a server that accepts connections, reads nothing and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()
