"""The simulator's book in Fyers API v3 shapes: order-book rows, trade-book rows, net positions and funds (rupees as
floats with two decimals on the wire; the core keeps paise)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trader.money import to_paise
from trader.sim.fyers.wire import (
    EXCHANGE_CODES,
    INSTRUMENT_OPTIDX,
    PRODUCT_NAMES,
    SEGMENT_FO,
    SIDE_CODES,
    TYPE_CODES,
    description,
    fy_token,
    fyers_symbol,
    fyers_time,
    reported_tag,
    rupees,
    status_code,
)
from trader.sim.sim_order import SimOrder
from trader.sim.wire import USER_ID

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator


def order_row(sim: ExchangeSimulator, order: SimOrder, serial: int = 1) -> dict[str, Any]:
    """One ``orderBook`` row (also what the order socket sends, under its own key names)."""
    contract = order.contract
    status = status_code(order.status)
    last = sim.last_price(contract.instrument_token)
    close = sim.quotes[contract.instrument_token].close if contract.instrument_token in sim.quotes else last
    remaining = 0 if order.is_final else order.quantity - order.filled
    return {
        "clientId": USER_ID, "id": order.order_id, "exchOrdId": order.exchange_order_id, "parentId": "",
        "qty": order.quantity, "remainingQuantity": remaining, "filledQty": order.filled, "discloseQty": 0,
        "dqQtyRem": 0, "disclosedQty": 0, "limitPrice": rupees(order.price), "stopPrice": rupees(order.trigger_price),
        "tradedPrice": rupees(round(order.fill_value / order.filled)) if order.filled else 0.0,
        "type": TYPE_CODES[order.order_type], "fyToken": fy_token(contract),
        "exchange": EXCHANGE_CODES[contract.exchange], "segment": SEGMENT_FO, "symbol": fyers_symbol(contract),
        "instrument": INSTRUMENT_OPTIDX, "message": order.status_message or "", "offlineOrder": False,
        "orderDateTime": fyers_time(order.placed_ns), "orderValidity": order.validity, "pan": "",
        "productType": PRODUCT_NAMES.get(order.product, order.product), "side": SIDE_CODES[order.side],
        "status": status, "source": "API", "ex_sym": contract.underlying, "description": description(contract),
        "ch": rupees(last - close), "chp": round((last - close) * 100 / close, 2) if close else 0.0,
        "lp": rupees(last), "slNo": serial, "orderNumStatus": f"{order.order_id}:{status}",
        "orderTag": reported_tag(order.tag),
    }


def trade_row(sim: ExchangeSimulator, order: SimOrder, trade: Mapping[str, Any], serial: int = 1) -> dict[str, Any]:
    """One ``tradeBook`` row for a trade of the core (its Kite row) and its order."""
    contract = order.contract
    price = to_paise(trade["average_price"])
    quantity = int(trade["quantity"])
    return {
        "clientId": USER_ID, "orderDateTime": _fyers_text(str(trade["fill_timestamp"])),
        "orderNumber": order.order_id, "exchangeOrderNo": order.exchange_order_id,
        "exchange": EXCHANGE_CODES[contract.exchange], "side": SIDE_CODES[order.side], "segment": SEGMENT_FO,
        "orderType": TYPE_CODES[order.order_type], "fyToken": fy_token(contract),
        "productType": PRODUCT_NAMES.get(order.product, order.product), "tradedQty": quantity,
        "tradePrice": rupees(price), "tradeValue": rupees(price * quantity), "tradeNumber": str(trade["trade_id"]),
        "row": serial, "symbol": fyers_symbol(contract), "orderTag": reported_tag(order.tag),
    }


def _fyers_text(kite_text: str) -> str:
    """Kite's ``yyyy-mm-dd hh:mm:ss`` (the core's trade rows) as Fyers' ``dd-Mon-yyyy hh:mm:ss``."""
    return datetime.strptime(kite_text, "%Y-%m-%d %H:%M:%S").strftime("%d-%b-%Y %H:%M:%S")


def trade_rows(sim: ExchangeSimulator) -> list[dict[str, Any]]:
    return [trade_row(sim, sim.orders[t["order_id"]], t, n) for n, t in enumerate(sim.trades, 1)
            if t["order_id"] in sim.orders]


