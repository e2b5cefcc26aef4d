"""The Fyers order-update socket (``wss://socket.fyers.in/trade/v3``) on ``websockets``: JSON, as the official SDK's
``FyersWebsocket/order_ws.py`` speaks it.

* the handshake carries ``authorization: <app_id>:<access_token>``;
* after it, one subscription ``{"T": "SUB_ORD", "SLIST": ["orders", "trades", "positions"], "SUB_T": 1}``;
* a text ``ping`` every 10 s keeps it open (the server answers ``pong``). websockets' own keepalive is off (the SDK
  speaks text pings), so the text ping IS the liveness check: if nothing at all (no message, no ``pong``) arrives for
  ``silent_after_s`` (default 2.5 ping intervals), the connection is taken as silently dead (``order_socket_silent``),
  closed and reconnected — a dead socket must never look like a quiet one;
* messages are JSON objects ``{"s": "ok", "orders": {...}}`` / ``"trades"`` / ``"positions"`` with the socket's own
  field names (``orders.py`` renames them); anything else is a general message (logged).

A message that is not JSON, or not one of those shapes, is logged and dropped (``dropped``). The socket reconnects
with capped, jittered backoff; after EVERY successful connect, the first one included, ``on_reconnect`` runs
(``FyersBroker.resync``: the order book fills in what was sent while the socket was down or not yet up), after the
subscription is sent, so no update falls between the book read and the stream. A handshake refused with 401, or
with a JSON Fyers error carrying a token code (``errors.TOKEN_CODES``), reports the token (``on_token_rejected``) and
waits for a new one instead of reconnecting in a loop; any other refusal (a bare 403 from a CDN or firewall, an
HTML page, 5xx) is a transport failure: reconnect with backoff, the token stays good.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from trader.adapters.fyers.errors import token_refused
from trader.logging import get_logger

log = get_logger("trader.fyers.order_socket")

DEFAULT_URL = "wss://socket.fyers.in/trade/v3"
SUBSCRIBE = {"T": "SUB_ORD", "SLIST": ["orders", "trades", "positions"], "SUB_T": 1}

Handler = Callable[[dict[str, Any]], None]


def _ignore(_message: dict[str, Any]) -> None:
    pass


class FyersOrderSocket:
    def __init__(self, app_id: str, access_token: str, *, url: str = DEFAULT_URL, on_order: Handler,
                 on_trade: Handler = _ignore, on_position: Handler = _ignore,
                 on_reconnect: Callable[[], Awaitable[None]] | None = None,
                 on_token_rejected: Callable[[str, str], None] | None = None, ping_interval_s: float = 10.0,
                 silent_after_s: float | None = None, initial_backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 seed: int = 0) -> None:
        self._app_id = app_id
        self._token = access_token
        self._url = url
        self._on_order = on_order
        self._on_trade = on_trade
        self._on_position = on_position
        self._on_reconnect = on_reconnect
        self._on_token_rejected = on_token_rejected
        self._ping_interval_s = ping_interval_s
        self._silent_after_s = silent_after_s if silent_after_s is not None else 2.5 * ping_interval_s
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._rng = random.Random(seed)
        self._token_changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connections = 0
        self.reconnects = 0
        self.dropped = 0
        self.resyncs = 0
        self.silences = 0
        self.connected = False

    def set_access_token(self, access_token: str) -> None:
        if access_token and access_token != self._token:
            self._token = access_token
            self._token_changed.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="fyers-order-socket")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        attempt = 0
        while not self._closed:
            token = self._token
            refused = False
            try:
                async with connect(self._url, additional_headers={"authorization": f"{self._app_id}:{token}"},
                                   open_timeout=10, ping_interval=None, close_timeout=2) as connection:
                    attempt = 0
                    await connection.send(json.dumps(SUBSCRIBE))
                    self.connections += 1
                    self.connected = True
                    log.info("order_socket_connected", connections=self.connections)
                    if self._on_reconnect is not None:  # every connect: fills made while we were not connected
                        await self._resync()
                    await self._serve(connection)
            except InvalidStatus as exc:
                status = exc.response.status_code
                refused = token_refused(status, bytes(exc.response.body or b"")) and self._on_token_rejected is not None
                log.error("order_socket_refused", status=status, token_refused=refused)
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.warning("order_socket_disconnected", error=type(exc).__name__)
            finally:
                self.connected = False
            if self._closed:
                return
            if refused:
                assert self._on_token_rejected is not None
                self._on_token_rejected(token, "order socket handshake refused")
                while not self._closed and self._token == token:
                    self._token_changed.clear()
                    await self._token_changed.wait()
                continue
            attempt += 1
            self.reconnects += 1
            delay = min(self._initial_backoff_s * 2 ** (attempt - 1), self._max_backoff_s)
            await asyncio.sleep(delay * (0.8 + 0.4 * self._rng.random()))

    async def _resync(self) -> None:
        assert self._on_reconnect is not None
        self.resyncs += 1
        try:
            await self._on_reconnect()
        except Exception as exc:  # the broker could not be read: the next reconnect (or the App's poll) tries again
            log.error("order_socket_resync_failed", error=repr(exc))

    async def _serve(self, connection: ClientConnection) -> None:
        pinger = asyncio.create_task(self._ping(connection), name="fyers-order-socket-ping")
        try:
            while True:
                try:
                    async with asyncio.timeout(self._silent_after_s):
                        raw = await connection.recv()
                except TimeoutError:
                    self.silences += 1
                    log.error("order_socket_silent", silent_s=self._silent_after_s,
                              effect="nothing received, not even a pong: closing and reconnecting (then resyncing)")
                    return  # leaving ``connect`` closes it; run() reconnects
                self.on_message(raw)
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    async def _ping(self, connection: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self._ping_interval_s)
            with contextlib.suppress(TimeoutError):  # a stuck send: the silence check in _serve decides
                async with asyncio.timeout(self._ping_interval_s):
                    await connection.send("ping")

    def on_message(self, raw: str | bytes) -> None:
        """One frame: dispatched by its key, or logged and dropped."""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if text == "pong":
            return
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self.dropped += 1
            log.error("order_socket_message_malformed", message=text[:200])
            return
        for key, handler in (("orders", self._on_order), ("trades", self._on_trade),
                             ("positions", self._on_position)):
            if key in message:
                if not isinstance(message[key], dict):
                    self.dropped += 1
                    log.error("order_socket_message_malformed", message=text[:200])
                    return
                try:
                    handler(message)
                except Exception:  # one bad message must not take the socket down
                    log.exception("order_socket_handler_failed", kind=key)
                return
        log.info("order_socket_general", message=text[:200])
