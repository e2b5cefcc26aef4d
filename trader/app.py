"""Wiring: builds the adapters for the mode, the actors and the bus; runs them; stops them gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING

from trader import builders
from trader.actors.base import Actor, Supervisor
from trader.actors.execution import ExecutionActor
from trader.actors.feed import FeedActor
from trader.actors.ledger import LedgerActor
from trader.actors.metrics import MetricsActor, latency_scale
from trader.actors.portfolio import PerformanceSummary, PortfolioActor, summary_fields
from trader.actors.risk import STATE_NAME as RISK_STATE_NAME
from trader.actors.risk import RiskGateActor
from trader.actors.run_recorder import RunRecorder, code_version, data_source_for, public_settings, strategy_runs
from trader.actors.strategy import StrategyActor
from trader.adapters.paper import PaperBroker
from trader.adapters.ports import Broker, MarketData, Venue, VenueMarket, VenueSetupError, VenueUnreachableError
from trader.adapters.synthetic import SyntheticMarket
from trader.alerts.runtime import AlertRuntime
from trader.bus import EventBus
from trader.clock import Clock, LiveClock, SimClock
from trader.config import ConfigError, Settings
from trader.control.metrics import app_registry
from trader.control.runtime import ControlRuntime
from trader.events import JOURNAL_PROBLEM, Command, CommandKind, FeedEnded, FeedStatus, Heartbeat, VenueStatus
from trader.gate import expire_stale_approvals, restore_from_gate, run_gate
from trader.health import HealthProbe
from trader.ids import IdFactory
from trader.logging import get_logger
from trader.loop_monitor import LoopMonitor
from trader.market.calendar import ist_date, ist_ns, ist_text
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import resolve_underlying
from trader.money import to_paise, to_rupees
from trader.runs.model import DataSource, RunManifest
from trader.runs.store import new_run_id
from trader.store.journal import JournalError, JournalWriteError
from trader.store.orders import OrderJournal
from trader.strategies.adopted import MANUAL_STRATEGY_ID
from trader.strategies.base import StrategyContext
from trader.systemd import ServiceNotifier

if TYPE_CHECKING:
    from trader.actors.tick_recorder import TickRecorder
    from trader.adapters.replay.market import ReplayMarket
    from trader.adapters.replay.sources import ReplayConfig
    from trader.runs.model import DataSource

log = get_logger("trader.app")


@dataclass(frozen=True, slots=True)
class RunResult:
    summary: PerformanceSummary
    counters: dict[str, int]


class App:
    def __init__(self, settings: Settings, *, start_ns: int | None = None, replay: ReplayConfig | None = None,
                 data_source: DataSource | None = None) -> None:
        self.settings = settings
        builders.check_mode(settings)
        wall_now = LiveClock().now_ns()
        self.wall_started_ns = wall_now
        self._journal_failures: set[str] = set()
        self.venue_market = builders.uses_venue_market(settings)
        # In a year without holiday data every weekday trades; on a real market that warns once a day.
        self.calendar = settings.market_calendar(warn_clock=self._now_ns if self.venue_market else None)
        self.journal = builders.open_journal(settings)
        self._replaying = replay is not None
        if replay is not None and start_ns is None and settings.sim.start is None:
            from trader.adapters.replay.sources import first_tick_ns  # noqa: PLC0415 - pyarrow only when replaying

            try:
                start_ns = first_tick_ns(replay)  # event time starts at the data's first tick, not today
            except ValueError as exc:  # ReplaySetupError, ReplayDataError: the message names the file
                raise ConfigError([f"replay error: {exc}"]) from None
        self.clock: Clock = builders.build_clock(settings, self._market_start(wall_now, start_ns))
        self.bus = EventBus()
        self.instruments = InstrumentMaster()
        self.ids = IdFactory(wall_now)
        self.supervisor = Supervisor()
        self.venue: Venue | None = builders.build_venue(settings, self.clock)  # Kite or Fyers, on a live venue's market
        self.broker: Broker = builders.build_broker(settings, self.clock, self.calendar, self.venue)
        self.underlyings = [resolve_underlying(symbol) for symbol in settings.symbols]
        strategies = builders.build_strategies(settings, self.underlyings)
        # Unpaced runs deliver every tick (reproducible results, no conflation bookkeeping); paced consumers that
        # fall behind get the newest tick per instrument instead.
        lossless = not self.clock.paced
        self.lossless = lossless
        self.portfolio = PortfolioActor(self.bus, to_paise(settings.risk.initial_capital),
                                        conflate_ticks=not lossless)
        risk_manager, self._risk_restored = builders.build_risk_manager(settings, self.journal, self.calendar,
                                                                         self.clock)
        self.risk = RiskGateActor(self.bus, risk_manager, self.clock, self.ids, broker=self.broker,
                                  journal=self.journal, conflate_ticks=not lossless)
        if self._risk_restored and not self.venue_market:
            self._judge_risk_state()  # the built-in market's clock tells event time from the start
        self.orders = OrderJournal(self.journal) if self.journal is not None else None
        self._risk_state_saved = self.journal is not None and self.journal.load_state(RISK_STATE_NAME) is not None
        if isinstance(self.broker, PaperBroker) and self.journal is not None:
            builders.restore_paper_book(self.broker, self.journal, self._journal_failed)
        self.execution = ExecutionActor(self.bus, self.broker, self.clock,
                                        max_orders_per_second=settings.risk.max_orders_per_second,
                                        conflate_ticks=not lossless, journal=self.orders)
        self.strategy = StrategyActor(self.bus, strategies, StrategyContext(self.instruments, self.ids,
                                                                          risk_budget=builders.risk_budget(settings)),
                                      auto_execution=settings.effective_auto_execution, conflate_ticks=not lossless,
                                      save_state=self._save_strategy_state if self.journal is not None else None,
                                      keeper=builders.build_adopted_keeper(settings), journal=self.orders,
                                      approval_expiry_s=settings.control.approval_expiry_seconds,
                                      max_quote_age_s=settings.control.max_quote_age_seconds)
        self.feeds: list[FeedActor] = []
        self.venue_feed: VenueMarket | None = None
        self.replay: ReplayMarket | None = None
        if replay is not None:  # recorded tick files instead of the built-in market (backtest only)
            if settings.mode != "backtest":
                raise ConfigError([f"tick files ({replay.data}) replay in backtest mode only; add --mode backtest"])
            assert isinstance(self.clock, SimClock)
            from trader.adapters.replay.market import ReplayMarket  # noqa: PLC0415 - as above
            from trader.adapters.replay.sources import ReplaySetupError  # noqa: PLC0415 - as above

            try:
                self.replay = ReplayMarket(self.clock, self.calendar, replay)
            except ReplaySetupError as exc:
                raise ConfigError([f"replay error: {exc}"]) from None
            market: MarketData = self.replay
            self.feeds = [FeedActor(self.bus, market, self.instruments, self.clock, lossless=lossless)]
        elif not self.venue_market:
            assert isinstance(self.clock, SimClock)
            sim_clock = self.clock
            self.feeds = [
                FeedActor(self.bus, SyntheticMarket(sim_clock, self.calendar, spec,
                                                    builders.synthetic_config(settings, spec)),
                          self.instruments, self.clock, lossless=lossless,
                          name="feed" if len(self.underlyings) == 1 else f"feed-{spec.name}")
                for spec in self.underlyings
            ]
        self.ledger = LedgerActor(self.bus)  # the operator's read model (the control API)
        self.metrics = MetricsActor(self.bus, scale=latency_scale(self.clock))  # counts for GET /metrics
        self.consumers: list[Actor] = [self.portfolio, self.risk, self.execution, self.strategy, self.ledger,
                                       self.metrics]
        # The run folder (data_dir/runs/<run id>/): a record of signals, orders, fills and equity, never a gate.
        # What the market data is (trader/runs/model.py), for the run's record: as the caller says (a backtest knows
        # candles or modelled options), else as the settings say.
        source = data_source or data_source_for(settings, replay=replay, venue_market=self.venue_market)
        if data_source is None and self.replay is not None:  # what the files turned out to hold: candles, index-only
            try:
                source = self.replay.data_source(source)
            except ValueError as exc:  # ReplaySetupError, ReplayDataError: the message names the file
                raise ConfigError([f"replay error: {exc}"]) from None
        self.data_source: DataSource = source
        self.run_recorder = RunRecorder(self.bus, settings.runs_dir) if settings.runs.enabled else None
        self.run_dir: Path | None = None
        if self.run_recorder is not None:
            self.consumers.append(self.run_recorder)
        # Alerts (paper and live, with a destination configured): an actor that only enqueues, outboxes that send.
        self.alerts = AlertRuntime.build(self)
        if self.alerts is not None:
            self.consumers.append(self.alerts.actor)
        self.tick_recorder: TickRecorder | None = None  # every tick received, to <data_dir>/ticks/<mode> (docs/data.md)
        if settings.records_ticks:
            from trader.actors.tick_recorder import TickRecorder  # noqa: PLC0415 - pyarrow only when recording

            rec = settings.recorder
            self.tick_recorder = TickRecorder(self.bus, self.instruments, settings.data_dir / "ticks" / settings.mode,
                                         batch_rows=rec.batch_rows, batch_seconds=rec.batch_seconds,
                                         max_batches=rec.max_batches)
            self.consumers.append(self.tick_recorder)
        self.stop_reason = ""
        self.control: ControlRuntime | None = None
        self.control_url = ""
        # Health (trader/health.py): the loop monitor runs from the start of run(); ready_wall_ns is the wall time the
        # reconciliation gate passed (0 before), which /healthz, the systemd READY=1 and the watchdog wait for.
        self.loop_monitor = LoopMonitor()
        self.ready_wall_ns = 0
        self.health = HealthProbe(self)
        self.service = ServiceNotifier(self)  # systemd: READY=1, WATCHDOG=1, STATUS=, STOPPING=1 (trader/systemd.py)
        self.metrics_registry = app_registry(self)  # this App's own (never prometheus_client's global REGISTRY)
        self._stop = asyncio.Event()
        self._feeds_ended = 0
        self.feed_status = ""  # the live feed's last FeedStatus: the watchdog spares a feed that is reconnecting
        self.bus.tap(self._watch)

    def _judge_risk_state(self) -> None:
        assert self.journal is not None
        builders.judge_restored_risk_state(self.settings, self.risk.manager, self.journal.path, self.clock.now_ns())

    def _now_ns(self) -> int:
        return self.clock.now_ns()

    def _journal_failed(self, what: str, error: Exception) -> None:
        """A journal write failed outside an actor (the paper broker's book): halt entries, say which file (once for
        each kind of write: a heartbeat a second must not bury the log)."""
        if what in self._journal_failures:
            return
        self._journal_failures.add(what)
        log.error("journal_write_failed", what=what, error=str(error),
                  fix="free disk space or make the data dir writable, then restart the daemon")
        self.bus.publish(VenueStatus(ts_ns=self.clock.now_ns(), ok=False, problem=JOURNAL_PROBLEM,
                                     detail=str(error)))

    async def _pass_gate(self) -> None:
        """Reconcile the journal with the broker before any actor starts; restore the books from what it found."""
        if self.orders is None:
            return  # a backtest starts fresh every time
        try:
            result = await run_gate(self.broker, self.orders, self.instruments, self.clock.now_ns(),
                                    intraday=self.settings.mode == "live" and self.settings.intraday_product)
            expire_stale_approvals(self.orders, self.clock.now_ns())
        except JournalError as exc:
            raise ConfigError([f"config error: data_dir: {exc}"]) from None
        restore_from_gate(result, self.portfolio, self.risk, self.execution, broker=self.broker,
                          now_ns=self.clock.now_ns(), replay_windows=not self._risk_state_saved)
        today = ist_ns(ist_date(self.clock.now_ns()), time(0))
        self.ledger.restore(self.orders.intents_since(today), result.fills)  # `trader orders` keeps the day's
        journal = self.orders.journal
        saved = {sid: journal.load_state(name) for sid, name in self.strategy.state_names().items()}
        still_open = [request.intent for request, *_ in [*result.adopted, *result.pending]]
        manual = {i.intent_id for i in still_open if i.strategy_id == MANUAL_STRATEGY_ID}
        self.strategy.restore(saved, result.positions, open_intent_ids={i.intent_id for i in still_open},
                              booked_fill_ids={fill.fill_id for fill in result.fills}, manual_intent_ids=manual)
        if self.venue_feed is not None:
            self.venue_feed.add_tokens(p.contract.instrument_token for p in result.positions)

    def _save_strategy_state(self, name: str, document: dict[str, object]) -> None:
        if self.journal is not None:
            self.journal.save_state(name, document, self.clock.now_ns())

    def _market_start(self, wall_now: int, override_ns: int | None) -> int:
        """Event time at start: the built-in market starts inside a session, and says when it had to jump there."""
        settings = self.settings
        start = builders.start_ns(settings, wall_now, override_ns)
        if self.venue_market or self._replaying:
            return start
        if settings.mode == "paper" and override_ns is None and settings.sim.start is None:
            start = builders.built_in_market_start(settings, self.journal, self.calendar, start)
        session_open = self.calendar.next_session_open(start)
        if session_open > start:
            log.info("market_closed_jump", from_time=ist_text(start), to_time=ist_text(session_open),
                     why="the built-in market trades only in NSE session hours, so its clock starts at the next "
                         "session open; pass --start to pick another time")
            start = session_open
        return start

    async def _connect_venue_market(self) -> None:
        """Load the venue's instrument master, pick the chains around spot, and subscribe its market data to them."""
        venue = self.venue
        assert venue is not None
        try:
            feed = await venue.connect_market(underlyings=self.underlyings, instruments=self.instruments,
                                              clock=self.clock, calendar=self.calendar, publish=self.bus.publish,
                                              broker=self.broker)
        except VenueUnreachableError as exc:
            raise ConfigError([f"start-up error: {exc}"]) from None
        except VenueSetupError as exc:
            raise ConfigError([f"config error: symbols: {exc}"]) from None
        self.venue_feed = feed
        self.feeds = [FeedActor(self.bus, feed, self.instruments, self.clock, lossless=False)]
        log.info("venue_market_connected", **{"venue": venue.name, **venue.describe()},
                 instruments=len(self.instruments.registered()))

    def _watch(self, event: object) -> None:
        if type(event) is FeedEnded:
            self._feeds_ended += 1
            if self._feeds_ended >= len(self.feeds):
                self._stop.set()
        elif type(event) is FeedStatus:
            assert isinstance(event, FeedStatus)
            self.feed_status = event.status

    @property
    def stopping(self) -> bool:
        """A stop was requested (signal, reader gone, end of data): no new order may start from outside."""
        return self._stop.is_set()

    def request_stop(self, reason: str = "requested") -> None:
        if not self._stop.is_set():
            log.info("stop_requested", reason=reason)
            self.stop_reason = reason
            self._stop.set()

    def counters(self) -> dict[str, int]:
        return {
            "ticks_in": sum(f.ticks_in for f in self.feeds),
            "ticks_invalid": sum(f.invalid for f in self.feeds),
            "ticks_stale": sum(f.stale for f in self.feeds),
            "conflated": self.bus.conflated,
            "signals": self.strategy.signals,
            "intents": self.strategy.intents,
            "approved": self.risk.approved,
            "risk_rejected": self.risk.rejected,
            "orders": self.execution.orders_placed,
            "order_rejected": self.execution.orders_rejected,
            "order_retries": self.execution.retries,
            "open_orders": self.execution.open_orders,
            "fills": self.portfolio.fills,
            "actor_restarts": sum(self.supervisor.restarts.values()),
            "dead_letters": sum(a.dead_letters for a in [*self.consumers, *self.feeds]),
            "max_queue": max((len(i) for i in self.bus.inboxes), default=0),
        }

    def _heartbeat(self, *, final: bool = False) -> None:
        counters = self.counters()
        now = self.clock.now_ns()
        lag_ms = max(now - self.strategy.last_tick_ts_ns, 0) // 1_000_000 if self.strategy.last_tick_ts_ns else 0
        log.info("heartbeat", **counters, lag_ms=lag_ms, state=self.risk.state.value, risk_level=self.risk.level.value,
                 equity_inr=to_rupees(self.portfolio.equity), day_pnl_inr=to_rupees(self.portfolio.day_pnl),
                 sim_time=ist_text(now))
        self._save_market_time(now, clean=final)
        self.bus.publish(Heartbeat(ts_ns=now, counters=counters))

    def _save_market_time(self, now: int, *, clean: bool) -> None:
        """Paper on the built-in market: remember the simulated time, so the next run starts on a later session
        after a clean stop, and goes on with the same session after a crash."""
        if self.journal is not None and not self.venue_market and self.settings.mode == "paper":
            try:
                self.journal.save_state(builders.PAPER_MARKET_STATE, {"last_event_ns": now, "clean_stop": clean},
                                        now)
            except JournalWriteError as exc:
                self._journal_failed("paper market time", exc)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            self._heartbeat()

    async def run(self, *, install_signal_handlers: bool = True) -> RunResult:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_stop, sig.name)
        settings = self.settings
        wall_started = self.wall_started_ns
        self.loop_monitor.start()
        try:
            self.service.starting("connecting to the broker, reconciling the journal with it")
            if self.venue is not None:
                await self._connect_venue_market()  # sets the exchange clock from the venue's quote timestamps
                if self._risk_restored:
                    self._judge_risk_state()
            log.info("daemon_started", mode=settings.mode, symbols=settings.symbols,
                     strategies=settings.strategies, auto_execution=settings.effective_auto_execution,
                     speed=self.clock.speed if isinstance(self.clock, SimClock) else 1.0,
                     session_time=ist_text(self.clock.now_ns()),
                     wall_time=ist_text(LiveClock().now_ns()),
                     capital_inr=settings.risk.initial_capital,
                     confidence_cutoff=settings.strategy.confidence_cutoff)
            self.control = ControlRuntime.for_app(self)  # a token file that cannot be used stops the start here
            await self._pass_gate()
            self.ready_wall_ns = LiveClock().now_ns()
            log.info("trading_ready", state=self.risk.state.value, reason=self.risk.manager.state_reason,
                     elapsed_ms=(self.ready_wall_ns - wall_started) // 1_000_000)
            if self.control is not None:
                self.control_url = await self.control.start()
        except BaseException:
            await self.service.close()
            await self.loop_monitor.stop()
            await self._close_resources()
            raise
        if self.alerts is not None:
            self.alerts.start()  # the "started" alert; sending happens in the outboxes' own tasks
        if self.run_recorder is not None:
            self.run_dir = self.run_recorder.begin(self._run_manifest())
        for actor in self.consumers:
            self.supervisor.start(actor)
        for feed in self.feeds:
            self.supervisor.start(feed)
        heartbeat = asyncio.create_task(self._heartbeats(), name="heartbeat")
        self.service.ready()  # trading ready and the control API (/healthz) listening
        try:
            await self._stop.wait()
        finally:
            await self.service.stopping()
            if self.control is not None:
                await self.control.stop()  # no operator request reaches actors that are stopping
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            result = await self._shutdown()
            await self.service.close()
            await self.loop_monitor.stop()
            if install_signal_handlers:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        if self.replay is not None and self.replay.error:  # the run stopped at bad data: say where, exit non-zero
            raise ConfigError([f"replay error: {self.replay.error}"])
        return result

    def _run_manifest(self) -> RunManifest:
        settings = self.settings
        started = self.clock.now_ns()
        venue = ("replay" if self.replay is not None else self.venue.name if self.venue is not None
                 else "synthetic")
        if isinstance(self.broker, PaperBroker):
            fill_model = (f"paper: the touch + {settings.paper.slippage_ticks} adverse tick(s), latency "
                          f"{settings.paper.latency_ms} ms, displayed quantity only (trader/adapters/paper.py)")
        else:
            fill_model = "broker: the exchange's fills"
        return RunManifest(run_id=new_run_id(settings.mode, started), mode=settings.mode, status="running",
                           initial_capital=to_paise(settings.risk.initial_capital), started_ns=started,
                           wall_started_ns=self.wall_started_ns, venue=venue, fill_model=fill_model,
                           strategies=strategy_runs(settings, self.underlyings),
                           underlyings=tuple(spec.name for spec in self.underlyings), data=self.data_source,
                           settings=public_settings(settings), code_version=code_version())

    async def _finish_run(self) -> None:
        if self.run_recorder is None:
            return
        now = self.clock.now_ns()
        failed = self.replay is not None and bool(self.replay.error)
        reason = f"replay error: {self.replay.error}" if self.replay is not None and failed else "end of data"
        await self.run_recorder.finish(ended_ns=now, wall_ended_ns=LiveClock().now_ns(),
                                   final=self.portfolio.snapshot(now), stop_reason=self.stop_reason or reason,
                                   status="failed" if failed else "complete")

    async def _close_resources(self) -> None:
        if self.venue is not None:
            await self.venue.close()
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    async def _drain(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self.bus.wait_idle(), timeout=timeout_s)
        except TimeoutError:
            log.error("shutdown_drain_timeout", pending={i.name: len(i) for i in self.bus.inboxes})

    async def _shutdown(self) -> RunResult:
        """No new intents, let in-flight orders finish, stop the feeds, log the summary.

        Orders settle before the feeds stop: with Kite the ticker is also the order channel, and a fill of an order
        still being placed would otherwise never reach the portfolio. Whatever it missed is read back from the
        broker's order book before the feeds go.
        """
        # Shares of the shutdown budget (they add up to less than the whole: the rest is the summary and slack).
        budget = self.settings.shutdown_timeout_seconds
        if self.alerts is not None:  # "stopped" flushes alongside the rest, within its own deadline (≤ 1.5 s)
            self.alerts.begin_stop(self.stop_reason or "end of data")
        self.bus.publish(Command(ts_ns=self.clock.now_ns(), kind=CommandKind.STOP_ENTRIES, source="daemon",
                                 reason="shutting down"))
        try:
            await asyncio.wait_for(self.execution.settle(), timeout=budget * 0.4)
        except TimeoutError:
            log.error("shutdown_orders_still_in_flight", placements=len(self.execution.placements))
        try:
            await asyncio.wait_for(self.broker.resync(), timeout=budget * 0.15)
        except Exception as exc:
            log.warning("shutdown_resync_failed", error=repr(exc))
        await self.supervisor.stop([feed.name for feed in self.feeds])
        for feed in self.feeds:
            await feed.market.close()
        await self._drain(budget * 0.1)
        await self.execution.close(budget_s=budget * 0.2)
        # Orders adopted or refused at close publish their updates and fills: let the portfolio and the risk gate
        # (and its journal) see them before the actors stop.
        await self._drain(budget * 0.1)
        await self.supervisor.stop()
        if self.tick_recorder is not None:  # the last batch, and each day written compacted to one file
            await self.tick_recorder.close(timeout_s=budget * 0.3)
        await self._finish_run()
        self._heartbeat(final=True)  # the last counters, and the simulated time saved before the journal closes
        await self._close_resources()
        if self.alerts is not None:
            await self.alerts.finish_stop()
        summary = self.portfolio.summary()
        counters = self.counters()
        log.info("summary", **summary_fields(summary),
                 state=self.risk.state.value, **{f"count_{k}": v for k, v in counters.items()})
        return RunResult(summary=summary, counters=counters)

