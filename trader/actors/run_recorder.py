"""The run recorder: every run (backtest, paper, live) keeps its signals, orders, fills and equity curve under
``data_dir/runs/<run id>/`` (``trader/runs/model.py``; written by ``trader/runs/store.py``).

It subscribes to ``Signal``, ``OrderIntent``, ``OrderUpdate``, ``Fill`` and ``PositionSnapshot`` (never to ticks);
its handler only turns an event into a row and queues it (the writer's thread does the I/O), so it never holds up
the bus. Equity is sampled like the portfolio's curve: at most one row a minute of event time, plus the account's
final state at stop. A write that fails is logged once; trading goes on (a run folder is a record, not a gate).
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

import trader
from trader.actors.base import Actor
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND
from trader.config import SECRET_WORDS, Settings
from trader.events import Fill, OrderIntent, OrderUpdate, PositionSnapshot, Signal
from trader.logging import get_logger
from trader.market.instruments import UnderlyingSpec
from trader.runs.model import (
    DataSource,
    EquityRow,
    FillRow,
    OrderRow,
    RunData,
    RunManifest,
    RunStatus,
    SignalRow,
    StrategyRun,
)
from trader.runs.store import RunWriter, StatusRow
from trader.service_settings import mask_url
from trader.strategies.registry import check_strategies
from trader.venue_settings import FyersSettings

if TYPE_CHECKING:
    from trader.adapters.replay.sources import ReplayConfig

log = get_logger("trader.runs")

EQUITY_SAMPLE_NS = 60 * NS_PER_SECOND  # as PortfolioActor's equity curve


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def _public(model: object, dumped: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in dumped.items():
        original = getattr(model, name, None) if isinstance(model, BaseModel) else None
        number = isinstance(value, int | float) or value is None  # (kite_token_poll_seconds is no secret)
        if isinstance(original, SecretStr) or (_secret_name(name) and not number):
            continue  # never written, not even masked (text, or a list or table of them)
        if isinstance(value, dict):
            out[name] = _public(original, value)  # a section, or a plain table (a strategy's parameters)
        elif isinstance(value, str) and "url" in name.lower() and value:
            out[name] = mask_url(value)
        else:
            out[name] = value
    return out


def public_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON data with every secret left out: ``SecretStr`` fields and any setting whose
    name says it is one (token, secret, key, password, ...); URLs keep only scheme and host."""
    return _public(settings, settings.model_dump(mode="json"))


def strategy_runs(settings: Settings, underlyings: Iterable[UnderlyingSpec]) -> tuple[StrategyRun, ...]:
    """The strategies run, with their validated parameters (ids as ``builders.build_strategies`` gives them)."""
    resolved, _problems = check_strategies(settings)
    specs = list(underlyings)
    several = len(specs) > 1
    runs: list[StrategyRun] = []
    for spec in specs:
        for requested in settings.strategies:
            if requested not in resolved:
                continue
            found, params = resolved[requested]
            sid = f"{found.name}:{spec.name}" if several else found.name
            runs.append(StrategyRun(strategy_id=sid, name=found.name, params=params.model_dump(mode="json")))
    return tuple(runs)


@functools.cache
def code_version() -> str:
    """``trader.__version__``, with the git commit when the package runs from a checkout."""
    version = trader.__version__
    here = Path(trader.__file__).resolve().parent
    if not (here.parent / "pyproject.toml").is_file():
        return version  # an installed package: whatever git repository surrounds it is not its source
    try:
        done = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--tags"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return version
    described = done.stdout.strip()
    return f"{version}+{described}" if done.returncode == 0 and described else version


