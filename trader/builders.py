"""Mode wiring in small builders: what ``App`` assembles for backtest, paper and live, one concern each.

Every builder reads the validated ``Settings`` and returns one part; ``App`` only joins them on the bus. Problems a
user can fix (live mode unconfirmed, a data dir that cannot be opened, a saved state that cannot be used) leave as a
``ConfigError`` naming the setting and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trader.actors.risk import STATE_NAME as RISK_STATE_NAME
from trader.adapters.kite.venue import KiteVenue
from trader.adapters.paper import PaperBroker, PaperBrokerConfig
from trader.adapters.paper_state import paper_state, restore_paper
from trader.adapters.ports import Broker, Venue
from trader.adapters.synthetic import SyntheticConfig
from trader.clock import NS_PER_SECOND, Clock, ExchangeClock, SimClock
from trader.config import ConfigError, Settings
from trader.events import TradingState
from trader.logging import get_logger
from trader.market.calendar import MarketCalendar, ist_date, ist_text
from trader.market.instruments import UnderlyingSpec
from trader.money import to_paise
from trader.risk.core import RiskManager
from trader.store.journal import Journal, JournalError, JournalWriteError
from trader.strategies import registry
from trader.strategies.adopted import AdoptedPolicy, AdoptedPositionKeeper
from trader.strategies.base import Strategy

log = get_logger("trader.app")

# Typical index levels, only to start the built-in market somewhere realistic.
_SYNTHETIC_SPOT = {"NIFTY": 26_000.0, "BANKNIFTY": 59_000.0, "SENSEX": 85_000.0, "FINNIFTY": 27_500.0,
                   "MIDCPNIFTY": 13_500.0, "NIFTYNXT50": 70_000.0}


def check_mode(settings: Settings) -> None:
    """Live mode places real orders: it needs an explicit confirmation and credentials."""
    if settings.mode != "live":
        return
    problems = []
    if settings.live_confirm.strip().lower() != "yes":
        problems.append("config error: live_confirm: live mode places real orders with real money; set "
                        "TRADER_LIVE_CONFIRM=yes to confirm")
    if not settings.has_venue_credentials:
        if settings.venue == "fyers":
            problems.append("config error: fyers: live mode needs TRADER_FYERS__APP_ID and an access token "
                            "(TRADER_FYERS__ACCESS_TOKEN, or run `trader login --venue fyers` to store today's)")
        else:
            problems.append("config error: kite: live mode needs TRADER_KITE__API_KEY and an access token "
                            "(TRADER_KITE__ACCESS_TOKEN, or run `trader login` to store today's)")
    if problems:
        raise ConfigError(problems)


def uses_venue_market(settings: Settings) -> bool:
    """The venue's market data (``settings.venue``): always in live mode, and in paper mode when its credentials are
    set (fills stay simulated)."""
    return settings.mode == "live" or (settings.mode == "paper" and settings.has_venue_credentials)


def build_clock(settings: Settings, start_ns: int) -> Clock:
    """A venue's market data runs on exchange time; the built-in market on its own simulated clock (unpaced in
    backtest)."""
    if uses_venue_market(settings):
        return ExchangeClock(tolerance_ns=int(settings.exchange_time_tolerance_seconds * NS_PER_SECOND))
    return SimClock(start_ns, speed=0.0 if settings.mode == "backtest" else settings.sim.speed)


def build_venue(settings: Settings, clock: Clock) -> Venue | None:
    """The live venue's connection when the run uses its market (``uses_venue_market``), else None."""
    if not uses_venue_market(settings):
        return None
    if settings.venue == "fyers":
        from trader.adapters.fyers.venue import FyersVenue  # noqa: PLC0415 - only a Fyers run loads its adapter

        return FyersVenue(settings, clock=clock)
    return KiteVenue(settings)


def build_broker(settings: Settings, clock: Clock, calendar: MarketCalendar, venue: Venue | None) -> Broker:
    """The venue's broker in live mode; the paper broker (simulated fills) otherwise."""
    if settings.mode == "live":
        assert venue is not None, "live mode builds its venue first"
        return venue.build_broker(clock)
    return PaperBroker(clock, PaperBrokerConfig(latency_ms=settings.paper.latency_ms,
                                                slippage_ticks=settings.paper.slippage_ticks),
                       calendar, capital=to_paise(settings.risk.initial_capital))


