"""The control service: the one implementation behind the HTTP API, the operator CLI and the Python facade.

Reads are plain methods that return JSON-ready dicts (money in rupees under keys ending ``_inr``, times as IST text
with ``*_ns`` beside them where a program may want the number). Acts are coroutines: each puts a ``Command`` (with a
``command_id``) or an ``OrderIntent`` on the bus, exactly as any other part of the daemon would, and waits through
the ledger for the answer (the ``CommandResult``, or the risk gate's decision on the intent). Nothing here changes an
actor's state directly. Every call runs on the daemon's event loop.

Errors are ``ControlError``s carrying the HTTP status and a message an operator can act on: ``BadRequest`` (400),
``NotFound`` (404), ``Refused`` (409: a risk check refused, an approval already decided or expired, live mode needs
``confirm``), ``Unavailable`` (503: the actor that should answer did not in time).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trader import __version__
from trader.actors.ledger import OrderRecord, approval_dict
from trader.actors.portfolio import summary_fields
from trader.clock import NS_PER_SECOND
from trader.control.requests import ManualOrder
from trader.control.resolve import resolve_order
from trader.control.resolved import OrderSpecError, ResolvedOrder
from trader.events import (
    ApprovalStatus,
    Command,
    CommandKind,
    CommandResult,
    IntentPurpose,
)
from trader.health import BROKER_PROBLEMS
from trader.logging import get_logger
from trader.market.calendar import ist_text
from trader.market.instruments import resolve_underlying
from trader.money import format_inr, to_rupees

if TYPE_CHECKING:
    from trader.app import App

log = get_logger("trader.control")

MAX_CURVE_POINTS = 500
# RiskMetrics.as_dict() keys that are money (rupees): renamed with an ``_inr`` suffix in answers.
_RISK_MONEY_KEYS = ("equity", "daily_pnl", "weekly_pnl", "monthly_pnl", "drawdown", "margin_used",
                    "margin_available", "exposure")


class ControlError(Exception):
    """An answer that is not a success: ``status`` (HTTP), ``code`` (machine-readable), ``message`` (for people),
    ``field`` (the request field to fix), ``check`` (the risk check that refused); ``extra`` goes into the answer's
    body beside ``error`` (e.g. the refused order)."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, field: str = "", check: str = "",
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.check = check
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        if self.check:
            error["check"] = self.check
        return {"error": error, **self.extra}


class BadRequest(ControlError):
    status = 400
    code = "bad_request"


class NotFound(ControlError):
    status = 404
    code = "not_found"


class Refused(ControlError):
    status = 409
    code = "refused"


MAX_REQUEST_IDS = 10_000


class Unavailable(ControlError):
    status = 503
    code = "unavailable"


def _seconds(ns: int) -> float:
    return round(ns / NS_PER_SECOND, 3)


def downsample(points: list[tuple[int, int]], most: int = MAX_CURVE_POINTS) -> list[tuple[int, int]]:
    """At most ``most`` points, evenly spread, the first and the last always kept."""
    if len(points) <= most:
        return list(points)
    last = len(points) - 1
    return [points[round(i * last / (most - 1))] for i in range(most)]


