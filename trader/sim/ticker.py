"""The simulator's Kite WebSocket: binary ticks in the modes each client asked for, order postbacks as text.

Speaks what the official ``KiteTicker`` and our own client expect (docs/reference/kite-protocol.md §4.10): credentials
in the query on the root path (403 otherwise), idempotent ``subscribe``/``unsubscribe``/``mode`` commands with ``quote``
as the default mode, at most 3000 tokens a connection, a 1-byte heartbeat when idle, no unsolicited pongs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from trader.events import Tick
from trader.logging import get_logger
from trader.sim.encode import HEARTBEAT, DayStats, Mode, encode_frame, encode_packet
from trader.sim.socket_clients import ClientSender, SocketClient

log = get_logger("trader.sim.ticker")

MAX_TOKENS = 3000
INDICES_SEGMENT = 9
_MODES: frozenset[str] = frozenset({"ltp", "quote", "full"})


@dataclass(slots=True)
class _Client(SocketClient):
    modes: dict[int, Mode] = field(default_factory=dict)


class TickerServer(ClientSender):
    def __init__(self, authorize: Callable[[str, str], bool], *, heartbeat_s: float = 1.0) -> None:
        self._authorize = authorize
        self._heartbeat_s = heartbeat_s
        self._clients: dict[ServerConnection, _Client] = {}
        self._server: Server | None = None
        self.frames_sent = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = await serve(self._handle, host, port, process_request=self._check, ping_interval=None)
        bound = next(iter(self._server.sockets)).getsockname()
        return f"ws://{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def subscriptions(self) -> list[dict[int, Mode]]:
        return [dict(c.modes) for c in self._clients.values()]

    # -- what the exchange sends ------------------------------------------------------------------------
    async def publish_ticks(self, ticks: Iterable[Tick], day_stats: Mapping[int, DayStats] | None = None) -> None:
        batch = list(ticks)
        stats = day_stats or {}
        for client in list(self._clients.values()):
            packets = [encode_packet(t, mode, index=t.instrument_token & 0xFF == INDICES_SEGMENT,
                                     day=stats.get(t.instrument_token))
                       for t in batch if (mode := client.modes.get(t.instrument_token)) is not None]
            if packets:
                await self._send(client, encode_frame(packets))

    async def publish_order(self, payload: Mapping[str, Any]) -> None:
        text = orjson.dumps({"type": "order", "data": payload}).decode()
        for client in list(self._clients.values()):
            await self._send(client, text)

    async def drop_connections(self) -> None:
        """Fault knob: close every connection, as a network blip would."""
        for connection in list(self._clients):
            await connection.close(code=1011, reason="simulated drop")

    # -- connections ------------------------------------------------------------------------------------
    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        query = parse_qs(urlsplit(request.path).query)
        api_key = query.get("api_key", [""])[0]
        token = query.get("access_token", [""])[0]
        if not self._authorize(api_key, token):
            return Response(403, "Forbidden", Headers(), b"invalid api_key or access_token")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        client = _Client(connection, last_sent=asyncio.get_running_loop().time())
        self._clients[connection] = client
        heartbeat = asyncio.create_task(self._heartbeats(client))
        try:
            async for message in connection:
                if isinstance(message, str):
                    await self._command(client, message)
        except ConnectionClosed:
            pass
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._clients.pop(connection, None)

    async def _command(self, client: _Client, text: str) -> None:
        try:
            message = orjson.loads(text)
            action, value = message["a"], message["v"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await self._error(client, f"cannot understand {text[:80]!r}: send {{\"a\": action, \"v\": value}}")
            return
        if action == "subscribe" and _tokens(value):
            for token in _tokens(value):
                client.modes.setdefault(token, "quote")
        elif action == "unsubscribe" and _tokens(value):
            for token in _tokens(value):
                client.modes.pop(token, None)
        elif action == "mode" and isinstance(value, list) and len(value) == 2 and value[0] in _MODES:
            for token in _tokens(value[1]):
                if token in client.modes:
                    client.modes[token] = value[0]
        else:
            await self._error(client, f"invalid {action!r} message")
            return
        if len(client.modes) > MAX_TOKENS:
            await self._error(client, f"more than {MAX_TOKENS} instruments on one connection")
            for token in list(client.modes)[MAX_TOKENS:]:
                del client.modes[token]

    async def _error(self, client: _Client, text: str) -> None:
        await self._send(client, orjson.dumps({"type": "error", "data": text}).decode())

    async def _heartbeats(self, client: _Client) -> None:
        await self._beat(client, self._heartbeat_s, HEARTBEAT)


def _tokens(value: Any) -> list[int]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**32]