def build_strategy(name: str, settings: Settings, underlying: UnderlyingSpec, strategy_id: str | None = None,
                   *, several: bool = False) -> Strategy:
    """The strategy ``name`` resolves to (trader/strategies/registry.py: built-in, entry point, dotted path), with its
    ``[strategy.<name>]`` parameters validated; a ``ConfigError`` naming the problem otherwise. Its id, unless given:
    the strategy's ``name`` (a dotted path's class ``name``), with the underlying when ``several`` run."""
    try:
        resolved = registry.resolve(name)
    except ValueError as exc:
        raise ConfigError([f"config error: strategies: {exc}"]) from None
    params, problems = registry.validate_params(resolved, registry.params_for(resolved, settings))
    if params is None:
        raise ConfigError(problems)
    if strategy_id is None:
        strategy_id = f"{resolved.name}:{underlying.name}" if several else resolved.name
    try:
        return resolved.factory(strategy_id, underlying, settings.strategy, params, risk_budget(settings))
    except Exception as exc:  # a plugin's constructor: a config error line, not a traceback
        raise ConfigError([f"config error: strategies: building {name!r} failed: {type(exc).__name__}: {exc}"]) \
            from None


def risk_budget(settings: Settings) -> int:
    """The premium at risk per entry the risk gate allows, in paise (``RiskManager.risk_per_trade_limit``)."""
    return round(to_paise(settings.risk.initial_capital) * settings.risk.max_risk_per_trade_pct)


def build_strategies(settings: Settings, underlyings: list[UnderlyingSpec]) -> list[Strategy]:
    """One instance per strategy and underlying; ids carry the underlying when there are several."""
    several = len(underlyings) > 1
    return [build_strategy(name, settings, spec, several=several)
            for spec in underlyings for name in settings.strategies]


def open_journal(settings: Settings) -> Journal | None:
    """Paper and live keep their state across restarts (one file each); a backtest always starts fresh."""
    if settings.mode == "backtest":
        return None
    path = settings.data_dir / f"{settings.mode}.sqlite3"
    try:
        return Journal(path)
    except JournalError as exc:
        raise ConfigError([f"config error: data_dir: {exc}"]) from None


def unusable_state(settings: Settings, path: Path, name: str, problem: object) -> ConfigError:
    """A saved state document that cannot be used: the file, the document, why, and how to start again."""
    lose = ("a fresh paper account" if settings.mode == "paper" else
            "fresh (its saved loss windows and breaches are lost: check today's P&L in the broker first)")
    return ConfigError([f"config error: data_dir: the saved state {name!r} in {path} cannot be used ({problem}); "
                        f"stop the daemon and restore the file from a backup, or move {path} (and its -wal and -shm "
                        f"files) aside to start {lose}"])


def load_saved_state(settings: Settings, journal: Journal, name: str) -> dict[str, Any] | None:
    """``journal.load_state(name)``, or a ``ConfigError`` naming the file and the fix if it cannot be read."""
    try:
        return journal.load_state(name)
    except JournalError as exc:
        problem = str(exc).removeprefix(f"state {name!r} in {journal.path} ")  # said once, by unusable_state
        raise unusable_state(settings, journal.path, name, problem) from None


def build_risk_manager(settings: Settings, journal: Journal | None, calendar: MarketCalendar,
                       clock: Clock) -> tuple[RiskManager, bool]:
    """A fresh risk manager, or the one saved in the journal (a breached day stays breached across a restart); and
    whether it was restored, in which case ``judge_restored_risk_state`` must run once the clock tells event time.

    Nothing here asks the manager about the present: a live daemon's exchange clock reads wall time until Kite's
    first timestamp, and a rehearsal against `trader sim` may be on another day, so asking now would roll the saved
    day's loss windows over (forgetting the day's losses) on a day the session is not on."""
    config = settings.risk
    saved = load_saved_state(settings, journal, RISK_STATE_NAME) if journal is not None else None
    if journal is None or saved is None:
        return RiskManager(config, calendar=calendar, now_ns=clock.now_ns), False
    try:
        return RiskManager.from_state(config, saved, calendar=calendar, now_ns=clock.now_ns), True
    except (ValueError, TypeError, KeyError, OverflowError) as exc:  # a document of the wrong shape or range
        raise unusable_state(settings, journal.path, RISK_STATE_NAME, exc) from None


def judge_restored_risk_state(settings: Settings, manager: RiskManager, path: Path, now_ns: int) -> None:
    """Say what the restored state allows at the start time ``now_ns`` (event time: a breach of a day, week or month
    that has passed has rolled off by now), and how to clear a state that refuses entries."""
    try:
        state = manager.metrics(now_ns).trading_state
    except (ValueError, TypeError, KeyError, OverflowError) as exc:  # a document of the wrong shape or range
        raise unusable_state(settings, path, RISK_STATE_NAME, exc) from None
    log.warning("risk_state_restored", state=state.value, level=manager.level.value,
                open_positions=len(manager.open_positions()), journal=str(path))
    if state is not TradingState.ACTIVE:
        clear = ("while the daemon runs: `trader resume` ends a halt, `trader reset-daily` clears a breached day"
                 + (f"; or stop the daemon and delete {path} to start a fresh paper account"
                    if settings.mode == "paper" else f" (the state is kept in {path})"))
        log.error("risk_state_refuses_entries", state=state.value, reason=manager.state_reason,
                  journal=str(path), how_to_clear=clear)


