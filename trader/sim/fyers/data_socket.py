"""The simulator's Fyers data socket: the HSM binary protocol (``trader/adapters/fyers/hsm.py``) from the server side.

Mirrors the Kite face (``trader/sim/ticker.py``: ``start``/``stop``/``clients``/``publish_ticks``/
``drop_connections``) so ``ExchangeSimulator`` can run both faces on its one synthetic market. Per connection:

* the first request must be auth; ``authorize(hsm_key)`` decides (a refusal is answered ``AuthResponse(ok=False)`` and
  the connection is closed — what the real server does after a refusal is unconfirmed); the answer carries
  ``ack_every`` (the client acknowledges every n-th datafeed frame; acknowledgements are counted, never required);
* subscribe/unsubscribe per channel (topic ids are given per connection in subscription order), channel pause/resume,
  lite/full mode, each answered ``"K"``; more than ``MAX_TOPICS`` topics is refused with custom message 51001;
  requests before auth and garbled ones get a custom message (code -1) naming the problem;
* client pings (``00 01 0b``) are answered with the same three bytes (the SDK ignores them; unconfirmed for the real
  server); ``heartbeat_s > 0`` also sends one when a connection has been idle that long.

``publish_ticks`` sends each subscribed client, per topic, a snapshot (83) the first time and updates (85) after,
prices in paise on the wire (precision 2, multiplier 1); a lite-mode client gets lite records (76, ltp) after the
snapshot. Which topic a tick belongs to comes from ``listing``:
instrument token → (Fyers symbol, fyToken), e.g. ``("NSE:NIFTY50-INDEX", "101000000026000")``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from trader.adapters.fyers import hsm
from trader.adapters.fyers.hsm_topics import INDEX_MAP, hsm_topic, is_index
from trader.events import Tick
from trader.logging import get_logger
from trader.sim.encode import DayStats
from trader.sim.socket_clients import ClientSender, SocketClient

log = get_logger("trader.sim.fyers.data_socket")

MAX_TOPICS = 5000
LIMIT_CODE = 51001  # the SDK's SYMBOL_LIMIT_EXCEEDED_CODE
NS = 1_000_000_000
_I32_MAX = 2**31 - 1
Listing = Callable[[int], tuple[str, str] | None]


@dataclass(slots=True)
class _Client(SocketClient):
    authenticated: bool = False
    lite: bool = False
    channels: dict[int, set[str]] = field(default_factory=dict)
    paused: set[int] = field(default_factory=set)
    topic_ids: dict[str, int] = field(default_factory=dict)
    snapshotted: set[str] = field(default_factory=set)
    frame_number: int = 0
    acks: list[int] = field(default_factory=list)

    def live_topics(self) -> set[str]:
        return set().union(*(t for c, t in self.channels.items() if c not in self.paused))


class HsmServer(ClientSender):
    def __init__(self, authorize: Callable[[str], bool], listing: Listing, *,
                 index_map: Mapping[str, str] | None = None, ack_every: int = 0, heartbeat_s: float = 0.0) -> None:
        self._authorize = authorize
        self._listing = listing
        self._index_map = dict(INDEX_MAP if index_map is None else index_map)
        self._ack_every = ack_every
        self._heartbeat_s = heartbeat_s
        self._clients: dict[ServerConnection, _Client] = {}
        self._server: Server | None = None
        self.frames_sent = 0
        self.refused_auths = 0
        self.bad_requests = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = await serve(self._handle, host, port, ping_interval=None)
        bound = next(iter(self._server.sockets)).getsockname()
        return f"ws://{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def subscriptions(self) -> list[set[str]]:
        """Per connection, the topics it receives now (paused channels left out)."""
        return [c.live_topics() for c in self._clients.values()]

    def acks(self) -> list[list[int]]:
        return [list(c.acks) for c in self._clients.values()]

    # -- what the exchange sends ------------------------------------------------------------------------
    def topics_of(self, token: int) -> list[str]:
        listed = self._listing(token)
        if listed is None:
            return []
        symbol, fy_token = listed
        topics = [hsm_topic(symbol, fy_token, index_map=self._index_map)]
        if not is_index(symbol):
            topics.append(hsm_topic(symbol, fy_token, depth=True))
        return topics

    async def publish_ticks(self, ticks: Iterable[Tick], day_stats: Mapping[int, DayStats] | None = None) -> None:
        batch = list(ticks)
        stats = day_stats or {}
        by_topic = [(topic, t) for t in batch for topic in self.topics_of(t.instrument_token)]
        for client in list(self._clients.values()):
            if not client.authenticated:
                continue
            wanted = client.live_topics()
            records = [self._record(client, topic, t, stats.get(t.instrument_token))
                       for topic, t in by_topic if topic in wanted]
            if records:
                client.frame_number += 1
                await self._send(client, hsm.encode_response(hsm.DataFeed(client.frame_number, tuple(records))))

    async def drop_connections(self) -> None:
        """Fault knob: close every connection, as a network blip would."""
        for connection in list(self._clients):
            await connection.close(code=1011, reason="simulated drop")

    def _record(self, client: _Client, topic: str, tick: Tick,
                day: DayStats | None) -> hsm.Snapshot | hsm.Update | hsm.LiteRecord:
        topic_id = client.topic_ids[topic]
        values = tuple(_clamp(v) for v in _values(topic[:2], tick, day or DayStats()))
        if topic in client.snapshotted:
            if client.lite and not topic.startswith("dp"):
                return hsm.LiteRecord(topic_id, values[0])
            return hsm.Update(topic_id, values)
        client.snapshotted.add(topic)
        listed = self._listing(tick.instrument_token)
        symbol = listed[0] if listed else ""
        exchange, _, _ = symbol.partition(":")
        return hsm.Snapshot(topic_id, topic, values, 1, 2, exchange, topic.rsplit("|", 1)[-1], symbol)

    # -- connections ------------------------------------------------------------------------------------
    async def _handle(self, connection: ServerConnection) -> None:
        client = _Client(connection, last_sent=asyncio.get_running_loop().time())
        self._clients[connection] = client
        heartbeat = asyncio.create_task(self._heartbeats(client)) if self._heartbeat_s > 0 else None
        try:
            async for message in connection:
                if isinstance(message, str):
                    await self._refuse(client, "text messages are not HSM requests", 0)
                    continue
                await self._request(client, message)
        except ConnectionClosed:
            pass
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            self._clients.pop(connection, None)

    async def _request(self, client: _Client, frame: bytes) -> None:
        try:
            request = hsm.decode_request(frame)
        except hsm.HsmError as exc:
            await self._refuse(client, f"bad request: {exc}", frame[2] if len(frame) > 2 else 0)
            return
        if isinstance(request, hsm.PingRequest):
            await self._send(client, hsm.encode_response(hsm.Ping()))
        elif isinstance(request, hsm.AuthRequest):
            client.authenticated = self._authorize(request.hsm_token)
            await self._send(client, hsm.encode_response(hsm.AuthResponse(client.authenticated, self._ack_every)))
            if not client.authenticated:
                self.refused_auths += 1
                await client.connection.close(code=1008, reason="authentication failed")
        elif not client.authenticated:
            await self._refuse(client, "authenticate first", frame[2])
        elif isinstance(request, hsm.AckRequest):
            client.acks.append(request.message_number)
        elif isinstance(request, hsm.SubscribeRequest):
            await self._subscribe(client, request)
        elif isinstance(request, hsm.ChannelRequest):
            (client.paused.update if request.pause else client.paused.difference_update)(request.channels)
            kind = hsm.REQ_PAUSE if request.pause else hsm.REQ_RESUME
            await self._send(client, hsm.encode_response(hsm.SimpleResponse(kind, True)))
        elif isinstance(request, hsm.ModeRequest):
            client.lite = request.lite
            await self._send(client, hsm.encode_response(hsm.SimpleResponse(hsm.REQ_MODE, True)))

    async def _subscribe(self, client: _Client, request: hsm.SubscribeRequest) -> None:
        topics = client.channels.setdefault(request.channel, set())
        kind = hsm.REQ_UNSUBSCRIBE if request.unsubscribe else hsm.REQ_SUBSCRIBE
        if request.unsubscribe:
            topics.difference_update(request.topics)
        else:
            total = set().union(*client.channels.values(), request.topics)
            if len(total) > MAX_TOPICS:
                await self._send(client, hsm.encode_response(hsm.CustomMessage(
                    LIMIT_CODE, f"at most {MAX_TOPICS} symbols on one connection", kind)))
                return
            for topic in request.topics:
                client.topic_ids.setdefault(topic, len(client.topic_ids) + 1)
                topics.add(topic)
        await self._send(client, hsm.encode_response(hsm.SimpleResponse(kind, True)))

    async def _refuse(self, client: _Client, text: str, ref_type: int) -> None:
        self.bad_requests += 1
        log.warning("sim_fyers_bad_request", detail=text)
        await self._send(client, hsm.encode_response(hsm.CustomMessage(-1, text, ref_type & 0xFF)))

    async def _heartbeats(self, client: _Client) -> None:
        await self._beat(client, self._heartbeat_s, hsm.encode_response(hsm.Ping()))


def _clamp(value: int) -> int:
    return max(-_I32_MAX, min(value, _I32_MAX))


def _values(kind: str, t: Tick, day: DayStats) -> tuple[int, ...]:
    """A tick's fields in the order ``hsm.SCRIP_FIELDS`` / ``INDEX_FIELDS`` / ``DEPTH_FIELDS`` list them."""
    feed_time = (t.exchange_ts_ns or t.ts_ns) // NS
    if kind == "if":
        return t.last_price, day.close, feed_time, day.high, day.low, day.open
    if kind == "dp":
        empty = (0, 0, 0, 0)
        return (t.bid, *empty, t.ask, *empty, t.bid_qty, *empty, t.ask_qty, *empty,
                int(t.bid_qty > 0), *empty, int(t.ask_qty > 0), *empty)
    return (t.last_price, t.volume, day.last_trade_ts or feed_time, feed_time, t.bid_qty, t.ask_qty, t.bid, t.ask,
            day.last_quantity, day.total_buy_quantity, day.total_sell_quantity, day.average_price, t.oi, day.low,
            day.high, 0, 0, 0, 0, day.open, day.close)
