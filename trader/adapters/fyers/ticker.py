"""Fyers' market-data socket client (the HSM binary protocol, ``hsm.py``) on ``websockets``: a ``VenueMarket``.

Our ``instrument_token`` for a Fyers instrument is ``int(fyToken)``. Each token becomes an HSM topic (``hsm_topics``):
an option's (``sf|nse_fo|<exchange token>``) follows from its fyToken alone, an index's needs its Fyers symbol
(``NSE:NIFTY50-INDEX``, from ``symbols`` or, for contracts, the instrument master) and the index map.

Per connection: authenticate with the access token's ``hsm_key`` (a refusal is the venue refusing the token: the
``FeedSocket`` base waits for a new one), full mode on channel 11, subscribe in chunks of 1500 (as the SDK does), ping
every ``ping_interval_s`` (``00 01 0b``, as the SDK), acknowledge every n-th datafeed frame when the auth answer asks
for it. Each changed topic becomes a ``Tick`` in integer paise: last price, volume, OI, best bid/ask and sizes (from
level 1 of the depth when ``depth=True``, else from the scrip's own best bid/ask); exchange time from
``exch_feed_time``. A garbled frame is counted (``malformed``), a tick without a positive last price too (``invalid``),
neither is fatal. Reconnecting, silence, the unreachable report and the exchange clock are ``FeedSocket``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from trader.adapters.feed_socket import FeedProtocolError, FeedSocket, TokenRefused
from trader.adapters.fyers import hsm
from trader.adapters.fyers.hsm_topics import (
    INDEX_MAP,
    TopicBook,
    TopicState,
    fy_token_parts,
    hsm_key,
    hsm_topic,
    is_index,
)
from trader.clock import Clock
from trader.events import Tick
from trader.logging import get_logger
from trader.market.calendar import MarketCalendar
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract

log = get_logger("trader.fyers.ticker")

DATA_WS_URL: Final = "wss://socket.fyers.in/hsm/v1-5/prod"
CHANNEL: Final = 11  # the SDK's default channel
CHUNK: Final = 1500  # topics per subscribe request, as the SDK sends them
NS: Final = 1_000_000_000
_PREFIX: Final = {"NFO": "NSE:", "BFO": "BSE:"}


def fyers_symbol(contract: OptionContract) -> str:
    """Our contract's Fyers ticker: the exchange prefix (NFO → ``NSE:``, BFO → ``BSE:``) and its tradingsymbol."""
    return _PREFIX[contract.exchange] + contract.tradingsymbol