@dataclass(slots=True)
class _Leg:
    order: SimOrder
    buy_qty: int = 0
    buy_value: int = 0  # paise
    sell_qty: int = 0
    sell_value: int = 0


def _avg(value: int, quantity: int) -> int:
    return round(value / quantity) if quantity else 0


def position_rows(sim: ExchangeSimulator) -> list[dict[str, Any]]:
    """``netPositions``: one row per (contract, product) traded today, from the core's trades."""
    legs: dict[tuple[int, str], _Leg] = {}
    for trade in sim.trades:
        order = sim.orders.get(trade["order_id"])
        if order is None:
            continue
        leg = legs.setdefault((order.contract.instrument_token, order.product), _Leg(order))
        value = to_paise(trade["average_price"]) * int(trade["quantity"])
        if trade["transaction_type"] == "BUY":
            leg.buy_qty += int(trade["quantity"])
            leg.buy_value += value
        else:
            leg.sell_qty += int(trade["quantity"])
            leg.sell_value += value
    rows = []
    for serial, ((token, product), leg) in enumerate(legs.items()):
        contract = leg.order.contract
        net = leg.buy_qty - leg.sell_qty
        buy_avg, sell_avg = _avg(leg.buy_value, leg.buy_qty), _avg(leg.sell_value, leg.sell_qty)
        net_avg = buy_avg if net > 0 else sell_avg if net < 0 else 0
        last = sim.last_price(token)
        matched = min(leg.buy_qty, leg.sell_qty)
        realized = matched * (sell_avg - buy_avg)
        unrealized = net * (last - net_avg)
        symbol, name = fyers_symbol(contract), PRODUCT_NAMES.get(product, product)
        rows.append({
            "symbol": symbol, "id": f"{symbol}-{name}", "fyToken": fy_token(contract),
            "exchange": EXCHANGE_CODES[contract.exchange], "segment": SEGMENT_FO, "productType": name,
            "netQty": net, "qty": abs(net), "side": (net > 0) - (net < 0), "avgPrice": rupees(net_avg),
            "netAvg": rupees(net_avg), "buyQty": leg.buy_qty, "buyAvg": rupees(buy_avg),
            "buyVal": rupees(leg.buy_value), "sellQty": leg.sell_qty, "sellAvg": rupees(sell_avg),
            "sellVal": rupees(leg.sell_value), "dayBuyQty": leg.buy_qty, "daySellQty": leg.sell_qty,
            "cfBuyQty": 0, "cfSellQty": 0, "realized_profit": rupees(realized),
            "unrealized_profit": rupees(unrealized), "pl": rupees(realized + unrealized), "ltp": rupees(last),
            "slNo": serial, "crossCurrency": "", "rbiRefRate": 1.0, "qtyMulti_com": 1.0,
        })
    return rows


def positions_overall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    realized = sum(to_paise(r["realized_profit"]) for r in rows)
    unrealized = sum(to_paise(r["unrealized_profit"]) for r in rows)
    return {"count_total": len(rows), "count_open": sum(1 for r in rows if r["netQty"]),
            "pl_total": rupees(realized + unrealized), "pl_realized": rupees(realized),
            "pl_unrealized": rupees(unrealized)}


_FUND_TITLES = ("Total Balance", "Utilized Amount", "Clear Balance", "Realized Profit and Loss", "Collaterals",
                "Fund Transfer", "Receivables", "Adhoc Limits", "Limit at start of the day", "Available Balance")


async def fund_rows(sim: ExchangeSimulator) -> list[dict[str, Any]]:
    """``fund_limit``: Fyers' ten rows (id 1..10), equity amounts from the paper broker's margins."""
    view = await sim.broker.margins()
    realized = sum(to_paise(r["realized_profit"]) for r in position_rows(sim))
    amounts = {1: sim.capital_paise, 2: view.used, 3: view.available, 4: realized, 9: sim.capital_paise,
               10: view.available}
    return [{"id": n, "title": title, "equityAmount": rupees(amounts.get(n, 0)), "commodityAmount": 0.0}
            for n, title in enumerate(_FUND_TITLES, 1)]
