"""Portfolio actor: positions, average price, realized/unrealized P&L and charges in integer paise (kept by the
shared ``PositionBook``), the equity curve, and the performance summary logged at shutdown."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from trader.actors.base import Actor
from trader.book import ClosedTrade, PositionBook
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND
from trader.events import Fill, PositionSnapshot, PositionView, Tick
from trader.logging import get_logger
from trader.market.calendar import IST
from trader.money import to_rupees

log = get_logger("trader.portfolio")

_SNAPSHOT_EVERY_NS = NS_PER_SECOND
_EQUITY_SAMPLE_NS = 60 * NS_PER_SECOND


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


def summary_fields(summary: PerformanceSummary) -> dict[str, Any]:
    """The summary as people read it (the ``summary`` log line, ``GET /report``): money in rupees as ``*_inr``."""
    fields = asdict(summary)
    for name in ("gross_pnl", "charges", "net_pnl", "max_drawdown"):
        fields[f"{name}_inr"] = to_rupees(fields.pop(name))
    fields["win_rate"] = round(summary.win_rate, 4)
    fields["max_drawdown_pct"] = round(summary.max_drawdown_pct, 6)
    fields["average_slippage_bps"] = round(summary.average_slippage_bps, 2)
    if summary.profit_factor is not None:
        fields["profit_factor"] = round(summary.profit_factor, 3)
    return fields


@dataclass(slots=True)
class _Book:
    trade_pnls: list[int] = field(default_factory=list)
    equity_curve: list[tuple[int, int]] = field(default_factory=list)


class PortfolioActor(Actor):
    name = "portfolio"

    def __init__(self, bus: EventBus, initial_capital: int, *, conflate_ticks: bool = True) -> None:
        super().__init__(bus, conflate_ticks=conflate_ticks)
        self.initial_capital = initial_capital
        self.book = PositionBook()
        self._seen_fills: set[str] = set()
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
        return self.book.unrealized

    @property
    def realized(self) -> int:
        return self.book.realized

    @property
    def charges(self) -> int:
        return self.book.charges

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
        return self.book.quantity(instrument_token)

    async def handle(self, event: Any) -> None:
        if type(event) is Tick:
            self._roll_session(event.ts_ns)
            if self.book.mark(event.instrument_token, event.last_price):
                self._dirty = True
            if self._dirty and event.ts_ns - self._last_snapshot_ns >= _SNAPSHOT_EVERY_NS:
                self._publish_snapshot(event.ts_ns)
        elif type(event) is Fill:
            self._roll_session(event.ts_ns)
            self.apply_fill(event)
            self._publish_snapshot(event.ts_ns)

    def restore(self, fills: list[Fill], *, day_start: tuple[date, int] | None = None) -> None:
        """Before start: the account as the start-up gate rebuilt it (every journaled fill, the missed ones, the
        broker's outside trades); none of them is ever booked again.

        ``day_start`` (the risk manager's saved IST day and the equity it started at, paise): the day P&L goes on
        from there when the session is still on that day, so a restart does not forget the morning's P&L."""
        for fill in fills:
            if fill.fill_id not in self._seen_fills:
                self._book_fill(fill)
        self._peak_equity = max(self._peak_equity, self.equity)
        if day_start is not None:
            day, equity = day_start
            self._session_day = day.toordinal()
            self._session_end_ns = int(datetime.combine(day + timedelta(days=1), time(0), tzinfo=IST).timestamp()
                                       ) * NS_PER_SECOND
            self._day_start_equity = equity
        self._dirty = True

    def apply_fill(self, fill: Fill) -> None:
        if fill.fill_id in self._seen_fills:
            log.warning("duplicate_fill_ignored", fill_id=fill.fill_id, intent_id=fill.intent_id)
            return
        closed = self._book_fill(fill)
        if closed is not None:
            log.info("trade_closed", tradingsymbol=fill.contract.tradingsymbol, gross_inr=to_rupees(closed.gross),
                     charges_inr=to_rupees(closed.charges), net_inr=to_rupees(closed.net), intent_id=fill.intent_id,
                     event_ts_ns=fill.ts_ns)
        self._dirty = True

    def _book_fill(self, fill: Fill) -> ClosedTrade | None:
        self.fills += 1
        self._filled_units += fill.quantity
        self._slippage_bps_units += fill.slippage_bps * fill.quantity
        closed = self.book.apply(fill.contract, fill.side, fill.quantity, fill.price, fill.charges)
        if closed is not None:
            self._book.trade_pnls.append(closed.net)
        self._seen_fills.add(fill.fill_id)
        return closed

    def _roll_session(self, ts_ns: int) -> None:
        if ts_ns < self._session_end_ns:
            return  # hot path: still the same IST day
        today = datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=IST).date()
        tomorrow = datetime.combine(today + timedelta(days=1), time(0), tzinfo=IST)
        self._session_end_ns = int(tomorrow.timestamp()) * NS_PER_SECOND
        day = today.toordinal()
        if day != self._session_day:
            if self._session_day:
                log.info("session_rolled", day_pnl_inr=to_rupees(self.day_pnl), equity_inr=to_rupees(self.equity),
                         event_ts_ns=ts_ns)
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
            for p in self.book.positions.values()
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
            open_positions=len(self.book.open_positions()),
            fills=self.fills,
            average_slippage_bps=self._slippage_bps_units / self._filled_units if self._filled_units else 0.0,
        )
