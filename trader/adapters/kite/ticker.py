"""Kite WebSocket ticker client on ``websockets``: implements the ``MarketData`` port.

Connects with api_key/access_token, subscribes its tokens in one mode, decodes every binary frame (1-byte frames are
heartbeats), hands text ``order`` messages to a callback and logs ``error``/``message`` ones. It reconnects with
exponential backoff and jitter and resubscribes with the same modes. If nothing at all — not even a heartbeat —
arrives for ``silence_timeout_s`` while the market is open, it reports the feed as silent (a ``FeedStatus`` event)
and reconnects: a silent websocket must never look like a quiet market. Malformed frames are counted and logged,
never fatal.

Two venue problems are told apart from a blip. A handshake refused with HTTP 403 means the access token is dead: with
``on_token_rejected`` set, the client reports the token once and waits for ``set_access_token`` instead of
reconnecting with a token Kite has refused. A connection that stays down (refused, timing out, silent) for
``unreachable_after_s`` is reported as a ``VenueStatus(ok=False, problem="broker_unreachable")`` and a
``broker_unreachable`` error line; reconnecting goes on with capped backoff, and the first connection that works
reports ``ok=True`` and ``broker_reachable_again``.
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
from trader.events import FeedStatus, Tick, VenueStatus
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
                 initial_backoff_s: float = 1.0, max_backoff_s: float = 60.0, seed: int = 0,
                 on_token_rejected: Callable[[str, str], None] | None = None,
                 unreachable_after_s: float | None = None) -> None:
        self._root = root
        self._api_key = api_key
        self._token = access_token
        self._token_changed = asyncio.Event()
        self._on_token_rejected = on_token_rejected
        self._unreachable_after_s = unreachable_after_s
        self._down_since: float | None = None  # event-loop time the feed went down; None while connected
        self._down_attempts = 0
        self._last_error = ""
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
        self.token_waits = 0
        self.waiting_for_token = False
        self.unreachable = False  # reported broker_unreachable, not yet reachable again

    # -- MarketData port ----------------------------------------------------------------------------------
    def attach(self, publish: Callable[[object], None]) -> None:
        """Where ``FeedStatus`` and ``VenueStatus`` events go (the bus)."""
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
        self._token_changed.set()  # a client waiting for a new token stops waiting
        if self._connection is not None:
            await self._connection.close()

    @property
    def _url(self) -> str:
        return f"{self._root}?api_key={self._api_key}&access_token={self._token}"

    def set_access_token(self, access_token: str) -> None:
        """Use a new access token from the next connection on; a client waiting for one connects at once."""
        if access_token and access_token != self._token:
            self._token = access_token
            self._token_changed.set()

    async def stream(self) -> AsyncIterator[list[Tick]]:
        attempt = 0
        while not self._closed:
            token = self._token
            refused = False
            try:
                async with connect(self._url, additional_headers={"X-Kite-Version": "3"},
                                   user_agent_header="trader-kite-ticker", open_timeout=10,
                                   ping_interval=None, max_size=2**22,
                                   close_timeout=2) as connection:  # a dead server cannot hold up a shutdown
                    self._connection = connection
                    attempt = 0
                    await self._subscribe(connection)
                    self._status("connected", "subscribed")
                    self._reachable()
                    async for batch in self._receive(connection):
                        yield batch
            except InvalidStatus as exc:
                status = exc.response.status_code
                refused = status == 403 and self._on_token_rejected is not None
                self._last_error = f"WebSocket handshake refused with HTTP {status}"
                if not refused:
                    log.error("ticker_refused", status=status,
                              hint="403 means the api_key or access_token is wrong or expired: run `trader login`")
            except (OSError, WebSocketException, TimeoutError) as exc:
                # The connection URL carries the access token: never log an exception's text unredacted.
                self._last_error = _redacted(repr(exc))
                log.warning("ticker_disconnected", error=self._last_error)
            finally:
                self._connection = None
            if self._closed:
                return
            if refused:
                await self._wait_for_new_token(token)
                attempt = 0
                continue
            self._went_down()
            attempt += 1
            self.reconnects += 1
            delay = min(self._initial_backoff_s * 2 ** (attempt - 1), self._max_backoff_s)
            delay *= 0.8 + 0.4 * self._rng.random()  # jitter: many clients must not reconnect in lockstep
            self._status("reconnecting", f"attempt {attempt} in {delay:.2f}s")
            await self._pause(delay)

    # -- venue problems -----------------------------------------------------------------------------------
    async def _wait_for_new_token(self, refused: str) -> None:
        """Kite refused the token: report it, and connect again only with another token (no reconnect storm)."""
        self._reachable()  # a refusal is an answer: the broker is there
        self.token_waits += 1
        self._status("reconnecting", "access token refused (HTTP 403): waiting for a new token")
        assert self._on_token_rejected is not None
        self._on_token_rejected(refused, "WebSocket handshake refused with HTTP 403")
        self.waiting_for_token = True
        try:
            while not self._closed and self._token == refused:
                self._token_changed.clear()
                await self._token_changed.wait()
        finally:
            self.waiting_for_token = False
        if not self._closed:
            log.info("ticker_token_replaced", action="connecting with the new access token")

    def _went_down(self) -> None:
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
            self._down_attempts = 0
        self._down_attempts += 1

    def _reachable(self) -> None:
        if self.unreachable and self._down_since is not None:
            down_for = asyncio.get_running_loop().time() - self._down_since
            log.warning("broker_reachable_again", down_for_s=round(down_for, 1), reconnect_attempts=self._down_attempts,
                        effect="entries are allowed again; open orders are re-read from the broker")
            self._publish(VenueStatus(ts_ns=self._clock.now_ns(), ok=True, problem="broker_unreachable",
                                      detail=f"the broker answered again after {down_for:.0f}s"))
        self.unreachable = False
        self._down_since = None

    def _unreachable_due(self) -> float | None:
        if self.unreachable or self._unreachable_after_s is None or self._down_since is None:
            return None
        return self._down_since + self._unreachable_after_s

    async def _pause(self, delay: float) -> None:
        """Back off ``delay`` seconds; a feed down for longer than the bound is reported on time, not afterwards."""
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while not self._closed:
            now = loop.time()
            due = self._unreachable_due()
            if due is not None and due <= now:
                self._report_unreachable(now)
                due = None
            until = end if due is None else min(end, due)
            if until <= now:
                return
            await asyncio.sleep(until - now)

    def _report_unreachable(self, now: float) -> None:
        assert self._down_since is not None
        self.unreachable = True
        down_for = now - self._down_since
        detail = (f"no connection to the broker for {down_for:.0f}s ({self._down_attempts} WebSocket connection "
                  f"attempts to {self._root}, last error: {self._last_error or 'none'}); the daemon keeps reconnecting "
                  "and allows entries again by itself when the broker answers")
        log.error("broker_unreachable", down_for_s=round(down_for, 1), bound_s=self._unreachable_after_s,
                  reconnect_attempts=self._down_attempts, ws_root=self._root, last_error=self._last_error,
                  max_backoff_s=self._max_backoff_s,
                  effect="new entries are refused; exits are managed again as soon as the broker answers",
                  hint="check this machine's network connection and Kite's status")
        self._publish(VenueStatus(ts_ns=self._clock.now_ns(), ok=False, problem="broker_unreachable", detail=detail))

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