class FyersDataSocket(FeedSocket):
    venue = "Fyers"
    max_tokens = 5000  # the SDK's symbol limit per connection

    def __init__(self, access_token: str, tokens: Iterable[int], *, clock: Clock,
                 symbols: Mapping[int, str] | None = None, url: str = DATA_WS_URL,
                 calendar: MarketCalendar | None = None, index_map: Mapping[str, str] | None = None,
                 depth: bool = False, silence_timeout_s: float = 15.0, ping_interval_s: float = 10.0,
                 initial_backoff_s: float = 1.0, max_backoff_s: float = 60.0, seed: int = 0,
                 on_token_rejected: Callable[[str, str], None] | None = None,
                 unreachable_after_s: float | None = None, source: str = "trader") -> None:
        super().__init__(access_token, tokens, clock=clock, root=url, log=log, calendar=calendar,
                         silence_timeout_s=silence_timeout_s, initial_backoff_s=initial_backoff_s,
                         max_backoff_s=max_backoff_s, seed=seed, on_token_rejected=on_token_rejected,
                         unreachable_after_s=unreachable_after_s)
        self._symbols = dict(symbols or {})
        self._index_map = dict(INDEX_MAP if index_map is None else index_map)
        self._depth = depth
        self._ping_interval_s = ping_interval_s
        self._source = source
        self._book = TopicBook()
        self._by_topic: dict[str, int] = {}
        self._ack_every = 0
        self._since_ack = 0
        self._pinger: asyncio.Task[None] | None = None
        self.invalid = 0
        self.unsubscribable: list[int] = []
        self.acks_sent = 0
        self.refusals: list[str] = []  # custom messages and failed responses, as received

    async def start(self, instruments: InstrumentMaster) -> None:
        for token in self._tokens:
            found = instruments.by_token(token)
            if token not in self._symbols and isinstance(found, OptionContract):
                self._symbols[token] = fyers_symbol(found)
        await super().start(instruments)

    def topics(self) -> dict[str, int]:
        """HSM topic → our instrument token, for every token that can be subscribed."""
        out: dict[str, int] = {}
        unknown: list[int] = []
        for token in self._tokens:
            symbol = self._symbols.get(token)
            try:
                if symbol is None:
                    segment, _ = fy_token_parts(str(token))
                    if not segment.endswith("_fo"):
                        raise hsm.HsmError(f"{token}: an index or cash instrument needs its Fyers symbol")
                    symbol = f"token:{token}"
                out[hsm_topic(symbol, str(token), index_map=self._index_map)] = token
                if self._depth and not is_index(symbol):
                    out[hsm_topic(symbol, str(token), depth=True)] = token
            except hsm.HsmError as exc:
                unknown.append(token)
                log.error("fyers_token_not_subscribable", token=token, symbol=symbol, error=str(exc))
        self.unsubscribable = unknown
        return out

    # -- FeedSocket hooks -----------------------------------------------------------------------------------
    def _connect(self) -> Any:
        return connect(self._root, user_agent_header="trader-fyers-data", open_timeout=10, ping_interval=None,
                       max_size=2**22, close_timeout=2)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    async def _session_start(self, connection: ClientConnection) -> None:
        try:
            key, _exp = hsm_key(self._token)
        except hsm.HsmError as exc:
            raise TokenRefused(f"the Fyers access token is unusable on the data socket: {exc}") from None
        await connection.send(hsm.encode_request(hsm.AuthRequest(key, self._source)))
        async with asyncio.timeout(10):
            reply = await connection.recv()
        answer = self._decode(reply)
        if (isinstance(answer, hsm.CustomMessage) and answer.ref_type == hsm.REQ_AUTH) or (
                isinstance(answer, hsm.AuthResponse) and not answer.ok):
            raise TokenRefused(f"the Fyers data socket refused the access token ({answer})")
        if not isinstance(answer, hsm.AuthResponse):
            raise FeedProtocolError(f"expected the auth response, got {answer!r}")
        self._ack_every, self._since_ack = answer.ack_every, 0
        self._book = TopicBook()
        self._by_topic = self.topics()
        await connection.send(hsm.encode_request(hsm.ModeRequest(frozenset({CHANNEL}), lite=False)))
        names = list(self._by_topic)
        for i in range(0, len(names), CHUNK):
            await connection.send(hsm.encode_request(hsm.SubscribeRequest(tuple(names[i:i + CHUNK]), CHANNEL)))
        self._pinger = asyncio.create_task(self._ping(connection))

    def _session_end(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None

    async def _ping(self, connection: ClientConnection) -> None:
        with contextlib.suppress(Exception):  # the connection's loss is _receive's to notice
            while True:
                await asyncio.sleep(self._ping_interval_s)
                await connection.send(hsm.encode_request(hsm.PingRequest()))

    def _decode(self, message: str | bytes) -> hsm.Response:
        if isinstance(message, str):
            raise FeedProtocolError(f"a text message on the HSM socket: {message[:80]!r}")
        try:
            return hsm.decode_response(message)
        except hsm.HsmError as exc:
            raise FeedProtocolError(str(exc)) from None

    async def _on_message(self, connection: ClientConnection, message: str | bytes) -> list[Tick]:
        self.frames += 1
        try:
            answer = self._decode(message)
        except FeedProtocolError as exc:
            # A frame we cannot read may have carried updates: every later tick of those topics would repeat the
            # last price we hold as if it were current. Reconnect, and start again from fresh snapshots.
            self.malformed += 1
            log.warning("ticker_malformed_frame", error=str(exc), size=len(message), malformed_total=self.malformed,
                        effect="reconnecting for fresh snapshots")
            raise FeedProtocolError(f"malformed frame: {exc}") from None
        if isinstance(answer, hsm.Ping):
            self.heartbeats += 1
            return []
        if isinstance(answer, hsm.CustomMessage) or (isinstance(answer, hsm.SimpleResponse | hsm.AuthResponse)
                                                      and not answer.ok):
            self.refusals.append(repr(answer))
            log.error("fyers_data_socket_refused", answer=repr(answer))
            return []
        if not isinstance(answer, hsm.DataFeed):
            return []  # a success answer to mode/subscribe
        if self._ack_every > 0:
            self._since_ack += 1
            if self._since_ack >= self._ack_every:
                self._since_ack = 0
                await connection.send(hsm.encode_request(hsm.AckRequest(answer.message_number)))
                self.acks_sent += 1
        ticks = self._ticks(answer)
        if self._follow_exchange_time(ticks):  # the exchange's clock ran ahead of ours: stamp in its time
            now = self._clock.now_ns()
            ticks = [dataclasses.replace(t, ts_ns=now) for t in ticks]
        return ticks

    def _ticks(self, feed: hsm.DataFeed) -> list[Tick]:
        now = self._clock.now_ns()
        ticks: list[Tick] = []
        for record in feed.records:
            try:
                state, changed = self._book.apply(record)
                token = self._by_topic.get(state.topic)
                if token is None or not changed:
                    continue
                tick = self._tick(token, state, now, self._next_tick_id + len(ticks))
            except hsm.HsmError as exc:  # as a malformed frame: the topic's state can no longer be trusted
                self.malformed += 1
                log.warning("ticker_malformed_record", error=str(exc), malformed_total=self.malformed,
                            effect="reconnecting for fresh snapshots")
                raise FeedProtocolError(f"malformed record: {exc}") from None
            if tick is None:
                self.invalid += 1
                continue
            ticks.append(tick)
        return ticks

    def _tick(self, token: int, state: TopicState, now: int, tick_id: int) -> Tick | None:
        scrip = state if state.kind != "dp" else self._scrip_of(state.topic)
        if scrip is None:
            return None
        last = scrip.price("ltp")
        if last <= 0:
            return None
        values = scrip.values
        bid, bid_qty = scrip.price("bid_price"), values.get("bid_size", 0)
        ask, ask_qty = scrip.price("ask_price"), values.get("ask_size", 0)
        depth = self._depth_of(scrip.topic) if scrip.kind == "sf" else None
        if depth is not None:
            bid, bid_qty = depth.price("bid_price1"), depth.values.get("bid_size1", 0)
            ask, ask_qty = depth.price("ask_price1"), depth.values.get("ask_size1", 0)
        feed_time = values.get("exch_feed_time") or values.get("last_traded_time") or 0
        volume = values.get("vol_traded_today", 0)
        return Tick(ts_ns=now, instrument_token=token, last_price=last, volume=max(volume, 0),
                    oi=max(values.get("OI", 0), 0), bid=max(bid, 0), bid_qty=max(bid_qty, 0), ask=max(ask, 0),
                    ask_qty=max(ask_qty, 0), exchange_ts_ns=max(feed_time, 0) * NS, tick_id=tick_id)

    def _scrip_of(self, depth_topic: str) -> TopicState | None:
        return self._state("sf" + depth_topic[2:])

    def _depth_of(self, scrip_topic: str) -> TopicState | None:
        return self._state("dp" + scrip_topic[2:])

    def _state(self, topic: str) -> TopicState | None:
        return self._book.by_name.get(topic)


class SymbolTokenError(RuntimeError):
    """The data API's ``/symbol-token`` answer was refused or malformed."""


async def fetch_fy_tokens(session: aiohttp.ClientSession, data_root: str, authorization: str,
                          symbols: list[str]) -> tuple[dict[str, str], list[str]]:
    """``POST {data_root}/symbol-token {"symbols": [...]}`` → (symbol → fyToken, invalid symbols), as the SDK asks
    (its ``SymbolConversion`` sends the bare access token as ``Authorization``; the REST API's usual form is
    ``app_id:access_token``: the caller chooses)."""
    async with session.post(f"{data_root.rstrip('/')}/symbol-token", json={"symbols": symbols},
                            headers={"Authorization": authorization}) as response:
        try:
            body = await response.json(content_type=None)
        except ValueError:
            raise SymbolTokenError(f"/symbol-token answered HTTP {response.status} with no JSON") from None
    if not isinstance(body, dict) or body.get("s") != "ok":
        message = body.get("message") if isinstance(body, dict) else body
        raise SymbolTokenError(f"/symbol-token refused (HTTP {response.status}): {message!r}")
    valid, invalid = body.get("validSymbol"), body.get("invalidSymbol", [])
    if not isinstance(valid, dict) or not isinstance(invalid, list) or not all(
            isinstance(k, str) and isinstance(v, str) and v.isdigit() for k, v in valid.items()):
        raise SymbolTokenError(f"/symbol-token answer is malformed: {str(body)[:200]}")
    return dict(valid), [str(s) for s in invalid]


INDEX_MAP_URL: Final = "https://public.fyers.in/sym_details/index_hsm_mapping.json"


async def fetch_index_map(session: aiohttp.ClientSession, url: str = INDEX_MAP_URL) -> dict[str, str]:
    """Fyers' published index map (``{"NSE:NIFTY50-INDEX": "Nifty 50", ...}``), as the SDK loads it; every entry
    checked (a name with ``|`` would break the topic)."""
    async with session.get(url) as response:
        try:
            body = await response.json(content_type=None)
        except ValueError:
            raise SymbolTokenError(f"the index map at {url} answered HTTP {response.status} with no JSON") from None
    if response.status != 200 or not isinstance(body, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v and "|" not in v for k, v in body.items()):
        raise SymbolTokenError(f"the index map at {url} (HTTP {response.status}) is malformed: {str(body)[:200]}")
    return dict(body)
