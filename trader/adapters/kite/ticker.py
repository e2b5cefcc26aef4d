"""Kite WebSocket ticker client on ``websockets``: implements the ``MarketData`` port.

Connects with api_key/access_token, subscribes its tokens in one mode, decodes every binary frame (1-byte frames are
heartbeats), hands text ``order`` messages to a callback and logs ``error``/``message`` ones. It reconnects with
exponential backoff and jitter and resubscribes with the same modes. If nothing at all — not even a heartbeat —
arrives for ``silence_timeout_s`` while the market is open, it reports the feed as silent (a ``FeedStatus`` event)
and reconnects: a silent websocket must never look like a quiet market. Malformed frames are counted and logged,
never fatal.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from trader.adapters.kite.decoder import decode_frame
from trader.clock import Clock
from trader.events import FeedStatus, Tick
from trader.logging import get_logger
from trader.market.calendar import MarketCalendar
from trader.market.instrument_master import InstrumentMaster

log = get_logger("trader.kite.ticker")

Mode = Literal["ltp", "quote", "full"]
MAX_TOKENS_PER_CONNECTION = 3000  # Kite's limit per WebSocket connection


class KiteTicker:
    def __init__(self, api_key: str, access_token: str, tokens: Iterable[int], *, clock: Clock,
                 root: str = "wss://ws.kite.trade", mode: Mode = "full", calendar: MarketCalendar | None = None,
                 on_order: Callable[[dict[str, Any]], None] | None = None, silence_timeout_s: float = 5.0,
                 initial_backoff_s: float = 1.0, max_backoff_s: float = 60.0, seed: int = 0) -> None:
        self._url = f"{root}?api_key={api_key}&access_token={access_token}"
        self._tokens = sorted(set(tokens))
        if not self._tokens:
            raise ValueError("the ticker needs at least one instrument token to subscribe")
        if len(self._tokens) > MAX_TOKENS_PER_CONNECTION:
            raise ValueError(f"{len(self._tokens)} tokens exceed Kite's {MAX_TOKENS_PER_CONNECTION} per connection")
        self._mode: Mode = mode
        self._clock = clock
        self._calendar = calendar
        self._on_order = on_order
        self._publish: Callable[[object], None] = lambda _event: None
        self._silence_timeout_s = silence_timeout_s
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._rng = random.Random(seed)  # jitter only; seeded so tests are repeatable
        self._closed = False
        self._connection: ClientConnection | None = None
        self._next_tick_id = 1
        self.frames = 0
        self.heartbeats = 0
        self.malformed = 0
        self.reconnects = 0
        self.silences = 0
        self.subscriptions_sent = 0

    # -- MarketData port ----------------------------------------------------------------------------------
    def attach(self, publish: Callable[[object], None]) -> None:
        """Where ``FeedStatus`` events go (the bus)."""
        self._publish = publish

    def add_tokens(self, tokens: Iterable[int]) -> None:
        """Before ``start``: subscribe these too (contracts held from before a restart, outside the chain picked)."""
        merged = sorted(set(self._tokens) | set(tokens))
        if len(merged) > MAX_TOKENS_PER_CONNECTION:
            raise ValueError(f"{len(merged)} tokens exceed Kite's {MAX_TOKENS_PER_CONNECTION} per connection")
        self._tokens = merged

    async def start(self, instruments: InstrumentMaster) -> None:
        unknown = [t for t in self._tokens if instruments.by_token(t) is None]
        if unknown:
            log.warning("ticker_tokens_not_in_master", tokens=unknown[:20], count=len(unknown))

    async def close(self) -> None:
        self._closed = True
        if self._connection is not None:
            await self._connection.close()

    async def stream(self) -> AsyncIterator[list[Tick]]:
        attempt = 0
        while not self._closed:
            try:
                async with connect(self._url, additional_headers={"X-Kite-Version": "3"},
                                   user_agent_header="trader-kite-ticker", open_timeout=10,
                                   ping_interval=None, max_size=2**22,
                                   close_timeout=2) as connection:  # a dead server cannot hold up a shutdown
                    self._connection = connection
                    attempt = 0
                    await self._subscribe(connection)
                    self._status("connected", "subscribed")
                    async for batch in self._receive(connection):
                        yield batch
            except InvalidStatus as exc:
                log.error("ticker_refused", status=exc.response.status_code,
                          hint="403 means the api_key or access_token is wrong or expired: run `trader login`")
            except (OSError, WebSocketException, TimeoutError) as exc:
                # The connection URL carries the access token: never log an exception's text unredacted.
                log.warning("ticker_disconnected", error=_redacted(repr(exc)))
            finally:
                self._connection = None
            if self._closed:
                return
            attempt += 1
            self.reconnects += 1
            delay = min(self._initial_backoff_s * 2 ** (attempt - 1), self._max_backoff_s)
            delay *= 0.8 + 0.4 * self._rng.random()  # jitter: many clients must not reconnect in lockstep
            self._status("reconnecting", f"attempt {attempt} in {delay:.2f}s")
            await asyncio.sleep(delay)

    # -- internals ----------------------------------------------------------------------------------------
    async def _subscribe(self, connection: ClientConnection) -> None:
        await connection.send(orjson.dumps({"a": "subscribe", "v": self._tokens}).decode())
        await connection.send(orjson.dumps({"a": "mode", "v": [self._mode, self._tokens]}).decode())
        self.subscriptions_sent += 1

    async def _receive(self, connection: ClientConnection) -> AsyncIterator[list[Tick]]:
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that races a
                # completed recv(), and at thousands of frames a second that race is won often — the feed would
                # then never stop on shutdown.
                async with asyncio.timeout(self._silence_timeout_s):
                    message = await connection.recv()
            except TimeoutError:
                if self._market_open():
                    self.silences += 1
                    self._status("silent", f"nothing received for {self._silence_timeout_s:g}s while the market "
                                           "is open; reconnecting")
                    await connection.close()
                    return
                continue  # outside market hours silence is expected
            if isinstance(message, str):
                self._on_text(message)
                continue
            self.frames += 1
            decoded = decode_frame(message, received_ns=self._clock.now_ns(), first_tick_id=self._next_tick_id)
            if self._follow_exchange_time(decoded.ticks):
                # The exchange's clock ran ahead of ours (a simulator's session): stamp this frame in its time.
                decoded = decode_frame(message, received_ns=self._clock.now_ns(), first_tick_id=self._next_tick_id)
            if decoded.heartbeat:
                self.heartbeats += 1
                continue
            if decoded.malformed:
                self.malformed += decoded.malformed
                log.warning("ticker_malformed_frame", malformed_packets=decoded.malformed, size=len(message),
                            malformed_total=self.malformed)
            if decoded.ticks:
                self._next_tick_id += len(decoded.ticks)
                yield decoded.ticks

    def _follow_exchange_time(self, ticks: list[Tick]) -> bool:
        observe = getattr(self._clock, "observe", None)
        if observe is None or not ticks:
            return False
        return bool(observe(max(t.exchange_ts_ns for t in ticks)))

    def _on_text(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            log.warning("ticker_text_not_json", size=len(text))
            return
        if not isinstance(message, dict):
            return
        kind, data = message.get("type"), message.get("data")
        if kind == "order" and isinstance(data, dict) and data:
            if self._on_order is not None:
                try:
                    self._on_order(data)
                except Exception:  # an order message must never take the market-data feed down with it
                    log.exception("ticker_order_handler_failed")
        elif kind == "error":
            log.error("ticker_error_message", message=str(data))
        elif kind == "message":
            log.info("ticker_broker_message", message=str(data))
        # Unknown types (instruments_meta, app_code, ...) are ignored, as Kite's own clients do.

    def _market_open(self) -> bool:
        return self._calendar is None or self._calendar.is_open(self._clock.now_ns())

    def _status(self, status: Literal["connected", "reconnecting", "silent"], detail: str) -> None:
        log_fn = log.warning if status != "connected" else log.info
        log_fn("feed_status", status=status, detail=detail, reconnects=self.reconnects)
        self._publish(FeedStatus(ts_ns=self._clock.now_ns(), status=status, detail=detail))


def _redacted(text: str) -> str:
    return re.sub(r"(access_token=|api_key=)[^&\s'\"]*", r"\1***", text)