class ControlService:
    def __init__(self, app: App, *, source: str = "operator") -> None:
        self.app = app
        self.settings = app.settings
        self.ledger = app.ledger
        self.health = app.health
        self.source = source
        self.wait_s = app.settings.control.order_wait_seconds
        # Manual orders by the client's request_id → our intent id, so a retried request is answered, not placed
        # again; the oldest are forgotten first (a retry comes seconds later, not thousands of orders later).
        self._requests: OrderedDict[str, str] = OrderedDict()

    # -- reads ----------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        app = self.app
        now = app.clock.now_ns()
        problems = app.risk.venue_problems
        feed_age = self.health.feed_age_s()
        portfolio = app.portfolio
        return {
            "mode": self.settings.mode,
            "auto_execution": app.strategy.auto_execution,
            "trading_state": app.risk.state.value,
            "state_reason": app.risk.manager.state_reason,
            "risk_level": app.risk.level.value,
            "broker_reachable": not any(problem in problems for problem in BROKER_PROBLEMS),
            "venue_problems": problems,
            "feed_age_s": None if feed_age is None else round(feed_age, 3),
            "loop_lag_ms": app.loop_monitor.lag_ms,
            "loop_lag_max_ms": app.loop_monitor.max_lag_ms,
            "health": self.health.report().as_dict(),
            "session_time": ist_text(now),
            "event_ts_ns": now,
            "uptime_s": _seconds(time.time_ns() - app.wall_started_ns),
            "pending_approvals": len(self.ledger.pending),
            "open_positions": len(portfolio.book.open_positions()),
            "equity_inr": to_rupees(portfolio.equity),
            "day_pnl_inr": to_rupees(portfolio.day_pnl),
            "counts": app.counters(),
            "version": __version__,
        }

    def positions(self) -> dict[str, Any]:
        portfolio = self.app.portfolio
        held_by: dict[int, list[str]] = {}
        for holding in self.app.strategy.holdings():
            if holding.quantity:
                held_by.setdefault(holding.contract.instrument_token, []).append(holding.strategy_id)
        rows = []
        for position in portfolio.book.open_positions():
            contract = position.contract
            rows.append({
                "tradingsymbol": contract.tradingsymbol,
                "exchange": contract.exchange,
                "underlying": contract.underlying,
                "expiry": contract.expiry.isoformat(),
                "strike_inr": to_rupees(contract.strike),
                "option_type": contract.option_type.value,
                "instrument_token": contract.instrument_token,
                "quantity": position.quantity,
                "lots": position.quantity // contract.lot_size,
                "average_price_inr": to_rupees(position.average_price),
                "last_price_inr": to_rupees(position.last_price),
                "realized_inr": to_rupees(position.realized),
                "unrealized_inr": to_rupees(position.unrealized),
                "held_by": ",".join(held_by.get(contract.instrument_token, [])),
            })
        return {
            "positions": rows,
            "realized_inr": to_rupees(portfolio.realized),
            "unrealized_inr": to_rupees(portfolio.unrealized),
            "charges_inr": to_rupees(portfolio.charges),
            "equity_inr": to_rupees(portfolio.equity),
            "day_pnl_inr": to_rupees(portfolio.day_pnl),
        }

    def orders(self) -> dict[str, Any]:
        return {"orders": [record.as_dict() for record in self.ledger.recent_orders()]}

    def signals(self) -> dict[str, Any]:
        now = self.app.clock.now_ns()
        ledger = self.ledger
        return {
            "signals": [record.as_dict() for record in ledger.recent_signals()],
            "pending": [approval_dict(update, now) for update in reversed(ledger.pending.values())],
            "decided": [approval_dict(update, now) for update in reversed(ledger.decided.values())],
        }

    def risk(self) -> dict[str, Any]:
        app = self.app
        manager = app.risk.manager
        config = manager.config
        metrics = manager.metrics(app.clock.now_ns())
        answer = metrics.as_dict()
        for key in _RISK_MONEY_KEYS:
            answer[f"{key}_inr"] = answer.pop(key)
        positions = manager.open_positions()
        per_underlying = Counter(p.contract.underlying for p in positions)
        exposure: Counter[str] = Counter()
        for position in positions:
            exposure[position.contract.underlying] += abs(position.quantity) * position.last_price
        total_exposure = sum(exposure.values())
        largest_lots = max((r.intent.quantity // r.intent.contract.lot_size
                            for r in self.ledger.orders.values() if not r.refused), default=0)
        peak = metrics.equity + metrics.drawdown
        capital = manager.capital
        shares = metrics.limits_used

        def loss(name: str, fraction: float, pnl: int) -> dict[str, Any]:
            return _limit(to_rupees(max(1, round(capital * fraction))), to_rupees(max(0, -pnl)), "INR",
                          share=shares.get(name))

        answer["limits"] = {
            "daily_loss": loss("daily", config.max_daily_loss_pct, metrics.daily_pnl),
            "weekly_loss": loss("weekly", config.max_weekly_loss_pct, metrics.weekly_pnl),
            "monthly_loss": loss("monthly", config.max_monthly_loss_pct, metrics.monthly_pnl),
            "drawdown": _limit(to_rupees(round(peak * config.max_drawdown_pct)), to_rupees(max(0, metrics.drawdown)),
                               "INR", share=shares.get("drawdown")),
            "positions_per_symbol": _limit(config.max_positions_per_symbol,
                                           max(per_underlying.values(), default=0), "positions"),
            "total_positions": _limit(config.max_total_positions, len(positions), "positions"),
            "lots_per_trade": _limit(config.max_lots_per_trade, largest_lots, "lots"),
            "margin_utilisation": _limit(round(config.max_margin_utilisation_pct * 100, 2),
                                         round(metrics.margin_utilisation * 100, 2), "%"),
            "orders_per_second": _limit(config.max_orders_per_second, metrics.orders_last_second, "orders/s"),
        }
        answer["concentration"] = {name: round(value / total_exposure, 4) for name, value in exposure.items()
                                   } if total_exposure else {}
        answer["time"] = ist_text(metrics.ts_ns)
        return answer

    def report(self) -> dict[str, Any]:
        portfolio = self.app.portfolio
        answer = summary_fields(portfolio.summary())
        answer["initial_capital_inr"] = to_rupees(portfolio.initial_capital)
        answer["equity_inr"] = to_rupees(portfolio.equity)
        answer["day_pnl_inr"] = to_rupees(portfolio.day_pnl)
        answer["equity_curve"] = [[ist_text(ts), to_rupees(equity)]
                                  for ts, equity in downsample(portfolio.equity_curve)]
        return answer

    # -- acts -----------------------------------------------------------------------------------------------
    async def place_order(self, order: ManualOrder) -> dict[str, Any]:
        """Resolve a manual order against today's instruments and the latest quotes, and send it as an intent of
        the ``manual`` strategy through the risk gate like any other; ``dry_run`` answers the resolution only."""
        app = self.app
        now = app.clock.now_ns()
        try:
            resolved = resolve_order(order, app.instruments, app.strategy.context.quotes, now, calendar=app.calendar,
                                     max_quote_age_ns=round(self.settings.control.max_quote_age_seconds
                                                            * NS_PER_SECOND))
        except OrderSpecError as exc:
            raise BadRequest(str(exc), field=exc.field) from None
        shown = resolved.as_dict()
        words = _order_words(resolved)
        if order.dry_run:
            return {"order": None, "resolved": shown, "dry_run": True,
                    "message": f"dry run: {words}; nothing was placed"}
        if order.request_id is not None and order.request_id in self._requests:
            return await self._repeat(order.request_id, shown)
        self._refuse_if_stopping()
        if self.settings.mode == "live" and not order.confirm:
            raise Refused(f"live mode: a manual order needs confirm=true (--confirm); it would {words}",
                          field="confirm", extra={"resolved": shown})
        intent = resolved.intent(ts_ns=now, intent_id=app.ids.next("M"), purpose=IntentPurpose.ENTRY,
                                 reason=order.reason or "manual order through the control API")
        if app.risk.manager.reduces(intent):  # the label the gate's own book gives it (the gate never trusts one)
            intent = dataclasses.replace(intent, purpose=IntentPurpose.EXIT)
        log.info("manual_order", intent_id=intent.intent_id, tradingsymbol=resolved.contract.tradingsymbol,
                 side=resolved.side.value, quantity=resolved.quantity, order_type=resolved.order_type.value,
                 purpose=intent.purpose.value, expected_price_inr=to_rupees(resolved.expected_price),
                 how=resolved.how, source=self.source, event_ts_ns=now)
        if order.request_id is not None:
            self._requests[order.request_id] = intent.intent_id
            while len(self._requests) > MAX_REQUEST_IDS:
                self._requests.popitem(last=False)
        app.bus.publish(intent)
        record = await self.ledger.intent_outcome(intent.intent_id, self.wait_s)
        return self._order_answer(record, intent.intent_id, {"resolved": shown}, what=f"the manual order ({words})")

    async def _repeat(self, request_id: str, shown: dict[str, Any]) -> dict[str, Any]:
        """A request_id seen before: the first order's answer (refused, decided or still waiting), marked as a
        repeat; nothing is placed."""
        intent_id = self._requests[request_id]
        log.warning("manual_order_repeated", request_id=request_id, intent_id=intent_id, source=self.source)
        record = await self.ledger.intent_outcome(intent_id, self.wait_s)
        return self._order_answer(record, intent_id, {"resolved": shown, "repeat": True},
                                  what=f"request {request_id} was already placed as the manual order")

    async def _command(self, kind: CommandKind, *, target: str = "", reason: str = "") -> CommandResult | None:
        app = self.app
        command_id = app.ids.next("C")
        log.info("control_command", kind=kind.value, target=target, reason=reason, command_id=command_id,
                 source=self.source)
        app.bus.publish(Command(ts_ns=app.clock.now_ns(), kind=kind, source=self.source, reason=reason,
                                target=target, command_id=command_id))
        return await self.ledger.command_result(command_id, self.wait_s)

    def _state_answer(self, detail: str) -> dict[str, Any]:
        return {"trading_state": self.app.risk.state.value, "risk_level": self.app.risk.level.value,
                "state_reason": self.app.risk.manager.state_reason, "detail": detail}

    def _unanswered(self, who: str) -> Unavailable:
        return Unavailable(f"the {who} did not answer within {self.wait_s:g} s (control.order_wait_seconds); the "
                           "command is on its way and may still take effect: GET /status shows the daemon's state")

    async def _risk_command(self, kind: CommandKind, reason: str = "") -> dict[str, Any]:
        """HALT, RESUME, RESET_DAILY: the risk gate's answer and the state it left."""
        result = await self._command(kind, reason=reason)
        if result is None:
            raise self._unanswered("risk gate")
        if not result.ok:
            raise Refused(result.detail)
        return self._state_answer(result.detail)

    async def halt(self, reason: str = "") -> dict[str, Any]:
        """No new orders until resume; open orders stay, positions stay (flatten closes them)."""
        return await self._risk_command(CommandKind.HALT, reason or "halted through the control API")

    async def resume(self) -> dict[str, Any]:
        """Leave HALTED: ACTIVE again, or REDUCING_ONLY while a loss limit is still breached."""
        return await self._risk_command(CommandKind.RESUME, "resumed through the control API")

    async def reset_daily(self) -> dict[str, Any]:
        """Re-base the daily loss window at the current equity (a daily breach clears)."""
        return await self._risk_command(CommandKind.RESET_DAILY, "daily reset through the control API")

    async def flatten(self, underlying: str | None = None) -> dict[str, Any]:
        """Exit the daemon's positions (of one underlying, when named) and cancel its working orders there; ``exits``
        counts the exit orders issued at once (``detail`` also names those that wait for working orders to end)."""
        target = ""
        if underlying:
            try:
                target = resolve_underlying(underlying).name
            except ValueError as exc:
                raise BadRequest(str(exc), field="underlying") from None
        result = await self._command(CommandKind.FLATTEN, target=target,
                                     reason=f"flatten {target or 'all positions'} through the control API")
        if result is None:
            raise self._unanswered("risk gate")
        if not result.ok:
            raise Refused(result.detail)
        # The gate's own count: a ledger difference would count the exits of a flatten running alongside too.
        return {"detail": result.detail, "exits": result.count}

    async def cancel(self, ref: str) -> dict[str, Any]:
        result = await self._command(CommandKind.CANCEL, target=ref, reason="cancel through the control API")
        if result is None:
            raise self._unanswered("execution actor")
        if not result.ok:
            record = self.ledger.order(ref)
            if record is not None and not record.terminal:
                raise Refused(result.detail, extra={"order": record.as_dict()})
            raise NotFound(result.detail or f"no open order {ref!r}: GET /orders lists them")
        record = self.ledger.order(ref)
        answer: dict[str, Any] = {"ok": True, "detail": result.detail}
        if record is not None:
            answer["order"] = record.as_dict()
        return answer

    def _refuse_if_stopping(self) -> None:
        """Between a stop request and the actors' STOP_ENTRIES an act could still start an order that the
        shutdown then leaves working: refused instead (exits, flatten, halt and cancel still go)."""
        if self.app.stopping:
            raise Unavailable("the daemon is stopping: no new manual order or approval is accepted; positions and "
                              "working orders are taken over by the next start")

    def _pending(self, ref: str) -> str:
        """The intent id of the pending approval ``ref`` names (its intent id or its signal id)."""
        update = self.ledger.approval(ref)
        if update is None:
            raise NotFound(f"no semi-live signal or intent {ref!r}: GET /signals lists the pending ones")
        intent_id = update.intent.intent_id
        if update.status is not ApprovalStatus.PENDING:
            decided = f" by {update.by}" if update.by else ""
            raise Refused(f"{intent_id} is already {update.status.value.lower()}{decided}"
                          f"{f' ({update.reason})' if update.reason else ''}: only a pending one can be decided",
                          extra={"approval": approval_dict(update, self.app.clock.now_ns())})
        return intent_id

    def _approval(self, intent_id: str) -> dict[str, Any] | None:
        update = self.ledger.approval(intent_id)
        return approval_dict(update, self.app.clock.now_ns()) if update is not None else None

    async def approve(self, ref: str) -> dict[str, Any]:
        intent_id = self._pending(ref)
        self._refuse_if_stopping()
        result = await self._command(CommandKind.APPROVE, target=intent_id, reason="approved through the control API")
        if result is None:
            raise self._unanswered("strategy actor")
        if not result.ok:
            raise Refused(result.detail, extra={"approval": self._approval(intent_id)})
        record = await self.ledger.intent_outcome(intent_id, self.wait_s)
        return self._order_answer(record, intent_id, {"approval": self._approval(intent_id)},
                                  what="the approved intent")

    async def reject(self, ref: str, reason: str = "") -> dict[str, Any]:
        intent_id = self._pending(ref)
        result = await self._command(CommandKind.REJECT, target=intent_id,
                                     reason=reason or "rejected through the control API")
        if result is None:
            raise self._unanswered("strategy actor")
        if not result.ok:
            raise Refused(result.detail, extra={"approval": self._approval(intent_id)})
        return {"approval": self._approval(intent_id), "detail": result.detail}

    def _order_answer(self, record: OrderRecord | None, intent_id: str, answer: dict[str, Any], *,
                      what: str) -> dict[str, Any]:
        """The answer to an act that sent an intent: refused (409), decided, or still waiting for the risk gate."""
        if record is None:
            pending = self.ledger.order(intent_id)
            answer.update(order=pending.as_dict() if pending is not None else None, decided=False,
                          message=f"{what} {intent_id} is on its way; the risk gate had not decided within "
                                  f"{self.wait_s:g} s: GET /orders shows what happens to it")
            return answer
        if record.refused:
            raise Refused(f"{what} {intent_id} was refused: {record.reason}", check=record.check,
                          extra={**answer, "order": record.as_dict()})
        answer.update(order=record.as_dict(), decided=True,
                      message=f"{what} {intent_id} was approved by the risk gate and goes to the broker "
                              f"(status {record.status}): GET /orders shows its fills")
        return answer


def _order_words(resolved: ResolvedOrder) -> str:
    """``BUY 1 lot (65 units) of NIFTY26D0126000CE (NFO) MARKET, expected ₹123.45``."""
    lots = f"{resolved.lots} lot{'s' if resolved.lots != 1 else ''}"
    price = ""
    if resolved.limit_price:
        price += f" at {format_inr(resolved.limit_price)}"
    if resolved.trigger_price:
        price += f" triggered at {format_inr(resolved.trigger_price)}"
    return (f"{resolved.side.value} {lots} ({resolved.quantity:,} units) of {resolved.contract.tradingsymbol} "
            f"({resolved.contract.exchange}, expiry {resolved.contract.expiry.isoformat()}) "
            f"{resolved.order_type.value}{price}, expected {format_inr(resolved.expected_price)}")


def _limit(limit: float, used: float, unit: str, *, share: float | None = None) -> dict[str, Any]:
    if share is None:
        share = used / limit if limit else 0.0
    pct = share * 100
    return {"limit": limit, "used": used, "used_pct": round(pct, 2) if math.isfinite(pct) else None, "unit": unit}
