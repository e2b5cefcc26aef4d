"""Fyers API v3 wire details shared by the simulator's Fyers face: envelopes, error codes, symbols and fyTokens, the
order/trade/position JSON shapes of the REST replies and of the order socket.

Envelope: every reply is a JSON object ``{"s": "ok" | "error", "code": n, "message": ...}`` plus its payload keys
(``orderBook``, ``tradeBook``, ``netPositions``, ``fund_limit``, ``data``, ``d``, ``id``). Error codes used here
(Fyers' error-code table as our client ``trader/adapters/fyers/errors.py`` reads it): -8 token expired, -16 token
invalid, -50 invalid input, -51 invalid order id, -99 order rejected (RMS, price band, final state), -300 invalid
symbol, -429 rate limit (HTTP 429). Success codes of order writes: 1101 placed, 1102 modified, 1103 cancelled.

Identity (the lead's design): the Fyers ticker is our Kite-style tradingsymbol with ``NSE:``/``BSE:`` in front
(``NSE:NIFTY26D0826000CE``); fyToken is digits: [:4] the exchange-segment code of the SDK's ``map.json``
(1011 nse_fo, 1211 bse_fo, 1010 nse_cm, 1210 bse_cm), [4:10] the expiry as yymmdd (000000 for an index), [10:] the
exchange token (the Kite instrument token >> 8 in this simulator).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from trader.events import OrderType, Side
from trader.market.calendar import IST
from trader.market.instruments import IndexInstrument, OptionContract

NS_PER_SECOND = 1_000_000_000

EXCHANGE_CODES: Mapping[str, int] = {"NFO": 10, "BFO": 12, "NSE": 10, "BSE": 12}  # Fyers: 10 NSE, 12 BSE
SEGMENT_FO, SEGMENT_CM = 11, 10
FO_PREFIX: Mapping[str, str] = {"NFO": "NSE", "BFO": "BSE"}  # our option exchange -> Fyers' ticker prefix
FO_EXCHANGE: Mapping[str, str] = {v: k for k, v in FO_PREFIX.items()}
EXCH_SEG: Mapping[str, str] = {"NFO": "1011", "BFO": "1211", "NSE": "1010", "BSE": "1210"}
INSTRUMENT_OPTIDX = 14  # Fyers' exchange instrument type of an index option (11 = index future)
INSTRUMENT_INDEX = 10

# Fyers ticker and HSM index name of each index (the SDK's map.json index_dict).
INDEX_SYMBOLS: Mapping[str, tuple[str, str]] = {
    "NIFTY": ("NSE:NIFTY50-INDEX", "Nifty 50"), "BANKNIFTY": ("NSE:NIFTYBANK-INDEX", "Nifty Bank"),
    "FINNIFTY": ("NSE:FINNIFTY-INDEX", "Nifty Fin Service"),
    "MIDCPNIFTY": ("NSE:MIDCPNIFTY-INDEX", "NIFTY MID SELECT"),
    "NIFTYNXT50": ("NSE:NIFTYNXT50-INDEX", "Nifty Next 50"), "SENSEX": ("BSE:SENSEX-INDEX", "SENSEX"),
}

ORDER_TYPES: Mapping[int, OrderType] = {1: OrderType.LIMIT, 2: OrderType.MARKET, 3: OrderType.SL_M, 4: OrderType.SL}
TYPE_CODES: Mapping[OrderType, int] = {v: k for k, v in ORDER_TYPES.items()}
SIDES: Mapping[int, Side] = {1: Side.BUY, -1: Side.SELL}
SIDE_CODES: Mapping[Side, int] = {v: k for k, v in SIDES.items()}
PRODUCTS: Mapping[str, str] = {"INTRADAY": "MIS", "MARGIN": "NRML"}  # Fyers product -> the core's (Kite's)
PRODUCT_NAMES: Mapping[str, str] = {v: k for k, v in PRODUCTS.items()}
MAX_TAG_LENGTH = 30  # orderTag: letters and digits, at most 30 (see the module docstring of trader/ids.py)

STATUS_CANCELLED, STATUS_TRADED, STATUS_TRANSIT, STATUS_REJECTED, STATUS_PENDING = 1, 2, 4, 5, 6
_FINAL_STATUS = {"COMPLETE": STATUS_TRADED, "CANCELLED": STATUS_CANCELLED, "REJECTED": STATUS_REJECTED}
_RESTING = frozenset({"OPEN", "TRIGGER PENDING", "MODIFIED"})

# The order socket's keys for the REST field names (the SDK's map.json maps them back; fields it does not list are
# not sent on the socket).
ORDER_SOCKET_KEYS: Mapping[str, str] = {
    "clientId": "client_id", "id": "id", "parentId": "id_parent", "exchOrdId": "id_exchange", "qty": "qty",
    "remainingQuantity": "qty_remaining", "filledQty": "qty_filled", "limitPrice": "price_limit",
    "stopPrice": "price_stop", "tradedPrice": "price_traded", "type": "ord_type", "fyToken": "fy_token",
    "exchange": "exchange", "segment": "segment", "symbol": "symbol", "instrument": "instrument",
    "message": "oms_msg", "offlineOrder": "offline_flag", "orderDateTime": "time_oms", "orderValidity": "validity",
    "productType": "product_type", "side": "tran_side", "status": "org_ord_status", "source": "ord_source",
    "ex_sym": "symbol_exch", "description": "symbol_desc", "orderTag": "ordertag",
}
TRADE_SOCKET_KEYS: Mapping[str, str] = {
    "tradeNumber": "id_fill", "orderNumber": "id", "tradedQty": "qty_traded", "tradePrice": "price_traded",
    "tradeValue": "traded_val", "productType": "product_type", "clientId": "client_id",
    "exchangeOrderNo": "id_exchange", "orderType": "ord_type", "side": "tran_side", "symbol": "symbol",
    "orderDateTime": "fill_time", "fyToken": "fy_token", "exchange": "exchange", "segment": "segment",
    "orderTag": "ordertag",
}
POSITION_SOCKET_KEYS: Mapping[str, str] = {
    "symbol": "symbol", "id": "id", "buyAvg": "buy_avg", "buyQty": "buy_qty", "buyVal": "buy_val",
    "sellAvg": "sell_avg", "sellQty": "sell_qty", "sellVal": "sell_val", "netAvg": "net_avg", "netQty": "net_qty",
    "side": "tran_side", "qty": "qty", "productType": "product_type", "realized_profit": "pl_realized",
    "rbiRefRate": "rbirefrate", "fyToken": "fy_token", "exchange": "exchange", "segment": "segment",
    "dayBuyQty": "day_buy_qty", "daySellQty": "day_sell_qty", "cfBuyQty": "cf_buy_qty", "cfSellQty": "cf_sell_qty",
    "qtyMulti_com": "qty_multiplier", "pl": "pl_total", "crossCurrency": "cross_curr_flag",
    "unrealized_profit": "pl_unrealized",
}


class FyersError(Exception):
    """An error reply: HTTP ``status`` with ``{"s": "error", "code": code, "message": message}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid_input(message: str) -> FyersError:
    return FyersError(400, -50, message)


