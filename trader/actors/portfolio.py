"""Portfolio actor: positions, average price, realized/unrealized P&L and charges in integer paise, equity curve.

Cost basis is kept as an exact integer sum; a reduction removes a proportional share of it and a close removes all
of it, so over every round trip realized P&L equals sells minus buys to the paisa.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from trader.actors.base import Actor
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND
from trader.events import Fill, PositionSnapshot, PositionView, Tick
from trader.logging import get_logger
from trader.market.calendar import IST
from trader.market.instruments import OptionContract

log = get_logger("trader.portfolio")

_SNAPSHOT_EVERY_NS = NS_PER_SECOND
_EQUITY_SAMPLE_NS = 60 * NS_PER_SECOND


@dataclass(slots=True)
class _Position:
    contract: OptionContract
    quantity: int = 0  # signed units
    cost: int = 0  # signed: Σ side × qty × price of the open part
    realized: int = 0
    last_price: int = 0
    trade_realized: int = 0  # since the position last opened
    trade_charges: int = 0

    @property
    def unrealized(self) -> int:
        return self.quantity * self.last_price - self.cost if self.quantity and self.last_price else 0

    @property
    def average_price(self) -> int:
        return round(self.cost / self.quantity) if self.quantity else 0


@dataclass(frozen=True, slots=True)
class PerformanceSummary:
    trades: int
    wins: int
    losses: int
    win_rate: float
    profit_factor: float | None  # None when there is no losing trade
    gross_pnl: int
    charges: int
    net_pnl: int
    max_drawdown: int
    max_drawdown_pct: float
    open_positions: int
    fills: int
    average_slippage_bps: float


@dataclass(slots=True)
class _Book:
    trade_pnls: list[int] = field(default_factory=list)
    equity_curve: list[tuple[int, int]] = field(default_factory=list)


class PortfolioActor(Actor):
    name = "portfolio"

    def __init__(self, bus: EventBus, initial_capital: int, *, conflate_ticks: bool = True) -> None:
        super().__init__(bus, conflate_ticks=conflate_ticks)
        self.initial_capital = initial_capital
        self._positions: dict[int, _Position] = {}
        self._seen_fills: set[str] = set()
        self.realized = 0
        self.charges = 0
        self.fills = 0
        self._slippage_bps_units = 0.0
        self._filled_units = 0
        self._book = _Book()
        self._peak_equity = initial_capital
        self.max_drawdown = 0
        self.max_drawdown_pct = 0.0
        self._day_start_equity = initial_capital
        self._session_day = 0
        self._session_end_ns = 0
        self._last_snapshot_ns = 0
        self._next_sample_ns = 0
        self._dirty = False

    def subscriptions(self) -> Iterable[type]:
        return (Fill, Tick)

    # -- accounting ---------------------------------------------------------------------------------------
    @property
    def unrealized(self) -> int:
        return sum(p.unrealized for p in self._positions.values())

    @property
    def equity(self) -> int:
        return self.initial_capital + self.realized - self.charges + self.unrealized

    @property
    def day_pnl(self) -> int:
        return self.equity - self._day_start_equity

    @property
    def trade_pnls(self) -> list[int]:
        return list(self._book.trade_pnls)

    @property
    def equity_curve(self) -> list[tuple[int, int]]:
        return list(self._book.equity_curve)

    def position(self, instrument_token: int) -> int:
        pos = self._positions.get(instrument_token)
        return pos.quantity if pos else 0

    async def handle(self, event: Any) -> None:
        if type(event) is Tick:
            pos = self._positions.get(event.instrument_token)
            self._roll_session(event.ts_ns)
            if pos is not None and pos.quantity and event.last_price != pos.last_price:
                pos.last_price = event.last_price
                self._dirty = True
            if self._dirty and event.ts_ns - self._last_snapshot_ns >= _SNAPSHOT_EVERY_NS:
                self._publish_snapshot(event.ts_ns)
        elif type(event) is Fill:
            self._roll_session(event.ts_ns)
            self.apply_fill(event)
            self._publish_snapshot(event.ts_ns)

    def apply_fill(self, fill: Fill) -> None:
        if fill.fill_id in self._seen_fills:
            log.warning("duplicate_fill_ignored", fill_id=fill.fill_id, intent_id=fill.intent_id)
            return
        self.fills += 1
        self._filled_units += fill.quantity
        self._slippage_bps_units += fill.slippage_bps * fill.quantity
        token = fill.contract.instrument_token
        pos = self._positions.get(token)
        if pos is None:
            pos = self._positions[token] = _Position(fill.contract)
        sign = fill.side.sign
        remaining = fill.quantity
        self.charges += fill.charges
        if pos.quantity and (pos.quantity > 0) != (sign > 0):
            closing = min(remaining, abs(pos.quantity))
            removed = pos.cost if closing == abs(pos.quantity) else pos.cost * closing // abs(pos.quantity)
            pnl = -sign * closing * fill.price - removed
            pos.realized += pnl
            pos.trade_realized += pnl
            self.realized += pnl
            pos.cost -= removed
            pos.quantity += sign * closing
            remaining -= closing
            # A fill that flips the position closes one round trip and opens another: split its charges.
            closing_charges = fill.charges * closing // fill.quantity
            pos.trade_charges += closing_charges
            if pos.quantity == 0:
                self._close_trade(pos, fill)
            pos.trade_charges += fill.charges - closing_charges
        else:
            pos.trade_charges += fill.charges
        if remaining:
            pos.quantity += sign * remaining
            pos.cost += sign * remaining * fill.price
        if pos.quantity:
            pos.last_price = fill.price
        self._seen_fills.add(fill.fill_id)
        self._dirty = True

    def _close_trade(self, pos: _Position, fill: Fill) -> None:
        net = pos.trade_realized - pos.trade_charges
        self._book.trade_pnls.append(net)
        log.info("trade_closed", tradingsymbol=fill.contract.tradingsymbol, gross=pos.trade_realized,
                 charges=pos.trade_charges, net=net, intent_id=fill.intent_id, event_ts_ns=fill.ts_ns)
        pos.trade_realized = pos.trade_charges = 0

    def _roll_session(self, ts_ns: int) -> None:
        if ts_ns < self._session_end_ns:
            return  # hot path: still the same IST day
        today = datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=IST).date()
        tomorrow = datetime.combine(today + timedelta(days=1), time(0), tzinfo=IST)
        self._session_end_ns = int(tomorrow.timestamp()) * NS_PER_SECOND
        day = today.toordinal()
        if day != self._session_day:
            if self._session_day:
                log.info("session_rolled", day_pnl=self.day_pnl, equity=self.equity, event_ts_ns=ts_ns)
            self._session_day = day
            self._day_start_equity = self.equity
            self._dirty = True

    def _publish_snapshot(self, ts_ns: int) -> None:
        self._dirty = False
        self._last_snapshot_ns = ts_ns
        equity = self.equity
        self._peak_equity = max(self._peak_equity, equity)
        drawdown = self._peak_equity - equity
        if drawdown > self.max_drawdown:
            self.max_drawdown = drawdown
            self.max_drawdown_pct = drawdown / self._peak_equity if self._peak_equity > 0 else 0.0
        if ts_ns >= self._next_sample_ns:
            self._book.equity_curve.append((ts_ns, equity))
            self._next_sample_ns = ts_ns + _EQUITY_SAMPLE_NS
        self.bus.publish(self.snapshot(ts_ns))

    def snapshot(self, ts_ns: int) -> PositionSnapshot:
        views = tuple(
            PositionView(contract=p.contract, quantity=p.quantity, average_price=p.average_price,
                         last_price=p.last_price, realized=p.realized, unrealized=p.unrealized)
            for p in self._positions.values()
        )
        return PositionSnapshot(ts_ns=ts_ns, positions=views, realized=self.realized, unrealized=self.unrealized,
                                charges=self.charges, equity=self.equity, day_pnl=self.day_pnl,
                                session_day=self._session_day)

    def summary(self) -> PerformanceSummary:
        pnls = self._book.trade_pnls
        wins = [p for p in pnls if p > 0]
        losses = [p for p in pnls if p <= 0]
        gross_loss = -sum(p for p in losses if p < 0)
        return PerformanceSummary(
            trades=len(pnls),
            wins=len(wins),
            losses=len(losses),
            win_rate=len(wins) / len(pnls) if pnls else 0.0,
            profit_factor=sum(wins) / gross_loss if gross_loss else None,
            gross_pnl=self.realized + self.unrealized,
            charges=self.charges,
            net_pnl=self.realized + self.unrealized - self.charges,
            max_drawdown=self.max_drawdown,
            max_drawdown_pct=self.max_drawdown_pct,
            open_positions=sum(1 for p in self._positions.values() if p.quantity),
            fills=self.fills,
            average_slippage_bps=self._slippage_bps_units / self._filled_units if self._filled_units else 0.0,
        )
