"""The Fyers face's symbol master: ``/sym_details/NSE_FO.csv`` and ``BSE_FO.csv`` (the synthetic market's listed
contracts), ``NSE_CM.csv`` / ``BSE_CM.csv`` (its index) and ``index_hsm_mapping.json`` (the index's HSM name), as
``public.fyers.in/sym_details/`` serves them.

The CSVs have no header row; the 21 columns, in Fyers' order: fyToken, symbol details, exchange instrument type,
minimum lot size, tick size (rupees), ISIN, trading session, last update date, expiry (epoch seconds), symbol ticker,
exchange, segment, scrip code (exchange token), underlying symbol, underlying scrip code, strike price, option type,
underlying fyToken, and three reserved columns.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, time
from typing import TYPE_CHECKING

from aiohttp import web

from trader.market.calendar import IST, ist_date
from trader.sim.fyers.wire import (
    EXCHANGE_CODES,
    INDEX_SYMBOLS,
    INSTRUMENT_INDEX,
    INSTRUMENT_OPTIDX,
    SEGMENT_CM,
    SEGMENT_FO,
    description,
    exchange_token,
    fy_token,
    fyers_symbol,
    index_fy_token,
)

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator

COLUMNS = ("fyToken", "Symbol Details", "Exchange Instrument type", "Minimum lot size", "Tick size", "ISIN",
           "Trading Session", "Last update date", "Expiry date", "Symbol ticker", "Exchange", "Segment", "Scrip code",
           "Underlying symbol", "Underlying scrip code", "Strike price", "Option type", "Underlying FyToken",
           "Reserved column1", "Reserved column2", "Reserved column3")
SESSION = "0915-1530|1815-1915:"
_FO_FILES = {"NSE_FO.csv": "NFO", "BSE_FO.csv": "BFO"}
_CM_FILES = {"NSE_CM.csv": "NSE", "BSE_CM.csv": "BSE"}


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:g}"


class SymbolRoutes:
    def __init__(self, sim: ExchangeSimulator) -> None:
        self.sim = sim

    def _index_symbol(self) -> tuple[str, str]:
        return INDEX_SYMBOLS.get(self.sim.spec.name, (f"{self.sim.market.index.exchange}:"
                                                      f"{self.sim.spec.name}-INDEX", self.sim.market.index.name))

    def fo_rows(self, exchange: str) -> list[list[str]]:
        index = self.sim.market.index
        today = ist_date(self.sim.clock.now_ns())
        rows = []
        for c in self.sim.listed_contracts():
            if c.exchange != exchange:
                continue
            expiry = int(datetime.combine(c.expiry, time(15, 30), tzinfo=IST).timestamp())
            rows.append([fy_token(c), description(c), str(INSTRUMENT_OPTIDX), str(c.lot_size),
                         _number(c.tick_size / 100), "", SESSION, today.isoformat(), str(expiry), fyers_symbol(c),
                         str(EXCHANGE_CODES[c.exchange]), str(SEGMENT_FO), str(exchange_token(c.instrument_token)),
                         c.underlying, str(exchange_token(index.instrument_token)), _number(c.strike / 100),
                         c.option_type.value, index_fy_token(index), "", "", ""])
        return rows

    def index_rows(self, exchange: str) -> list[list[str]]:
        index = self.sim.market.index
        if index.exchange != exchange:
            return []
        symbol, name = self._index_symbol()
        return [[index_fy_token(index), name, str(INSTRUMENT_INDEX), "1", _number(max(index.tick_size, 5) / 100), "",
                 SESSION, ist_date(self.sim.clock.now_ns()).isoformat(), "", symbol, str(EXCHANGE_CODES[exchange]),
                 str(SEGMENT_CM), str(exchange_token(index.instrument_token)), self.sim.spec.name, "-1", "-1", "XX",
                 "", "", "", ""]]

    async def master(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name in _FO_FILES:
            rows = self.fo_rows(_FO_FILES[name])
        elif name in _CM_FILES:
            rows = self.index_rows(_CM_FILES[name])
        else:
            raise web.HTTPNotFound()
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return web.Response(body=buffer.getvalue().encode(), content_type="text/csv")

    async def index_map(self, request: web.Request) -> web.StreamResponse:
        """``index_hsm_mapping.json``: Fyers ticker of an index -> its HSM name."""
        symbol, name = self._index_symbol()
        return web.json_response({symbol: name})


def add_routes(router: web.UrlDispatcher, sim: ExchangeSimulator) -> None:
    symbols = SymbolRoutes(sim)
    router.add_get("/sym_details/index_hsm_mapping.json", symbols.index_map)
    router.add_get("/sym_details/{name}", symbols.master)