class RunRecorder(Actor):
    name = "run_recorder"

    def __init__(self, bus: EventBus, runs_dir: Path, *, flush_rows: int = 512, flush_seconds: float = 1.0) -> None:
        super().__init__(bus, conflate_ticks=False)
        self.runs_dir = runs_dir
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.writer: RunWriter | None = None
        self._intents: dict[str, tuple[str, str]] = {}  # intent id -> (strategy id, order type)
        self._next_sample_ns = 0
        self._last: PositionSnapshot | None = None
        self._failed: set[str] = set()  # what has been reported (once each)
        self.rows = 0

    @property
    def run_dir(self) -> Path | None:
        return self.writer.run_dir if self.writer is not None else None

    def subscriptions(self) -> Iterable[type]:
        return (Signal, OrderIntent, OrderUpdate, Fill, PositionSnapshot)

    def _report(self, what: str, error: BaseException) -> None:
        if what not in self._failed:
            self._failed.add(what)
            log.error("run_record_failed", what=what, error=repr(error),
                      run_dir=str(self.run_dir) if self.run_dir else str(self.runs_dir),
                      fix="trading goes on without a complete run folder; free disk space or make data_dir/runs "
                          "writable")

    def begin(self, manifest: RunManifest) -> Path | None:
        """Create the run folder and start writing; None (logged) if the folder cannot be written."""
        writer = RunWriter(self.runs_dir, manifest, flush_rows=self.flush_rows, flush_seconds=self.flush_seconds,
                           on_error=self._report)
        if not writer.start():
            return None
        self.writer = writer
        log.info("run_recording", run_id=manifest.run_id, run_dir=str(writer.run_dir))
        return writer.run_dir

    async def handle(self, event: Any) -> None:
        writer = self.writer
        if writer is None:
            return
        try:
            row = self._row(event)
        except Exception as exc:  # a record is never worth a restart of the actor, nor a lost event elsewhere
            self._report("row", exc)
            return
        if row is not None:
            writer.append(row)
            self.rows += 1

    def _row(self, event: Any) -> SignalRow | OrderRow | StatusRow | FillRow | EquityRow | None:
        kind = type(event)
        if kind is PositionSnapshot:
            self._last = event
            if event.ts_ns < self._next_sample_ns:
                return None
            self._next_sample_ns = event.ts_ns + EQUITY_SAMPLE_NS
            return _equity(event)
        if kind is Fill:
            strategy_id, order_type = self._intents.get(event.intent_id, ("", ""))
            contract = event.contract
            return FillRow(ts_ns=event.ts_ns, fill_id=event.fill_id, intent_id=event.intent_id,
                           order_id=event.order_id, strategy_id=strategy_id, purpose=event.purpose.value,
                           instrument_token=contract.instrument_token, tradingsymbol=contract.tradingsymbol,
                           exchange=contract.exchange, side=event.side, quantity=event.quantity, price=event.price,
                           expected_price=event.expected_price, charges=event.charges, order_type=order_type)
        if kind is OrderUpdate:
            return StatusRow(ts_ns=event.ts_ns, intent_id=event.intent_id, order_id=event.order_id,
                             status=event.status.value, filled_quantity=event.filled_quantity,
                             average_price=event.average_price, check=event.check, reason=event.reason)
        if kind is OrderIntent:
            contract = event.contract
            self._intents[event.intent_id] = (event.strategy_id, event.order_type.value)
            return OrderRow(ts_ns=event.ts_ns, intent_id=event.intent_id, strategy_id=event.strategy_id,
                            signal_id=event.signal_id, purpose=event.purpose.value,
                            instrument_token=contract.instrument_token, tradingsymbol=contract.tradingsymbol,
                            exchange=contract.exchange, side=event.side, quantity=event.quantity,
                            order_type=event.order_type.value, expected_price=event.expected_price,
                            limit_price=event.limit_price, stop_loss_price=event.stop_loss_price,
                            reason=event.reason)
        if kind is Signal:
            return SignalRow(ts_ns=event.ts_ns, signal_id=event.signal_id, strategy_id=event.strategy_id,
                             underlying=event.underlying, direction=event.direction.value,
                             confidence=event.confidence, reason=event.reason, tick_id=event.tick_id)
        return None

    async def finish(self, *, ended_ns: int, wall_ended_ns: int, final: PositionSnapshot | None,
                     stop_reason: str = "", status: RunStatus = "complete") -> RunData | None:
        """At stop, after the actors stopped: the account's final state as the last equity row, then the tables and
        summary (in a thread). None if nothing could be written (logged once)."""
        writer, self.writer = self.writer, None
        if writer is None:
            return None
        last = final if final is not None else self._last
        try:
            run = await asyncio.to_thread(writer.close, ended_ns=ended_ns, wall_ended_ns=wall_ended_ns,
                                          final=_equity(last) if last is not None else None,
                                          stop_reason=stop_reason, status=status)
        except Exception as exc:
            self._report("finish", exc)
            return None
        if run is not None:
            log.info("run_recorded", run_id=run.manifest.run_id, run_dir=str(writer.run_dir), status=status,
                     signals=len(run.signals), orders=len(run.orders), fills=len(run.fills), trades=len(run.trades),
                     equity_rows=len(run.equity), dropped=writer.dropped)
        return run


def _equity(snapshot: PositionSnapshot) -> EquityRow:
    return EquityRow(ts_ns=snapshot.ts_ns, equity=snapshot.equity, realized=snapshot.realized,
                     unrealized=snapshot.unrealized, charges=snapshot.charges, day_pnl=snapshot.day_pnl)


def data_source_for(settings: Settings, *, replay: ReplayConfig | None, venue_market: bool) -> DataSource:
    """What the run's market data is, when the caller did not say (``App(data_source=...)``)."""
    if replay is not None:
        return DataSource("ticks", path=str(replay.data), instruments=", ".join(str(p) for p in replay.instruments))
    if venue_market:
        if settings.venue == "fyers":
            url, production = settings.fyers.data_ws_url, FyersSettings().data_ws_url
        else:
            url, production = settings.kite_ws_root, "wss://ws.kite.trade"
        real = url == production
        return DataSource(settings.venue if real else "simulator", path="" if real else mask_url(url))
    return DataSource("synthetic", model_note="the built-in market: a seeded index path, Black-Scholes chain")
