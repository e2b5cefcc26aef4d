"""The alerts of one running daemon: the actor, one outbox per destination, the Telegram command loop, and a
periodic check (feed silence during market hours by ``app.health``, the end-of-day summary by event time).

Built only in paper and live mode with at least one destination configured (``AlertRuntime.build``). ``start`` runs
once the reconciliation gate has passed (the "started" alert, and "restarted after a crash" when the journal's run
marker says the previous run never stopped cleanly); ``begin_stop``/``finish_stop`` send "stopped" and flush the
outboxes within a bounded deadline while the rest of the shutdown goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

from trader.actors.alerts import AlertActor
from trader.alerts import rules
from trader.alerts.outbox import Outbox
from trader.alerts.rules import Alert, AlertRules, DayFigures, FeedWatch, SessionWatch
from trader.alerts.telegram import TelegramApi, TelegramCommands, TelegramDestination
from trader.alerts.webhook import WebhookDestination
from trader.control.service import ControlService
from trader.logging import get_logger
from trader.market.calendar import ist_text
from trader.money import to_paise
from trader.store.journal import JournalError

if TYPE_CHECKING:
    from trader.app import App

log = get_logger("trader.alerts")

RUN_STATE = "alerts_run"  # the journal's run marker: {"status": "running" | "stopped", "started": IST text}
CHECK_EVERY_S = 1.0
MAX_STOP_DEADLINE_S = 1.5


class AlertRuntime:
    def __init__(self, app: App, *, seed: int | None = None) -> None:
        self.app = app
        settings = app.settings.alerts
        self.settings = settings
        seed = app.settings.sim.seed if seed is None else seed
        self.outboxes: list[Outbox] = []
        self.telegram: TelegramApi | None = None
        self.webhook: WebhookDestination | None = None
        self.commands: TelegramCommands | None = None
        if settings.telegram_enabled:
            assert settings.telegram_chat_id is not None
            self.telegram = TelegramApi(settings)
            self.outboxes.append(Outbox(TelegramDestination(self.telegram, settings.telegram_chat_id,
                                                            settings.timeout_seconds), settings, seed=seed))
        if settings.webhook_url:
            self.webhook = WebhookDestination(settings)
            self.outboxes.append(Outbox(self.webhook, settings, seed=seed + 1))
        self.rules = AlertRules(slippage_alert_bps=settings.slippage_alert_bps,
                                slippage_alert_min_paise=to_paise(settings.slippage_alert_min_inr))
        self.actor = AlertActor(app.bus, self.rules, self.publish)
        self.feed_watch = FeedWatch(settings.feed_silent_seconds)
        self.session_watch = SessionWatch(app.calendar)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self.sent: list[Alert] = []  # every alert handed to the outboxes, newest last (bounded)

    @classmethod
    def build(cls, app: App) -> AlertRuntime | None:
        """None in a backtest (no journal, no operator) or with no destination configured."""
        settings = app.settings.alerts
        if app.journal is None or app.settings.mode == "backtest":
            return None
        if not settings.telegram_enabled and not settings.webhook_url:
            return None
        return cls(app)

    def publish(self, alert: Alert) -> None:
        """Hand one alert to every outbox (synchronous, O(1)): the actor's sink and the runtime's own."""
        log.info("alert", kind=alert.kind, severity=alert.severity.value, subject=alert.subject, text=alert.text)
        self.sent.append(alert)
        if len(self.sent) > 200:
            del self.sent[:100]
        for outbox in self.outboxes:
            outbox.put(alert)

    # -- start ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """After the gate passed: the run marker, the first alerts, and the tasks. Never raises."""
        app = self.app
        now = app.clock.now_ns()
        for outbox in self.outboxes:
            outbox.start()
        previous = self._marker()
        if previous is not None and previous.get("status") == "running":
            self.publish(rules.crash_restart(now, previous_start=str(previous.get("started", "?"))))
        self._save_marker("running")
        self.session_watch.observe(now)  # a session open at the start is summed up at its close
        self.rules.state, self.rules.level = app.risk.state, app.risk.level
        self.publish(rules.started(now, mode=app.settings.mode, state=app.risk.state,
                                   reason=app.risk.manager.state_reason, level=app.risk.level,
                                   positions=len(app.portfolio.book.open_positions()),
                                   auto_execution=app.strategy.auto_execution))
        if self.telegram is not None and self.settings.telegram_commands:
            assert self.settings.telegram_chat_id is not None
            self.commands = TelegramCommands(self.telegram, self.settings.telegram_chat_id,
                                             ControlService(app, source="telegram"),
                                             timeout_s=self.settings.timeout_seconds, seed=app.settings.sim.seed)
            self._tasks.append(asyncio.create_task(self.commands.run(), name="alerts:telegram-commands"))
        self._tasks.append(asyncio.create_task(self._checks(), name="alerts:checks"))

    def _marker(self) -> dict[str, Any] | None:
        journal = self.app.journal
        if journal is None:
            return None
        try:
            return journal.load_state(RUN_STATE)
        except JournalError as exc:
            log.warning("alerts_marker_unreadable", error=str(exc))
            return None

    def _save_marker(self, status: str) -> None:
        journal = self.app.journal
        if journal is None:
            return
        try:
            journal.save_state(RUN_STATE, {"status": status, "started": ist_text(self.app.wall_started_ns),
                                           "pid": os.getpid()}, self.app.clock.now_ns())
        except JournalError as exc:
            log.warning("alerts_marker_unwritable", error=str(exc))

    # -- the periodic check --------------------------------------------------------------------------------------
    async def _checks(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            try:
                self.check()
            except Exception:  # a bug here must not end the checks, let alone the daemon
                log.exception("alerts_check_failed")

    def check(self, now_wall_ns: int | None = None) -> None:
        app = self.app
        now = app.clock.now_ns()
        inputs = app.health.inputs(now_wall_ns)
        if inputs.ready and not inputs.stopping:
            alert = self.feed_watch.observe(now, market_open=inputs.market_open, feed_age_s=inputs.feed_age_s,
                                            since_ready_s=inputs.since_ready_s)
            if alert is not None:
                self.publish(alert)
        self._session_check()

    def _session_check(self) -> None:
        """The end-of-day summary, once a session the daemon saw open has closed (by event time)."""
        app = self.app
        now = app.clock.now_ns()
        day = self.session_watch.observe(now)
        if day is not None:
            fills, charges = self.actor.day_fills.get(day, (0, 0))
            portfolio = app.portfolio
            # The portfolio's last snapshot of that day; without one (nothing moved), its books now.
            day_pnl, equity, positions = self.actor.day_books.get(
                day.toordinal(), (portfolio.day_pnl, portfolio.equity, len(portfolio.book.open_positions())))
            self.publish(rules.eod_summary(now, DayFigures(day=day, day_pnl=day_pnl, fills=fills, charges=charges,
                                                           equity=equity, positions=positions)))

    # -- stop ----------------------------------------------------------------------------------------------------
    def stop_deadline_s(self) -> float:
        return min(MAX_STOP_DEADLINE_S, self.app.settings.shutdown_timeout_seconds * 0.15)

    def begin_stop(self, reason: str) -> None:
        """At the start of the shutdown (the journal still open): the "stopped" alert and the clean-stop marker; the
        outboxes then flush in the background, within ``stop_deadline_s``, while the shutdown goes on."""
        if self._closing is not None:
            return
        for task in self._tasks:
            task.cancel()
        app = self.app
        try:  # a close passed since the last periodic check (a stop at 15:30): its summary goes before "stopped"
            self._session_check()
        except Exception:
            log.exception("alerts_check_failed")
        self.publish(rules.stopped(app.clock.now_ns(), reason=reason, day_pnl=app.portfolio.day_pnl,
                                   positions=len(app.portfolio.book.open_positions())))
        self._save_marker("stopped")
        self._closing = asyncio.create_task(self._close(self.stop_deadline_s()), name="alerts:close")

    async def _close(self, deadline_s: float) -> None:
        started = time.monotonic()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        left = max(deadline_s - (time.monotonic() - started), 0.0)
        await asyncio.gather(*(outbox.close(left) for outbox in self.outboxes), return_exceptions=True)
        for closer in (self.telegram, self.webhook):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer.close()

    async def finish_stop(self) -> None:
        """Wait for the flush begun by ``begin_stop`` (bounded by its deadline)."""
        if self._closing is None:
            self.begin_stop("stopped")
        assert self._closing is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._closing), timeout=self.stop_deadline_s() + 0.5)
        except TimeoutError:
            self._closing.cancel()
            log.error("alerts_close_overran", deadline_s=self.stop_deadline_s())
