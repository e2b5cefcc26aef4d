"""Alert rules, pure and synchronous: each kind from the events (risk events from a real RiskManager, so a change
in its wording that the rules depend on fails here), the feed-silence and session-close watchers, the builders."""

from __future__ import annotations

from datetime import date, datetime

from trader.actors.alerts import AlertActor
from trader.alerts import rules
from trader.alerts.rules import Alert, AlertRules, DayFigures, FeedWatch, SessionWatch, Severity
from trader.bus import EventBus
from trader.events import (
    ApprovalStatus,
    ApprovalUpdate,
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionSnapshot,
    RiskEvent,
    RiskLevel,
    Side,
    TradingState,
    VenueStatus,
)
from trader.market.calendar import IST, MarketCalendar
from trader.market.instruments import OptionContract
from trader.risk.config import RiskConfig
from trader.risk.core import RiskManager

NS = 1_000_000_000


def at(year: int, month: int, day: int, hour: int = 10, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=IST).timestamp()) * NS


MON = at(2026, 1, 12)  # Monday 12 Jan 2026, 10:00 IST, a trading day
CE = OptionContract.parse("NIFTY26DEC25000CE", instrument_token=101)


def no_wall_clock() -> int:
    raise AssertionError("a test read the clock")


def classify_all(rules_: AlertRules, events: list[RiskEvent]) -> list[Alert]:
    return [a for a in (rules_.classify(e) for e in events) if a is not None]


def test_a_halt_and_a_resume_from_the_risk_manager() -> None:
    rm = RiskManager(RiskConfig(), now_ns=no_wall_clock)
    r = AlertRules(slippage_alert_bps=50)
    rm.halt("halted from Telegram", MON)
    [halted] = classify_all(r, rm.drain_events())
    assert (halted.kind, halted.severity, halted.subject) == ("halted", Severity.CRITICAL, "trading")
    assert "Trading HALTED: halted from Telegram" in halted.text
    rm.resume(MON + NS)
    [resumed] = classify_all(r, rm.drain_events())
    assert (resumed.kind, resumed.severity) == ("resumed", Severity.INFO)
    assert "ACTIVE" in resumed.text


def test_a_reconciliation_halt_is_a_mismatch_not_a_plain_halt() -> None:
    rm = RiskManager(RiskConfig(), now_ns=no_wall_clock)
    rm.halt("reconciliation: the broker holds 75 NIFTY26DEC25000CE, the journal 0", MON)
    [alert] = classify_all(AlertRules(slippage_alert_bps=50), rm.drain_events())
    assert (alert.kind, alert.severity, alert.subject) == ("reconciliation_mismatch", Severity.CRITICAL,
                                                           "reconciliation")
    assert "the broker holds 75" in alert.text and "/resume" in alert.text


def test_a_loss_limit_breach_then_a_second_limit_hit() -> None:
    rm = RiskManager(RiskConfig(max_daily_loss_pct=0.02, max_weekly_loss_pct=0.03), now_ns=no_wall_clock)
    r = AlertRules(slippage_alert_bps=50)
    rm.on_fill(CE, Side.BUY, 100, 10_000, 0, MON)
    rm.mark(CE.instrument_token, 10_000 - 2_000, MON)  # ₹2,000 down on ₹1 lakh: the daily limit
    alerts = classify_all(r, rm.drain_events())
    assert [(a.kind, a.subject, a.severity) for a in alerts][-1] == ("limit_breach", "max_daily_loss_pct",
                                                                     Severity.CRITICAL)
    assert "REDUCING_ONLY" in alerts[-1].text
    rm.mark(CE.instrument_token, 10_000 - 3_000, MON)
    [weekly] = classify_all(r, rm.drain_events())
    assert (weekly.kind, weekly.subject) == ("limit_breach", "max_weekly_loss_pct")


def test_a_risk_level_change_up_and_down() -> None:
    r = AlertRules(slippage_alert_bps=50)
    up = r.classify(RiskEvent(ts_ns=MON, state=TradingState.ACTIVE, level=RiskLevel.HIGH, reason="daily loss 80%",
                              limit="max_daily_loss_pct"))
    assert up is not None and (up.kind, up.subject, up.severity) == ("risk_level", "HIGH", Severity.WARNING)
    assert "LOW → HIGH" in up.text
    down = r.classify(RiskEvent(ts_ns=MON, state=TradingState.ACTIVE, level=RiskLevel.MEDIUM, reason="x",
                                limit="max_daily_loss_pct"))
    assert down is not None and down.severity is Severity.INFO and "down" in down.text
    assert r.classify(RiskEvent(ts_ns=MON, state=TradingState.ACTIVE, level=RiskLevel.MEDIUM, reason="x",
                                limit="reset_daily")) is None  # nothing changed