def ok(payload: Mapping[str, Any] | None = None, *, code: int = 200, message: str = "") -> web.Response:
    return web.json_response({"s": "ok", "code": code, "message": message, **(payload or {})})


def failure(error: FyersError) -> web.Response:
    return web.json_response({"s": "error", "code": error.code, "message": error.message}, status=error.status)


def fyers_time(ts_ns: int) -> str:
    """``dd-Mon-yyyy hh:mm:ss`` in IST, as Fyers writes ``orderDateTime``."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=IST).strftime("%d-%b-%Y %H:%M:%S")


def rupees(paise: int) -> float:
    return round(paise / 100, 2)


def fyers_symbol(contract: OptionContract) -> str:
    return f"{FO_PREFIX[contract.exchange]}:{contract.tradingsymbol}"


def exchange_token(instrument_token: int) -> int:
    return instrument_token >> 8


def fy_token(contract: OptionContract) -> str:
    return f"{EXCH_SEG[contract.exchange]}{contract.expiry:%y%m%d}{exchange_token(contract.instrument_token)}"


def index_fy_token(index: IndexInstrument) -> str:
    return f"{EXCH_SEG[index.exchange]}000000{exchange_token(index.instrument_token)}"


def description(contract: OptionContract) -> str:
    """Fyers' "Symbol Details": ``NIFTY 08 Dec 26 26000 CE``."""
    strike = contract.strike / 100
    strike_text = f"{strike:.0f}" if strike == int(strike) else f"{strike:g}"
    return f"{contract.underlying} {contract.expiry:%d %b %y} {strike_text} {contract.option_type.value}"


def status_code(kite_status: str) -> int:
    """The core's (Kite's) order status as Fyers' code: 2 traded, 1 cancelled, 5 rejected, 6 pending (resting on the
    exchange), 4 transit (on its way: validation, modify/cancel pending)."""
    if kite_status in _FINAL_STATUS:
        return _FINAL_STATUS[kite_status]
    return STATUS_PENDING if kite_status in _RESTING else STATUS_TRANSIT


def reported_tag(tag: str | None) -> str:
    """How the order book shows ``orderTag``: ``"1:<tag>"`` (``"1:Untagged"`` without one) — see the report."""
    return f"1:{tag}" if tag else "1:Untagged"


def socket_view(row: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """A REST-shaped row as the order socket sends it (its own key names)."""
    return {wire: row[rest] for rest, wire in keys.items() if rest in row}
