"""The Fyers order-update socket (``wss://socket.fyers.in/trade/v3`` on the real venue), served by the face's aiohttp
app at ``/trade/v3``.

What the official SDK's ``FyersOrderSocket`` speaks: the handshake carries ``authorization: <app_id>:<access_token>``
(refused with HTTP 401 otherwise); text frames only; the client sends ``"ping"`` (answered ``"pong"``) and
``{"T": "SUB_ORD", "SLIST": ["orders", "trades", "positions", ...], "SUB_T": 1 | -1}`` to subscribe or unsubscribe
(acknowledged ``{"s": "ok", "code": 1605, "message": ...}``); updates are ``{"s": "ok", "orders": {...}}``,
``{"s": "ok", "trades": {...}}`` and ``{"s": "ok", "positions": {...}}`` with the socket's own key names
(``wire.ORDER_SOCKET_KEYS`` ...), sent only to clients subscribed to that channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from trader.logging import get_logger

_log = get_logger("trader.sim.fyers")

CHANNELS = frozenset({"orders", "trades", "positions", "edis", "pricealerts", "login"})
SUBSCRIBED_CODE = 1605  # the subscription acknowledgement (see the report: not confirmed from the docs)


@dataclass(slots=True)
class _Client:
    socket: web.WebSocketResponse
    channels: set[str] = field(default_factory=set)


class OrderSocket:
    def __init__(self, authorize: Callable[[str], bool]) -> None:
        self._authorize = authorize
        self._clients: dict[web.WebSocketResponse, _Client] = {}
        self._outbox: deque[tuple[str, dict[str, Any]]] = deque()
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.refusals = 0
        self.messages_sent = 0

    @property
    def clients(self) -> int:
        return len(self._clients)

    def subscriptions(self) -> list[set[str]]:
        return [set(c.channels) for c in self._clients.values()]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sim-fyers-order-socket")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.drop_connections()

    def push(self, channel: str, row: dict[str, Any]) -> None:
        """Queue one update (``channel`` = orders / trades / positions) for every client subscribed to it."""
        self._outbox.append((channel, row))
        self._ready.set()

    async def flush(self) -> None:
        """Send everything queued so far (tests call this to see the messages deterministically)."""
        async with self._lock:
            while self._outbox:
                channel, row = self._outbox.popleft()
                text = orjson.dumps({"s": "ok", channel: row}).decode()
                for client in list(self._clients.values()):
                    if channel in client.channels:
                        await self._send(client, text)

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self.flush()

    async def drop_connections(self) -> None:
        """Fault knob: close every connection, as a network blip would."""
        for socket in list(self._clients):
            await socket.close(code=1011, message=b"simulated drop")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorize(request.headers.get("authorization", "")):
            self.refusals += 1
            return web.json_response({"s": "error", "code": -16, "message": "Please provide valid token"},
                                     status=401)
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        client = _Client(socket)
        self._clients[socket] = client
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    await self._command(client, message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            self._clients.pop(socket, None)
        return socket

    async def _command(self, client: _Client, text: str) -> None:
        if text == "ping":
            await self._send(client, "pong")
            return
        try:
            message = orjson.loads(text)
            kind, channels, sub = message["T"], message["SLIST"], message["SUB_T"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await self._send(client, orjson.dumps({"s": "error", "code": -50,
                                                   "message": f"cannot understand {text[:80]!r}"}).decode())
            return
        if kind != "SUB_ORD" or sub not in (1, -1) or not isinstance(channels, list) \
                or not all(isinstance(c, str) and c in CHANNELS for c in channels):
            await self._send(client, orjson.dumps({"s": "error", "code": -50,
                                                   "message": f"invalid subscription {text[:80]!r}"}).decode())
            return
        if sub == 1:
            client.channels.update(channels)
        else:
            client.channels.difference_update(channels)
        await self._send(client, orjson.dumps({"s": "ok", "code": SUBSCRIBED_CODE, "message": (
            "Successfully subscribed" if sub == 1 else "Successfully unsubscribed")}).decode())

    async def _send(self, client: _Client, text: str) -> None:
        try:
            await client.socket.send_str(text)
        except (ConnectionError, RuntimeError):
            return
        self.messages_sent += 1