def intent(intent_id: str = "S1") -> OrderIntent:
    return OrderIntent(ts_ns=MON, intent_id=intent_id, strategy_id="ema", contract=CE, side=Side.BUY, quantity=75,
                       order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY, expected_price=10_000,
                       signal_id="SIG1", reason="ema cross")


def test_a_broker_reject_is_alerted_and_a_risk_refusal_is_not() -> None:
    r = AlertRules(slippage_alert_bps=50)
    assert r.classify(OrderRequest(ts_ns=MON, intent=intent(), tag="S1")) is None
    alert = r.classify(OrderUpdate(ts_ns=MON, intent_id="S1", order_id="240101000001", status=OrderStatus.REJECTED,
                                   reason="Insufficient funds"))
    assert alert is not None and (alert.kind, alert.subject) == ("broker_reject", "Insufficient funds")
    assert "BUY 75 NIFTY26DEC25000CE" in alert.text
    refused = OrderUpdate(ts_ns=MON, intent_id="S2", order_id="", status=OrderStatus.REJECTED,
                          reason="risk: daily loss limit", check="daily_loss")
    assert r.classify(refused) is None
    assert r.classify(OrderUpdate(ts_ns=MON, intent_id="S1", order_id="1", status=OrderStatus.COMPLETE)) is None


def fill(price: int, side: Side = Side.BUY) -> Fill:
    return Fill(ts_ns=MON, fill_id="F1", intent_id="S1", order_id="1", contract=CE, side=side, quantity=75,
                price=price, expected_price=10_000, charges=2_000)


def test_slippage_is_alerted_only_when_worse_by_the_threshold() -> None:
    r = AlertRules(slippage_alert_bps=50)
    assert r.classify(fill(10_049)) is None  # 49 bps worse
    alert = r.classify(fill(10_050))  # 50 bps worse on a buy
    assert alert is not None and (alert.kind, alert.subject) == ("slippage", "NIFTY26DEC25000CE")
    assert alert.fields["slippage_bps"] == 50.0 and "₹100.50" in alert.text
    assert r.classify(fill(9_000)) is None  # a buy 1,000 bps better: good news is no alert
    assert r.classify(fill(9_900, Side.SELL)) is not None  # a sell below expected is worse


def test_token_expired_and_other_venue_problems() -> None:
    r = AlertRules(slippage_alert_bps=50)
    expired = r.classify(VenueStatus(ts_ns=MON, ok=False, problem="token_expired", detail="403 TokenException"))
    assert expired is not None and (expired.kind, expired.severity) == ("token_expired", Severity.CRITICAL)
    assert "trader login" in expired.text
    back = r.classify(VenueStatus(ts_ns=MON, ok=True, problem="token_expired"))
    assert back is not None and back.severity is Severity.INFO
    unreachable = r.classify(VenueStatus(ts_ns=MON, ok=False, problem="broker_unreachable", detail="down 60 s"))
    assert unreachable is not None and (unreachable.kind, unreachable.severity) == ("venue", Severity.WARNING)
    assert r.classify(VenueStatus(ts_ns=MON, ok=True, problem="")) is None
    cleared = r.classify(VenueStatus(ts_ns=MON, ok=True, problem="broker_unreachable"))
    assert cleared is not None and cleared.kind == "venue"
    # A recovery is never deduplicated into its problem's alert: the outbox keys on (kind, subject).
    assert back.key != expired.key and cleared.key != unreachable.key


def test_a_pending_approval_says_how_to_approve_it() -> None:
    r = AlertRules(slippage_alert_bps=50)
    alert = r.classify(ApprovalUpdate(ts_ns=MON, intent=intent("S7"), status=ApprovalStatus.PENDING,
                                      expires_ns=MON + 120 * NS))
    assert alert is not None and alert.kind == "approval_pending" and "/approve S7" in alert.text
    assert "10:02:00 IST" in alert.text
    assert r.classify(ApprovalUpdate(ts_ns=MON, intent=intent("S7"), status=ApprovalStatus.APPROVED,
                                     expires_ns=MON)) is None


def test_feed_silence_is_told_once_and_its_return_once() -> None:
    watch = FeedWatch(60)
    assert watch.observe(MON, market_open=True, feed_age_s=59.0, since_ready_s=500) is None
    silent = watch.observe(MON, market_open=True, feed_age_s=61.0, since_ready_s=500)
    assert silent is not None and (silent.kind, silent.severity) == ("feed_silent", Severity.CRITICAL)
    assert watch.observe(MON, market_open=True, feed_age_s=120.0, since_ready_s=500) is None  # once per silence
    back = watch.observe(MON, market_open=True, feed_age_s=0.5, since_ready_s=500)
    assert back is not None and back.kind == "feed_back"
    assert watch.observe(MON, market_open=True, feed_age_s=0.5, since_ready_s=500) is None