def synthetic_config(settings: Settings, spec: UnderlyingSpec) -> SyntheticConfig:
    sim = settings.sim
    spot = sim.spot if spec.name == "NIFTY" else _SYNTHETIC_SPOT.get(spec.name, sim.spot)
    return SyntheticConfig(seed=sim.seed, spot=spot, annual_vol=sim.annual_vol, atm_iv=sim.atm_iv,
                           strikes_each_side=sim.strikes_each_side, tick_interval_ms=sim.tick_interval_ms,
                           chain_interval_ms=sim.chain_interval_ms, days=sim.days)


PAPER_MARKET_STATE = "paper_market"


def built_in_market_start(settings: Settings, journal: Journal | None, calendar: MarketCalendar,
                          start: int) -> int:
    """Where the built-in market starts in paper mode: never on a simulated day an earlier run already traded.

    Every paper run replays a fresh synthetic day, but the risk state (the day's losses, a breached limit) is kept in
    the journal. Had the new run started on the same simulated day, yesterday's run's losses would block today's
    entries, silently. So a run starts at the next session after the last one's simulated day (or now, if later):
    the old P&L stays on its own day, the weekly and monthly limits still see it.
    """
    saved = load_saved_state(settings, journal, PAPER_MARKET_STATE) if journal is not None else None
    last = saved.get("last_event_ns") if saved is not None else None
    if journal is None or not isinstance(last, int) or isinstance(last, bool) or last <= 0:
        return start
    try:
        last_day = ist_date(last)
        next_open = calendar.session_bounds(calendar.next_trading_day(last_day))[0]
        crashed_in_session = saved is not None and saved.get("clean_stop") is False and calendar.is_open(last)
    except (ValueError, OverflowError, OSError) as exc:  # a time no calendar holds (year 10000, ...)
        raise unusable_state(settings, journal.path, PAPER_MARKET_STATE, f"last_event_ns {last}: {exc}") from None
    if crashed_in_session:
        # The last run was killed inside its session: this one goes on with that session where it stopped, so a
        # crash keeps the day (its positions, its P&L, its limits), as a restart against a real broker does.
        log.info("paper_market_resumes", at=ist_text(last), journal=str(journal.path),
                 why="the last run stopped without a clean shutdown inside its session")
        return last
    if next_open <= start:
        return start
    log.info("paper_market_continues", last_run_day=last_day.isoformat(), starts_at=ist_text(next_open),
             journal=str(journal.path),
             why="each paper run trades a new simulated session, so the last run's day P&L and limits stay on "
                 "its own day; pass --start to choose the day")
    return next_open


PAPER_BOOK_STATE = "paper_broker"


def restore_paper_book(broker: PaperBroker, journal: Journal,
                       on_failure: Callable[[str, Exception], None]) -> None:
    """The paper account survives restarts like a real one: restored from the journal, saved after every change."""
    saved = journal.load_state(PAPER_BOOK_STATE)
    if saved is not None:
        try:
            restore_paper(broker, saved)
        except ValueError as exc:
            raise ConfigError([f"config error: data_dir: the paper broker's saved book in {journal.path} cannot be "
                               f"used ({exc}); move the file aside to start a fresh paper account"]) from None

    def save() -> None:
        now = broker.clock_now()
        try:
            journal.save_state(PAPER_BOOK_STATE, paper_state(broker), now)
        except JournalWriteError as exc:
            on_failure("paper broker book", exc)

    broker.persist_with(save)


def start_ns(settings: Settings, wall_now_ns: int, override_ns: int | None = None) -> int:
    """Where the simulated clock starts: the caller's override, ``sim.start``, or now."""
    if override_ns is not None:
        return override_ns
    if settings.sim.start is not None:
        return int(settings.sim.start.timestamp() * NS_PER_SECOND)
    return wall_now_ns


def build_adopted_keeper(settings: Settings) -> AdoptedPositionKeeper:
    """The keeper of positions no strategy claims after a restart; ``[adopted]`` falls back to the strategy's stop and
    exit time."""
    adopted, strategy = settings.adopted, settings.strategy
    policy = AdoptedPolicy(
        policy=adopted.policy,
        stop_loss_pct=adopted.stop_loss_pct if adopted.stop_loss_pct is not None else strategy.stop_loss_pct,
        exit_time=adopted.exit_time if adopted.exit_time is not None else strategy.exit_time,
        market_protection=strategy.market_protection)
    return AdoptedPositionKeeper(policy)
