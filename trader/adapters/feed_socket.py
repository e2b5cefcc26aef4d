"""What every venue's market-data WebSocket client does, whatever its wire (Kite's ticker, Fyers' HSM socket).

A subclass says how to connect (``_connect``), what to send once connected (``_session_start``: authenticate,
subscribe) and how to turn a received message into ticks (``_on_message``); this base does the rest:

* reconnecting with exponential backoff and seeded jitter, resubscribing each time;
* silence: if nothing at all — not even a heartbeat — arrives for ``silence_timeout_s`` while the market is open, it
  reports the feed as silent (a ``FeedStatus`` event) and reconnects: a silent socket must never look like a quiet
  market;
* a refused access token (an HTTP 403 handshake, or ``TokenRefused`` raised in-band by the subclass): with
  ``on_token_rejected`` set, the client reports the token once and waits for ``set_access_token`` instead of
  reconnecting with a token the venue has refused;
* an unreachable venue: a connection that stays down for ``unreachable_after_s`` is reported as a
  ``VenueStatus(ok=False, problem="broker_unreachable")`` and a ``broker_unreachable`` error line; reconnecting goes on,
  and the first connection that works reports ``ok=True`` and ``broker_reachable_again``;
* following the exchange's clock (``Clock.observe``) from the ticks' exchange timestamps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus, WebSocketException

from trader.clock import Clock
from trader.events import FeedStatus, Tick, VenueStatus
from trader.market.calendar import MarketCalendar
from trader.market.instrument_master import InstrumentMaster


class TokenRefused(Exception):
    """Raised by a subclass when the venue refused the access token inside the connection (not at the handshake)."""


class FeedProtocolError(Exception):
    """The venue's side of the protocol went wrong on this connection (a garbled or unexpected reply): reconnect."""


