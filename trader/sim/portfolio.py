"""The simulator's account routes: funds and margins (``/user/margins``) and positions (``/portfolio/positions``)
in Kite's shapes, computed from the trades."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from trader.money import to_paise, to_rupees
from trader.sim.wire import (
    input_error,
    success,
)

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator


class PortfolioRoutes:
    def __init__(self, sim: ExchangeSimulator) -> None:
        self.sim = sim

    async def margins(self, request: web.Request) -> web.StreamResponse:
        view = await self.sim.broker.margins()
        available: dict[str, float] = {
            "adhoc_margin": 0, "cash": to_rupees(self.sim.capital_paise),
            "opening_balance": to_rupees(self.sim.capital_paise),
            "live_balance": to_rupees(view.available), "collateral": 0, "intraday_payin": 0}
        utilised: dict[str, float] = {
            "debits": to_rupees(view.used), "exposure": 0, "m2m_realised": 0, "m2m_unrealised": 0,
            "option_premium": to_rupees(view.used), "payout": 0, "span": 0, "holding_sales": 0, "turnover": 0,
            "liquid_collateral": 0, "stock_collateral": 0, "delivery": 0}
        equity = {"enabled": True, "net": to_rupees(view.available), "available": available, "utilised": utilised}
        commodity = {"enabled": False, "net": 0, "available": dict.fromkeys(available, 0),
                     "utilised": dict.fromkeys(utilised, 0)}
        segments = {"equity": equity, "commodity": commodity}
        segment = request.match_info.get("segment")
        if segment is None:
            return success(segments)
        if segment not in segments:
            raise input_error(f"Invalid segment `{segment}`; use equity or commodity.")
        return success(segments[segment])

    async def positions(self, request: web.Request) -> web.StreamResponse:
        return success(self.positions_view())

    def positions_view(self) -> dict[str, list[dict[str, Any]]]:
        rows: dict[int, dict[str, Any]] = {}
        for trade in self.sim.trades:
            token = trade["instrument_token"]
            row = rows.setdefault(token, {"trade": trade, "bq": 0, "bv": 0, "sq": 0, "sv": 0})
            value = to_paise(trade["average_price"]) * trade["quantity"]
            if trade["transaction_type"] == "BUY":
                row["bq"] += trade["quantity"]
                row["bv"] += value
            else:
                row["sq"] += trade["quantity"]
                row["sv"] += value
        out = []
        for token, row in rows.items():
            first = row["trade"]
            bq, bv, sq, sv = row["bq"], row["bv"], row["sq"], row["sv"]
            quantity = bq - sq
            last = self.sim.last_price(token)
            pnl = sv - bv + quantity * last
            buy_price = round(to_rupees(bv) / bq, 2) if bq else 0.0
            sell_price = round(to_rupees(sv) / sq, 2) if sq else 0.0
            quote = self.sim.quotes.get(token)
            out.append({
                "tradingsymbol": first["tradingsymbol"], "exchange": first["exchange"], "instrument_token": token,
                "product": first["product"], "quantity": quantity, "overnight_quantity": 0, "multiplier": 1,
                "average_price": buy_price if quantity > 0 else sell_price if quantity < 0 else 0,
                "close_price": to_rupees(quote.close) if quote else 0, "last_price": to_rupees(last),
                "value": to_rupees(sv - bv), "pnl": to_rupees(pnl), "m2m": to_rupees(pnl), "unrealised": to_rupees(pnl),
                "realised": 0, "buy_quantity": bq, "buy_price": buy_price, "buy_value": to_rupees(bv),
                "buy_m2m": to_rupees(bv), "sell_quantity": sq, "sell_price": sell_price, "sell_value": to_rupees(sv),
                "sell_m2m": to_rupees(sv), "day_buy_quantity": bq, "day_buy_price": buy_price,
                "day_buy_value": to_rupees(bv), "day_sell_quantity": sq, "day_sell_price": sell_price,
                "day_sell_value": to_rupees(sv),
            })
        return {"net": out, "day": [dict(r) for r in out]}
