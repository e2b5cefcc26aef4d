"""The simulator's market-data routes: ``/quote``, ``/quote/ltp`` and the instrument dump (``/instruments``)."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from aiohttp import web

from trader.money import to_rupees
from trader.sim.wire import (
    LPP_ABSOLUTE_PAISE,
    LPP_PCT,
    LPP_PCT_THRESHOLD_PAISE,
    kite_time,
    success,
)

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator

_CSV_COLUMNS = ("instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry", "strike",
                "tick_size", "lot_size", "instrument_type", "segment", "exchange")


class MarketDataRoutes:
    def __init__(self, sim: ExchangeSimulator) -> None:
        self.sim = sim

    def _resolve(self, key: str) -> tuple[int, int] | None:
        """(token, lot size) of ``EXCHANGE:SYMBOL`` if it has a quote; None otherwise."""
        exchange, _, symbol = key.partition(":")
        index = self.sim.market.index
        if (exchange, symbol) == (index.exchange, index.tradingsymbol):
            token, lot = index.instrument_token, 0
        else:
            contract = self.sim.contract(exchange, symbol)
            if contract is None:
                return None
            token, lot = contract.instrument_token, contract.lot_size
        return (token, lot) if token in self.sim.quotes else None

    async def ltp(self, request: web.Request) -> web.StreamResponse:
        out = {}
        for key in request.query.getall("i", []):
            resolved = self._resolve(key)
            if resolved is not None:
                out[key] = {"instrument_token": resolved[0], "last_price": to_rupees(self.sim.last_price(resolved[0]))}
        return success(out)

    async def quote(self, request: web.Request) -> web.StreamResponse:
        out = {}
        for key in request.query.getall("i", []):
            resolved = self._resolve(key)
            if resolved is None:
                continue
            token, lot = resolved
            q = self.sim.quotes[token]
            t = q.tick
            band = t.last_price * LPP_PCT // 100 if t.last_price > LPP_PCT_THRESHOLD_PAISE else LPP_ABSOLUTE_PAISE
            empty = {"price": 0, "quantity": 0, "orders": 0}
            buy = [{"price": to_rupees(t.bid), "quantity": t.bid_qty,
                    "orders": max(1, t.bid_qty // lot) if lot else 0}]
            sell = [{"price": to_rupees(t.ask), "quantity": t.ask_qty,
                     "orders": max(1, t.ask_qty // lot) if lot else 0}]
            out[key] = {
                "instrument_token": token, "timestamp": kite_time(t.ts_ns), "last_trade_time": kite_time(t.ts_ns),
                "last_price": to_rupees(t.last_price), "last_quantity": lot, "buy_quantity": t.bid_qty,
                "sell_quantity": t.ask_qty, "volume": t.volume, "average_price": to_rupees(t.last_price), "oi": t.oi,
                "oi_day_high": 0, "oi_day_low": 0, "net_change": to_rupees(t.last_price - q.close),
                "lower_circuit_limit": to_rupees(max(t.last_price - band, 5)) if lot else 0,
                "upper_circuit_limit": to_rupees(t.last_price + band) if lot else 0,
                "ohlc": {"open": to_rupees(q.open), "high": to_rupees(q.high), "low": to_rupees(q.low),
                         "close": to_rupees(q.close)},
                "depth": {"buy": (buy if lot else [empty]) + [dict(empty) for _ in range(4)],
                          "sell": (sell if lot else [empty]) + [dict(empty) for _ in range(4)]},
            }
        return success(out)

    async def instruments_dump(self, request: web.Request) -> web.StreamResponse:
        exchange = request.match_info.get("exchange")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        index = self.sim.market.index
        if exchange in (None, index.exchange):
            writer.writerow([index.instrument_token, index.instrument_token >> 8, index.tradingsymbol, index.name,
                             to_rupees(self.sim.last_price(index.instrument_token)), "", 0.0, 0.0, 0, "EQ", "INDICES",
                             index.exchange])
        for c in self.sim.listed_contracts():
            if exchange in (None, c.exchange):
                writer.writerow([c.instrument_token, c.instrument_token >> 8, c.tradingsymbol, c.underlying,
                                 to_rupees(self.sim.last_price(c.instrument_token)), c.expiry.isoformat(),
                                 to_rupees(c.strike), to_rupees(c.tick_size), c.lot_size, c.option_type.value,
                                 f"{c.exchange}-OPT", c.exchange])
        return web.Response(body=buffer.getvalue().encode(), content_type="text/csv")