class FeedSocket:
    venue = "the broker"  # for messages: "Kite", "Fyers"
    max_tokens = 3000

    def __init__(self, access_token: str, tokens: Iterable[int], *, clock: Clock, root: str, log: Any,
                 calendar: MarketCalendar | None = None, silence_timeout_s: float = 5.0,
                 initial_backoff_s: float = 1.0, max_backoff_s: float = 60.0, seed: int = 0,
                 on_token_rejected: Callable[[str, str], None] | None = None,
                 unreachable_after_s: float | None = None) -> None:
        self._root = root
        self._log = log
        self._token = access_token
        self._token_changed = asyncio.Event()
        self._on_token_rejected = on_token_rejected
        self._unreachable_after_s = unreachable_after_s
        self._down_since: float | None = None  # event-loop time the feed went down; None while connected
        self._down_attempts = 0
        self._last_error = ""
        self._tokens = self._checked(set(tokens))
        if not self._tokens:
            raise ValueError("the ticker needs at least one instrument token to subscribe")
        self._clock = clock
        self._calendar = calendar
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

    def _checked(self, tokens: set[int]) -> list[int]:
        if len(tokens) > self.max_tokens:
            raise ValueError(f"{len(tokens)} tokens exceed {self.venue}'s {self.max_tokens} per connection")
        return sorted(tokens)

    # -- what a venue's client provides ---------------------------------------------------------------------
    def _connect(self) -> Any:
        """``websockets.connect(...)`` for the venue (an async context manager giving a ``ClientConnection``)."""
        raise NotImplementedError

    async def _session_start(self, connection: ClientConnection) -> None:
        """Authenticate and subscribe ``self._tokens``; raise ``TokenRefused`` if the venue refuses the token."""
        raise NotImplementedError

    async def _on_message(self, connection: ClientConnection, message: str | bytes) -> list[Tick]:
        """The ticks in one message (count frames, heartbeats and malformed ones on ``self``)."""
        raise NotImplementedError

    def _session_end(self) -> None:
        """The connection is gone (stop anything ``_session_start`` started)."""

    def _redact(self, text: str) -> str:
        """An exception's text with any credential the venue's URL or messages carry blanked out."""
        return text

    # -- MarketData port ----------------------------------------------------------------------------------
    def attach(self, publish: Callable[[object], None]) -> None:
        """Where ``FeedStatus`` and ``VenueStatus`` events go (the bus)."""
        self._publish = publish

    def add_tokens(self, tokens: Iterable[int]) -> None:
        """Before ``start``: subscribe these too (contracts held from before a restart, outside the chain picked)."""
        self._tokens = self._checked(set(self._tokens) | set(tokens))

    async def start(self, instruments: InstrumentMaster) -> None:
        unknown = [t for t in self._tokens if instruments.by_token(t) is None]
        if unknown:
            self._log.warning("ticker_tokens_not_in_master", tokens=unknown[:20], count=len(unknown))

    async def close(self) -> None:
        self._closed = True
        self._token_changed.set()  # a client waiting for a new token stops waiting
        if self._connection is not None:
            await self._connection.close()

    def set_access_token(self, access_token: str) -> None:
        """Use a new access token from the next connection on; a client waiting for one connects at once."""
        if access_token and access_token != self._token:
            self._token = access_token
            self._token_changed.set()

    async def stream(self) -> AsyncIterator[list[Tick]]:
        attempt = 0
        while not self._closed:
            token = self._token
            refusal = ""
            try:
                async with self._connect() as connection:
                    self._connection = connection
                    attempt = 0
                    await self._session_start(connection)
                    self.subscriptions_sent += 1
                    self._status("connected", "subscribed")
                    self._reachable()
                    async for batch in self._receive(connection):
                        yield batch
            except InvalidStatus as exc:
                status = exc.response.status_code
                self._last_error = f"WebSocket handshake refused with HTTP {status}"
                if status == 403 and self._on_token_rejected is not None:
                    refusal = self._last_error
                else:
                    self._log.error("ticker_refused", status=status, hint="403 means the access token is wrong or "
                                    f"expired: run `trader login` ({self.venue})")
            except TokenRefused as exc:
                self._last_error = str(exc)
                if self._on_token_rejected is not None:
                    refusal = self._last_error
                else:
                    self._log.error("ticker_refused", detail=self._last_error,
                                    hint=f"the access token is wrong or expired: run `trader login` ({self.venue})")
            except (OSError, WebSocketException, TimeoutError, FeedProtocolError) as exc:
                self._last_error = self._redact(repr(exc))  # a URL may carry the token: never log it unredacted
                self._log.warning("ticker_disconnected", error=self._last_error)
            finally:
                self._connection = None
                self._session_end()
            if self._closed:
                return
            if refusal:
                await self._wait_for_new_token(token, refusal)
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
    async def _wait_for_new_token(self, refused: str, reason: str) -> None:
        """The venue refused the token: report it, and connect again only with another token (no reconnect storm)."""
        self._reachable()  # a refusal is an answer: the broker is there
        self.token_waits += 1
        short = "HTTP 403" if "HTTP 403" in reason else reason
        self._status("reconnecting", f"access token refused ({short}): waiting for a new token")
        assert self._on_token_rejected is not None
        self._on_token_rejected(refused, reason)
        self.waiting_for_token = True
        try:
            while not self._closed and self._token == refused:
                self._token_changed.clear()
                await self._token_changed.wait()
        finally:
            self.waiting_for_token = False
        if not self._closed:
            self._log.info("ticker_token_replaced", action="connecting with the new access token")

    def _went_down(self) -> None:
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
            self._down_attempts = 0
        self._down_attempts += 1

    def _reachable(self) -> None:
        if self.unreachable and self._down_since is not None:
            down_for = asyncio.get_running_loop().time() - self._down_since
            self._log.warning("broker_reachable_again", down_for_s=round(down_for, 1),
                              reconnect_attempts=self._down_attempts,
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
        self._log.error("broker_unreachable", down_for_s=round(down_for, 1), bound_s=self._unreachable_after_s,
                        reconnect_attempts=self._down_attempts, ws_root=self._root, last_error=self._last_error,
                        max_backoff_s=self._max_backoff_s,
                        effect="new entries are refused; exits are managed again as soon as the broker answers",
                        hint=f"check this machine's network connection and {self.venue}'s status")
        self._publish(VenueStatus(ts_ns=self._clock.now_ns(), ok=False, problem="broker_unreachable", detail=detail))

    # -- receiving ----------------------------------------------------------------------------------------
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
            ticks = await self._on_message(connection, message)
            if ticks:
                self._next_tick_id += len(ticks)
                yield ticks

    def _follow_exchange_time(self, ticks: list[Tick]) -> bool:
        observe = getattr(self._clock, "observe", None)
        if observe is None or not ticks:
            return False
        return bool(observe(max(t.exchange_ts_ns for t in ticks)))

    def _market_open(self) -> bool:
        return self._calendar is None or self._calendar.is_open(self._clock.now_ns())

    def _status(self, status: Literal["connected", "reconnecting", "silent"], detail: str) -> None:
        log_fn = self._log.warning if status != "connected" else self._log.info
        log_fn("feed_status", status=status, detail=detail, reconnects=self.reconnects)
        self._publish(FeedStatus(ts_ns=self._clock.now_ns(), status=status, detail=detail))
