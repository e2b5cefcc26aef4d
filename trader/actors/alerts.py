"""Alert actor: classifies bus events into alerts and hands them to the outboxes. Nothing else.

``handle`` is synchronous work only (``AlertRules.classify``, a dict update, ``Outbox.put``): it never awaits, never
does I/O, so the trading actors never wait on it; the outboxes' own tasks do the sending (trader/alerts/outbox.py).
It also keeps, by IST day, the fills and charges and the portfolio's last snapshot (day P&L, equity, open
positions) for the end-of-day summary: the summary may be made after the portfolio has rolled to the next day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from trader.actors.base import Actor
from trader.alerts.rules import Alert, AlertRules
from trader.bus import EventBus
from trader.events import (
    ApprovalUpdate,
    Fill,
    OrderRequest,
    OrderUpdate,
    PositionSnapshot,
    RiskEvent,
    VenueStatus,
)
from trader.market.calendar import ist_date

MAX_DAYS = 7


class AlertActor(Actor):
    name = "alerts"

    def __init__(self, bus: EventBus, rules: AlertRules, sink: Callable[[Alert], None]) -> None:
        super().__init__(bus)
        self.rules = rules
        self.sink = sink
        self.alerts = 0
        self.day_fills: dict[date, tuple[int, int]] = {}  # IST day → (fills, charges in paise)
        self.day_books: dict[int, tuple[int, int, int]] = {}  # session day ordinal → (day P&L, equity, positions)

    def subscriptions(self) -> Iterable[type]:
        return (RiskEvent, VenueStatus, OrderRequest, OrderUpdate, Fill, ApprovalUpdate, PositionSnapshot)

    async def handle(self, event: Any) -> None:
        if type(event) is PositionSnapshot:
            if event.session_day:
                self.day_books[event.session_day] = (event.day_pnl, event.equity, len(event.open_positions()))
                if len(self.day_books) > MAX_DAYS:
                    del self.day_books[min(self.day_books)]
            return
        if type(event) is Fill:
            day = ist_date(event.ts_ns)
            fills, charges = self.day_fills.get(day, (0, 0))
            self.day_fills[day] = (fills + 1, charges + event.charges)
            if len(self.day_fills) > MAX_DAYS:
                del self.day_fills[min(self.day_fills)]
        alert = self.rules.classify(event)
        if alert is not None:
            self.alerts += 1
            self.sink(alert)
