"""Wiring: builds the adapters for the mode, the actors and the bus; runs them; stops them gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from trader.actors.base import Actor, Supervisor
from trader.actors.execution import ExecutionActor
from trader.actors.feed import FeedActor
from trader.actors.portfolio import PerformanceSummary, PortfolioActor
from trader.actors.risk import STATE_NAME as RISK_STATE_NAME
from trader.actors.risk import RiskGateActor
from trader.actors.strategy import StrategyActor
from trader.adapters.kite.orders import OrderTracker
from trader.adapters.kite.rest import KiteBroker, KiteRestClient
from trader.adapters.kite.ticker import KiteTicker
from trader.adapters.paper import PaperBroker, PaperBrokerConfig
from trader.adapters.ports import Broker
from trader.adapters.synthetic import SyntheticConfig, SyntheticMarket
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, Clock, ExchangeClock, LiveClock, SimClock
from trader.config import ConfigError, Settings
from trader.events import Command, CommandKind, FeedEnded, Heartbeat
from trader.ids import IdFactory
from trader.logging import get_logger
from trader.market.calendar import IST, ist_date
from trader.market.instruments import IndexInstrument, InstrumentMaster, UnderlyingSpec, resolve_underlying
from trader.risk.core import RiskManager
from trader.store.journal import Journal, JournalError
from trader.strategies.base import Strategy, StrategyContext
from trader.strategies.ema_crossover import EmaCrossoverEnhanced, EmaCrossoverParams

log = get_logger("trader.app")

# Typical index levels, only to start the built-in market somewhere realistic.
_SYNTHETIC_SPOT = {"NIFTY": 26_000.0, "BANKNIFTY": 59_000.0, "SENSEX": 85_000.0, "FINNIFTY": 27_500.0,
                   "MIDCPNIFTY": 13_500.0, "NIFTYNXT50": 70_000.0}


def rupees_to_paise(value: float) -> int:
    return round(value * 100)


def build_strategy(name: str, settings: Settings, underlying: UnderlyingSpec, strategy_id: str) -> Strategy:
    if name == "ema_crossover_enhanced":
        s = settings.strategy
        params = EmaCrossoverParams(
            underlying=underlying.name, fast=s.fast, slow=s.slow, bar_seconds=s.bar_seconds,
            confirm_bars=s.confirm_bars, confidence_cutoff=s.confidence_cutoff, lots=s.lots,
            stop_loss_pct=s.stop_loss_pct, target_pct=s.target_pct, market_protection=s.market_protection,
            max_premium_at_risk=rupees_to_paise(settings.risk.initial_capital * settings.risk.max_risk_per_trade_pct),
            max_strikes_otm=s.max_strikes_otm,
            first_entry_time=s.first_entry_time, last_entry_time=s.last_entry_time, exit_time=s.exit_time)
        return EmaCrossoverEnhanced(params, strategy_id=strategy_id)
    raise ConfigError([f"config error: strategies: unknown strategy {name!r}"])


@dataclass(frozen=True, slots=True)
class RunResult:
    summary: PerformanceSummary
    counters: dict[str, int]


class App:
    def __init__(self, settings: Settings, *, start_ns: int | None = None) -> None:
        self.settings = settings
        self._check_mode(settings)
        wall_now = LiveClock().now_ns()
        sim_start = settings.sim.start
        start = start_ns if start_ns is not None else (
            int(sim_start.timestamp() * NS_PER_SECOND) if sim_start is not None else wall_now)
        speed = 0.0 if settings.mode == "backtest" else settings.sim.speed
        # Kite market data (live, or paper with credentials) runs on wall time; the built-in market on its own.
        self.kite_market = settings.mode == "live" or (settings.mode == "paper" and settings.has_kite_credentials)
        self.clock: Clock = ExchangeClock() if self.kite_market else SimClock(start, speed=speed)
        self.bus = EventBus()
        self.instruments = InstrumentMaster()
        # In a year without holiday data every weekday trades; on a real market that warns once a day.
        self.calendar = settings.market_calendar(warn_clock=self.clock.now_ns if self.kite_market else None)
        self.ids = IdFactory(wall_now)
        self.supervisor = Supervisor()
        self.kite: KiteRestClient | None = None
        if self.kite_market:
            self.kite = KiteRestClient(settings.kite.api_key, settings.kite_access_token(),
                                       root=settings.kite_api_root, timeout_s=settings.kite_timeout_seconds)
        self.broker: Broker
        if settings.mode == "live":
            assert self.kite is not None
            self.broker = KiteBroker(self.kite, product=settings.kite_product, tracker=OrderTracker(self.clock))
        else:
            self.broker = PaperBroker(self.clock, PaperBrokerConfig(latency_ms=settings.paper.latency_ms,
                                                                    slippage_ticks=settings.paper.slippage_ticks),
                                      self.calendar, capital=rupees_to_paise(settings.risk.initial_capital))
        underlyings = [resolve_underlying(symbol) for symbol in settings.symbols]
        self.underlyings = underlyings
        strategies = [
            build_strategy(name, settings, spec, name if len(underlyings) == 1 else f"{name}:{spec.name}")
            for spec in underlyings for name in settings.strategies
        ]
        # Unpaced runs deliver every tick (reproducible results, no conflation bookkeeping); paced consumers that
        # fall behind get the newest tick per instrument instead.
        lossless = not self.clock.paced
        self.lossless = lossless
        self.portfolio = PortfolioActor(self.bus, rupees_to_paise(settings.risk.initial_capital),
                                        conflate_ticks=not lossless)
        self.journal = self._open_journal()
        self.risk = RiskGateActor(self.bus, self._risk_manager(), self.clock, self.ids, broker=self.broker,
                                  journal=self.journal, conflate_ticks=not lossless)
        self.execution = ExecutionActor(self.bus, self.broker, self.clock,
                                        max_orders_per_second=settings.risk.max_orders_per_second,
                                        conflate_ticks=not lossless)
        self.strategy = StrategyActor(self.bus, strategies, StrategyContext(self.instruments, self.ids),
                                      auto_execution=settings.effective_auto_execution, conflate_ticks=not lossless)
        self.feeds: list[FeedActor] = []
        if not self.kite_market:
            assert isinstance(self.clock, SimClock)
            sim_clock = self.clock
            self.feeds = [
                FeedActor(self.bus, SyntheticMarket(sim_clock, self.calendar, spec, self._synthetic_config(spec)),
                          self.instruments, self.clock, lossless=lossless,
                          name="feed" if len(underlyings) == 1 else f"feed-{spec.name}")
                for spec in underlyings
            ]
        self.consumers: list[Actor] = [self.portfolio, self.risk, self.execution, self.strategy]
        self._stop = asyncio.Event()
        self._feeds_ended = 0
        self.bus.tap(self._watch)

    @staticmethod
    def _check_mode(settings: Settings) -> None:
        if settings.mode != "live":
            return
        problems = []
        if settings.live_confirm.strip().lower() != "yes":
            problems.append("config error: live_confirm: live mode places real orders with real money; set "
                            "TRADER_LIVE_CONFIRM=yes to confirm")
        if not settings.has_kite_credentials:
            problems.append("config error: kite: live mode needs TRADER_KITE__API_KEY and an access token "
                            "(TRADER_KITE__ACCESS_TOKEN, or run `trader login` to store today's)")
        if problems:
            raise ConfigError(problems)

    def _observe_exchange_time(self, stamp: object) -> None:
        """Kite quotes carry the exchange's time as an IST string; a simulator's session may run at another hour."""
        if not isinstance(stamp, str) or not isinstance(self.clock, ExchangeClock):
            return
        try:
            moment = datetime.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
        except ValueError:
            log.warning("exchange_timestamp_unreadable", timestamp=stamp)
            return
        self.clock.observe(int(moment.timestamp()) * NS_PER_SECOND)

    async def _connect_kite_market(self) -> None:
        """Load the day's instrument dump, pick the chains around spot, and subscribe the Kite ticker to them."""
        assert self.kite is not None
        settings = self.settings
        tokens: list[int] = []
        for spec in self.underlyings:
            dump = await self.kite.instruments(spec.fo_exchange)
            self.instruments.merge(dump)
            index = IndexInstrument(exchange=spec.spot_exchange, tradingsymbol=spec.spot_symbol, name=spec.name,
                                    instrument_token=spec.spot_token, tick_size=spec.tick_size_paise)
            self.instruments.add_index(index)
            key = f"{spec.spot_exchange}:{spec.spot_symbol}"
            quote = (await self.kite.quote([key])).get(key, {})
            spot = round(float(quote.get("last_price", 0)) * 100)
            self._observe_exchange_time(quote.get("timestamp"))
            expiries = [e for e in self.instruments.expiries(spec.name) if e >= ist_date(self.clock.now_ns())]
            if not expiries or spot <= 0:
                raise ConfigError([f"config error: symbols: no listed {spec.name} options or no index price from "
                                   f"{settings.kite_api_root}; check the instrument dump and the market hours"])
            chain = self.instruments.option_chain(spec.name, expiries[0])
            width = settings.sim.strikes_each_side * spec.strike_step_paise
            tokens.append(spec.spot_token)
            tokens.extend(c.instrument_token for c in chain if abs(c.strike - spot) <= width)
        broker = self.broker
        ticker = KiteTicker(settings.kite.api_key, settings.kite_access_token(), tokens, clock=self.clock,
                            root=settings.kite_ws_root, mode="full", calendar=self.calendar,
                            on_order=broker.on_postback if isinstance(broker, KiteBroker) else None)
        ticker.attach(self.bus.publish)
        self.feeds = [FeedActor(self.bus, ticker, self.instruments, self.clock, lossless=False)]
        log.info("kite_market_connected", api_root=settings.kite_api_root, ws_root=settings.kite_ws_root,
                 instruments=len(tokens))

    def _open_journal(self) -> Journal | None:
        """Paper and live keep their state across restarts (one file each); a backtest always starts fresh."""
        if self.settings.mode == "backtest":
            return None
        path = self.settings.data_dir / f"{self.settings.mode}.sqlite3"
        try:
            return Journal(path)
        except JournalError as exc:
            raise ConfigError([f"config error: data_dir: {exc}"]) from None

    def _risk_manager(self) -> RiskManager:
        config = self.settings.risk
        saved = self.journal.load_state(RISK_STATE_NAME) if self.journal is not None else None
        if saved is None:
            return RiskManager(config, calendar=self.calendar, now_ns=self.clock.now_ns)
        try:
            manager = RiskManager.from_state(config, saved, calendar=self.calendar, now_ns=self.clock.now_ns)
        except ValueError as exc:
            raise ConfigError([f"config error: data_dir: the saved risk state cannot be used ({exc}); move "
                               f"{self.settings.data_dir} aside to start fresh"]) from None
        log.warning("risk_state_restored", state=manager.state.value, level=manager.level.value,
                    open_positions=len(manager.open_positions()))
        return manager

    def _synthetic_config(self, spec: UnderlyingSpec) -> SyntheticConfig:
        sim = self.settings.sim
        spot = sim.spot if spec.name == "NIFTY" else _SYNTHETIC_SPOT.get(spec.name, sim.spot)
        return SyntheticConfig(seed=sim.seed, spot=spot, annual_vol=sim.annual_vol, atm_iv=sim.atm_iv,
                               strikes_each_side=sim.strikes_each_side, tick_interval_ms=sim.tick_interval_ms,
                               chain_interval_ms=sim.chain_interval_ms, days=sim.days)

    def _watch(self, event: object) -> None:
        if type(event) is FeedEnded:
            self._feeds_ended += 1
            if self._feeds_ended >= len(self.feeds):
                self._stop.set()

    def request_stop(self, reason: str = "requested") -> None:
        if not self._stop.is_set():
            log.info("stop_requested", reason=reason)
            self._stop.set()

    def counters(self) -> dict[str, int]:
        return {
            "ticks_in": sum(f.ticks_in for f in self.feeds),
            "ticks_invalid": sum(f.invalid for f in self.feeds),
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

    def _heartbeat(self) -> None:
        counters = self.counters()
        now = self.clock.now_ns()
        lag_ms = max(now - self.strategy.last_tick_ts_ns, 0) // 1_000_000 if self.strategy.last_tick_ts_ns else 0
        log.info("heartbeat", **counters, lag_ms=lag_ms, state=self.risk.state.value, risk_level=self.risk.level.value,
                 equity=self.portfolio.equity, day_pnl=self.portfolio.day_pnl,
                 sim_time=datetime.fromtimestamp(now / NS_PER_SECOND, tz=IST).isoformat(timespec="seconds"))
        self.bus.publish(Heartbeat(ts_ns=now, counters=counters))

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
        if self.kite_market:
            try:
                await self._connect_kite_market()
            except BaseException:
                await self._close_resources()
                raise
        log.info("daemon_started", mode=settings.mode, symbols=settings.symbols, strategies=settings.strategies,
                 auto_execution=settings.effective_auto_execution,
                 speed=self.clock.speed if isinstance(self.clock, SimClock) else 1.0,
                 sim_start=datetime.fromtimestamp(self.clock.now_ns() / NS_PER_SECOND, tz=IST).isoformat(),
                 capital=settings.risk.initial_capital, confidence_cutoff=settings.strategy.confidence_cutoff)
        for actor in self.consumers:
            self.supervisor.start(actor)
        for feed in self.feeds:
            self.supervisor.start(feed)
        heartbeat = asyncio.create_task(self._heartbeats(), name="heartbeat")
        try:
            await self._stop.wait()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            result = await self._shutdown()
            if install_signal_handlers:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        return result

    async def _close_resources(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self.kite is not None:
            await self.kite.close()

    async def _shutdown(self) -> RunResult:
        """No new intents, let in-flight orders finish, stop the feeds, log the summary.

        Orders settle before the feeds stop: with Kite the ticker is also the order channel, and a fill of an order
        still being placed would otherwise never reach the portfolio. Whatever it missed is read back from the
        broker's order book before the feeds go.
        """
        budget = self.settings.shutdown_timeout_seconds
        self.bus.publish(Command(ts_ns=self.clock.now_ns(), kind=CommandKind.STOP_ENTRIES, source="daemon",
                                 reason="shutting down"))
        try:
            await asyncio.wait_for(self.execution.settle(), timeout=budget / 2)
        except TimeoutError:
            log.error("shutdown_orders_still_in_flight", placements=len(self.execution.placements))
        try:
            await asyncio.wait_for(self.broker.resync(), timeout=budget / 4)
        except Exception as exc:
            log.warning("shutdown_resync_failed", error=repr(exc))
        await self.supervisor.stop([feed.name for feed in self.feeds])
        for feed in self.feeds:
            await feed.market.close()
        try:
            await asyncio.wait_for(self.bus.wait_idle(), timeout=budget / 4)
        except TimeoutError:
            log.error("shutdown_drain_timeout", pending={i.name: len(i) for i in self.bus.inboxes})
        await self.execution.close()
        await self.supervisor.stop()
        await self._close_resources()
        self._heartbeat()
        summary = self.portfolio.summary()
        counters = self.counters()
        log.info("summary", **_summary_fields(summary),
                 state=self.risk.state.value, **{f"count_{k}": v for k, v in counters.items()})
        return RunResult(summary=summary, counters=counters)


def _summary_fields(summary: PerformanceSummary) -> dict[str, Any]:
    fields = asdict(summary)
    fields["win_rate"] = round(summary.win_rate, 4)
    fields["max_drawdown_pct"] = round(summary.max_drawdown_pct, 6)
    fields["average_slippage_bps"] = round(summary.average_slippage_bps, 2)
    if summary.profit_factor is not None:
        fields["profit_factor"] = round(summary.profit_factor, 3)
    return fields
