"""Kite WebSocket ticker client on ``websockets``: implements the ``MarketData`` port.

Connects with api_key/access_token, subscribes its tokens in one mode, decodes every binary frame (1-byte frames are
heartbeats), hands text ``order`` messages to a callback and logs ``error``/``message`` ones. Malformed frames are
counted and logged, never fatal. Reconnecting with backoff, silence detection, the refused-token wait (a handshake
refused with HTTP 403 means the access token is dead), the unreachable-venue report and following the exchange's clock
are the venue-neutral ``trader.adapters.feed_socket.FeedSocket``'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect

from trader.adapters.feed_socket import FeedSocket
from trader.adapters.kite.decoder import decode_frame
from trader.clock import Clock
from trader.events import Tick
from trader.logging import get_logger
from trader.market.calendar import MarketCalendar

log = get_logger("trader.kite.ticker")

Mode = Literal["ltp", "quote", "full"]
MAX_TOKENS_PER_CONNECTION = 3000  # Kite's limit per WebSocket connection


class KiteTicker(FeedSocket):
    venue = "Kite"
    max_tokens = MAX_TOKENS_PER_CONNECTION

    def __init__(self, api_key: str, access_token: str, tokens: Iterable[int], *, clock: Clock,
                 root: str = "wss://ws.kite.trade", mode: Mode = "full", calendar: MarketCalendar | None = None,
                 on_order: Callable[[dict[str, Any]], None] | None = None, silence_timeout_s: float = 5.0,
                 initial_backoff_s: float = 1.0, max_backoff_s: float = 60.0, seed: int = 0,
                 on_token_rejected: Callable[[str, str], None] | None = None,
                 unreachable_after_s: float | None = None) -> None:
        super().__init__(access_token, tokens, clock=clock, root=root, log=log, calendar=calendar,
                         silence_timeout_s=silence_timeout_s, initial_backoff_s=initial_backoff_s,
                         max_backoff_s=max_backoff_s, seed=seed, on_token_rejected=on_token_rejected,
                         unreachable_after_s=unreachable_after_s)
        self._api_key = api_key
        self._mode: Mode = mode
        self._on_order = on_order

    @property
    def _url(self) -> str:
        return f"{self._root}?api_key={self._api_key}&access_token={self._token}"

    def _connect(self) -> Any:
        return connect(self._url, additional_headers={"X-Kite-Version": "3"}, user_agent_header="trader-kite-ticker",
                       open_timeout=10, ping_interval=None, max_size=2**22,
                       close_timeout=2)  # a dead server cannot hold up a shutdown

    def _redact(self, text: str) -> str:
        return _redacted(text)

    async def _session_start(self, connection: ClientConnection) -> None:
        await connection.send(orjson.dumps({"a": "subscribe", "v": self._tokens}).decode())
        await connection.send(orjson.dumps({"a": "mode", "v": [self._mode, self._tokens]}).decode())

    async def _on_message(self, connection: ClientConnection, message: str | bytes) -> list[Tick]:
        if isinstance(message, str):
            self._on_text(message)
            return []
        self.frames += 1
        decoded = decode_frame(message, received_ns=self._clock.now_ns(), first_tick_id=self._next_tick_id)
        if self._follow_exchange_time(decoded.ticks):
            # The exchange's clock ran ahead of ours (a simulator's session): stamp this frame in its time.
            decoded = decode_frame(message, received_ns=self._clock.now_ns(), first_tick_id=self._next_tick_id)
        if decoded.heartbeat:
            self.heartbeats += 1
            return []
        if decoded.malformed:
            self.malformed += decoded.malformed
            log.warning("ticker_malformed_frame", malformed_packets=decoded.malformed, size=len(message),
                        malformed_total=self.malformed)
        return decoded.ticks

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


def _redacted(text: str) -> str:
    return re.sub(r"(access_token=|api_key=)[^&\s'\"]*", r"\1***", text)