def test_feed_silence_outside_market_hours_or_before_the_first_tick() -> None:
    watch = FeedWatch(60)
    assert watch.observe(MON, market_open=False, feed_age_s=5_000.0, since_ready_s=9_000) is None
    assert watch.observe(MON, market_open=True, feed_age_s=None, since_ready_s=30) is None
    first = watch.observe(MON, market_open=True, feed_age_s=None, since_ready_s=61)
    assert first is not None and "no tick since the start" in first.text


def test_the_session_close_is_told_once_for_a_session_the_daemon_saw_open() -> None:
    calendar = MarketCalendar()
    watch = SessionWatch(calendar)
    assert watch.observe(at(2026, 1, 12, 8, 0)) is None  # before the open: not yet seen open
    assert watch.observe(at(2026, 1, 12, 15, 29)) is None
    assert watch.observe(at(2026, 1, 12, 15, 30)) == date(2026, 1, 12)
    assert watch.observe(at(2026, 1, 12, 15, 31)) is None
    assert watch.observe(at(2026, 1, 13, 9, 0)) is None

    late = SessionWatch(calendar)  # started after the close: no summary for a session it never ran
    assert late.observe(at(2026, 1, 12, 16, 0)) is None
    jumped = SessionWatch(calendar)  # the clock jumped from inside the session to the next day
    assert jumped.observe(at(2026, 1, 12, 15, 0)) is None
    assert jumped.observe(at(2026, 1, 13, 9, 20)) == date(2026, 1, 12)


def test_the_builders() -> None:
    started = rules.started(MON, mode="paper", state=TradingState.HALTED, reason="kill switch", level=RiskLevel.LOW,
                            positions=2, auto_execution=False)
    assert started.kind == "started" and started.severity is Severity.WARNING
    assert "HALTED (kill switch)" in started.text and "2 open positions" in started.text and "semi-live" in started.text
    crash = rules.crash_restart(MON, previous_start="2026-01-12T09:00:00+05:30")
    assert crash.severity is Severity.CRITICAL and "crash" in crash.text
    eod = rules.eod_summary(MON, DayFigures(day=date(2026, 1, 12), day_pnl=-123_456, fills=4, charges=9_900,
                                            equity=99_876_544, positions=0))
    assert eod.subject == "2026-01-12" and "P&L -₹1,234.56" in eod.text and "4 fills" in eod.text
    assert eod.fields["charges_inr"] == 99.0
    stopped = rules.stopped(MON, reason="SIGTERM", day_pnl=0, positions=1)
    assert "SIGTERM" in stopped.text and "1 open position " in stopped.text


async def test_the_actor_keeps_each_days_figures_and_hands_alerts_to_its_sink() -> None:
    got: list[Alert] = []
    actor = AlertActor(EventBus(), AlertRules(slippage_alert_bps=50), got.append)
    monday = date(2026, 1, 12).toordinal()
    await actor.handle(PositionSnapshot(ts_ns=MON, positions=(), realized=0, unrealized=0, charges=0,
                                        equity=99_000_00, day_pnl=-1_000_00, session_day=monday))
    await actor.handle(PositionSnapshot(ts_ns=MON + NS, positions=(), realized=0, unrealized=0, charges=0,
                                        equity=99_500_00, day_pnl=-500_00, session_day=monday))
    await actor.handle(fill(10_100))
    await actor.handle(fill(10_000))
    await actor.handle(PositionSnapshot(ts_ns=at(2026, 1, 13), positions=(), realized=0, unrealized=0, charges=0,
                                        equity=99_500_00, day_pnl=0, session_day=monday + 1))
    assert actor.day_books[monday] == (-500_00, 99_500_00, 0)  # the day's last snapshot, after the next day began
    assert actor.day_fills[date(2026, 1, 12)] == (2, 4_000)
    assert [a.kind for a in got] == ["slippage"] and actor.alerts == 1


def test_slippage_of_a_few_rupees_on_a_cheap_option_is_no_alert() -> None:
    r = AlertRules(slippage_alert_bps=50, slippage_alert_min_paise=2_500)
    cheap = Fill(ts_ns=MON, fill_id="F2", intent_id="S2", order_id="2", contract=CE, side=Side.BUY, quantity=65,
                 price=505, expected_price=500, charges=2_000)  # one tick on a ₹5 option: 100 bps, ₹3.25 in all
    assert cheap.slippage_bps == 100 and r.classify(cheap) is None
    assert r.classify(fill(10_050)) is not None  # 50 bps on ₹100 × 75 = ₹37.50 worse: alerted
