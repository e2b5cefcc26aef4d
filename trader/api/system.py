"""The seed's ``LiveOptionsTradingSystem``: the real daemon (``trader.app.App``) in the background thread.

    trading_system = LiveOptionsTradingSystem(trading_mode='paper', auto_execution=False,
                                              symbols=['NSE:NIFTY50-INDEX'], strategies=['ema_crossover_enhanced'],
                                              confidence_cutoff=40.0, risk_config=risk_config)
    trading_system.start()
    result = trading_system.manual_order(contract_symbol='NIFTY 26000 CE', quantity=65, side='BUY')
    report = trading_system.get_performance_report()
    trading_system.stop()

Everything it does goes through the daemon's ``ControlService`` — the one implementation behind the control API and
the ``trader`` CLI — called on the daemon's loop: a manual order is an intent of the ``manual`` strategy through the
risk gate; halt, resume, reset-daily and flatten are commands on the bus. Each answer is the service's dict (money
``*_inr`` in rupees) with ``ok: True``; a refusal (a risk check, an unknown contract, a decided approval) is an
answer too, ``{"ok": False, "error": {"code", "message", "field"?, "check"?}, ...}``, never an exception. A
malformed argument (a side that is not BUY/SELL, a quantity that is not a number) raises ``ValueError``.

The arguments become the daemon's ``Settings`` (the environment ``TRADER_*`` fills in the rest, as for ``trader
run``): ``trading_mode`` → ``mode``, ``auto_execution``, ``symbols``, ``strategies``, ``confidence_cutoff`` →
``strategy.confidence_cutoff``, ``risk_config`` → ``risk``. It is the same daemon as ``trader run``: its journal
(``data_dir``), its reconciliation at start, its control API. Live mode needs ``confirm_live=True``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from prometheus_client import generate_latest
from pydantic import ValidationError

from trader import builders
from trader.api import checks
from trader.api.loop import RUNNER
from trader.app import App, RunResult
from trader.config import ConfigError, Settings
from trader.control.requests import ManualOrder
from trader.control.service import ControlError, ControlService
from trader.events import Tick
from trader.market.instruments import OptionContract
from trader.risk.config import RiskConfig
from trader.strategies import registry

TRADING_MODES = ("paper", "live")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` over it, nested sections merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolves(name: str) -> bool:
    """A built-in, an installed entry point or a dotted path (trader/strategies/registry.py)."""
    try:
        registry.resolve(name)
    except ValueError:
        return False
    return True


def _strategies(values: object) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple) or not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"strategies must be a non-empty list of names such as ['ema_crossover_enhanced'], got "
                         f"{values!r}")
    unknown = [v for v in values if not _resolves(v.strip())]
    if unknown:
        raise ValueError(f"unknown strategy {', '.join(map(repr, unknown))}; available: "
                         f"{', '.join(registry.available())} (or a dotted path package.module:ClassName)")
    return [v.strip() for v in values]


def _risk(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, RiskConfig):
        return value.model_dump()
    if isinstance(value, dict):
        return RiskConfig(**value).model_dump()  # pydantic names the field that is wrong
    raise TypeError(f"risk_config must be a RiskConfig (or a dict of its fields), got {type(value).__name__}")


class LiveOptionsTradingSystem:
    """The daemon for the seed's phases: 'paper' (phase 1 with ``auto_execution=True``, phase 2 semi-live with
    ``False``: signals wait for approval, manual orders go through the risk gate) and 'live' (phase 3; against
    ``trader sim`` with ``api_root``/``ws_root`` for a rehearsal)."""

    def __init__(self, trading_mode: str = "paper", *, auto_execution: bool | None = None,
                 symbols: list[str] | None = None, strategies: list[str] | None = None,
                 confidence_cutoff: float | None = None, risk_config: RiskConfig | dict[str, Any] | None = None,
                 confirm_live: bool = False, data_dir: str | None = None, speed: float | None = None,
                 seed: int | None = None, start: datetime | str | None = None, api_key: str | None = None,
                 access_token: str | None = None, api_root: str | None = None, ws_root: str | None = None,
                 overrides: dict[str, Any] | None = None, start_timeout_s: float = 60.0) -> None:
        mode = checks.choice("trading_mode", trading_mode, TRADING_MODES)
        if auto_execution is not None and not isinstance(auto_execution, bool):
            raise TypeError(f"auto_execution must be True or False, got {auto_execution!r}")
        if not isinstance(confirm_live, bool):
            raise TypeError(f"confirm_live must be True or False, got {confirm_live!r}")
        if confidence_cutoff is not None and (isinstance(confidence_cutoff, bool) or not isinstance(
                confidence_cutoff, int | float) or not 0 <= confidence_cutoff <= 100):
            raise ValueError(f"confidence_cutoff must be a number from 0 to 100 (a signal's confidence), got "
                             f"{confidence_cutoff!r}")
        if overrides is not None and not isinstance(overrides, dict):
            raise TypeError(f"overrides must be a dict of settings (as in configs/paper.toml), got {overrides!r}")
        if not (isinstance(start_timeout_s, int | float) and start_timeout_s > 0):
            raise ValueError(f"start_timeout_s must be a positive number of seconds, got {start_timeout_s!r}")
        if symbols is not None:
            checks.symbols(symbols)
            symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        given: dict[str, Any] = checks.given(
            mode=mode, auto_execution=auto_execution, symbols=symbols,
            strategies=_strategies(strategies) if strategies is not None else None,
            risk=_risk(risk_config), data_dir=data_dir, kite_api_root=api_root, kite_ws_root=ws_root,
            live_confirm="yes" if confirm_live else None,
            strategy=checks.given(confidence_cutoff=confidence_cutoff) or None,
            sim=checks.given(speed=speed, seed=seed, start=start) or None,
            kite=checks.given(api_key=api_key, access_token=access_token) or None)
        self.settings: Settings = checks.settings(_merge(overrides or {}, given))
        if mode == "live" and not confirm_live and self.settings.live_confirm.strip().lower() != "yes":
            raise ValueError("live mode places real orders with real money: pass confirm_live=True (or set "
                             "TRADER_LIVE_CONFIRM=yes)")
        try:
            builders.check_mode(self.settings)
        except ConfigError as exc:
            raise ValueError("; ".join(line.removeprefix("config error: ") for line in exc.lines)) from None
        self.start_timeout_s = float(start_timeout_s)
        self._app: App | None = None
        self._run: asyncio.Task[RunResult] | None = None
        self._service: ControlService | None = None
        self._final: dict[str, Any] | None = None

    @property
    def trading_mode(self) -> str:
        return self.settings.mode

    @property
    def auto_execution(self) -> bool:
        return self.settings.effective_auto_execution

    @property
    def running(self) -> bool:
        task = self._run
        return task is not None and RUNNER.running and not RUNNER.call(task.done)

    @property
    def app(self) -> App:
        """The running daemon (its actors, bus and books, for reading; act through this class's methods)."""
        if self._app is None:
            raise RuntimeError("the trading system is not running: call start() first")
        return self._app

    # -- life cycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the daemon and return once it trades (its start-up reconciliation passed and the market ticks);
        a start-up problem raises with the daemon's own message."""
        if self.running:
            return
        RUNNER.acquire(self)
        try:
            self._app, self._run = RUNNER.run(self._start(), self.start_timeout_s + 10,
                                              what="starting the trading system")
        except BaseException:
            RUNNER.release(self)
            raise
        self._service = ControlService(self._app, source="python-api")
        self._final = None

    async def _start(self) -> tuple[App, asyncio.Task[RunResult]]:
        try:
            app = App(self.settings)
        except ConfigError as exc:
            raise RuntimeError("\n".join(exc.lines)) from None
        ticking = asyncio.Event()
        app.bus.tap(lambda event: ticking.set() if type(event) is Tick else None)
        run = asyncio.create_task(app.run(install_signal_handlers=False), name="trading-system")
        ready = asyncio.create_task(ticking.wait(), name="trading-system-ready")
        done, _ = await asyncio.wait({run, ready}, timeout=self.start_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if run not in done:
                app.request_stop("did not start in time")
                await asyncio.wait({run}, timeout=self.settings.shutdown_timeout_seconds + 1)
                raise TimeoutError(f"the trading system did not start within {self.start_timeout_s:g}s")
            error = run.exception()
            if isinstance(error, ConfigError):
                raise RuntimeError("\n".join(error.lines)) from None
            raise RuntimeError("the trading system stopped during start-up") from error
        return app, run

    def stop(self) -> dict[str, Any]:
        """Stop gracefully as the daemon does on SIGTERM (no new entries, in-flight orders settle, the journal is
        flushed); returns the final performance report."""
        app, run = self._app, self._run
        if app is not None and run is not None and RUNNER.running:

            async def finish() -> RunResult:
                app.request_stop("stopped through the Python API")
                return await run

            RUNNER.run(finish(), self.settings.shutdown_timeout_seconds + 10, what="stopping the daemon")
            service = self._service
            self._final = RUNNER.call(service.report) if service is not None else None
        self._app = self._run = self._service = None
        RUNNER.release(self)
        return self._final or {}

    close = stop

    def __enter__(self) -> LiveOptionsTradingSystem:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the seed's calls ------------------------------------------------------------------------------------------
    def manual_order(self, *, contract_symbol: str | OptionContract, quantity: int | None = None,
                     side: str, order_type: str = "MARKET", lots: int | None = None, price: float | None = None,
                     trigger_price: float | None = None, expiry: str | None = None, market_protection: float = -1.0,
                     confirm: bool = False, dry_run: bool = False, reason: str = "") -> dict[str, Any]:
        """A manual order through the risk gate: ``contract_symbol`` a tradingsymbol (``NIFTY26D0826000CE``) or a
        spoken form (``NIFTY ATM CE``, ``NIFTY ATM+2 PE``, ``NIFTY 26000 CE``; nearest expiry unless ``expiry``);
        ``quantity`` in units (whole lots) or ``lots``. Live mode needs ``confirm=True``. The answer shows how the
        contract was resolved and what the risk gate decided."""
        instrument = (f"{contract_symbol.exchange}:{contract_symbol.tradingsymbol}"
                      if isinstance(contract_symbol, OptionContract) else contract_symbol)
        try:
            order = ManualOrder.model_validate(checks.given(
                instrument=instrument, quantity=quantity, lots=lots, side=side, order_type=order_type, price=price,
                trigger_price=trigger_price, expiry=expiry, market_protection=market_protection, confirm=confirm,
                dry_run=dry_run, reason=reason or "manual order through the Python API"))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'order'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"manual_order: {problems}") from None
        return self._act(lambda service: service.place_order(order), "the manual order")

    def get_performance_report(self) -> dict[str, Any]:
        """Trades, win rate, profit factor, P&L after charges, drawdown, slippage and the equity curve (rupees);
        after ``stop()``, the final one."""
        if self._service is None:
            if self._final is not None:
                return dict(self._final)
            raise RuntimeError("the trading system has not run: call start() first")
        return self._read(ControlService.report)

    def status(self) -> dict[str, Any]:
        return self._read(ControlService.status)

    def positions(self) -> dict[str, Any]:
        return self._read(ControlService.positions)

    def orders(self) -> dict[str, Any]:
        return self._read(ControlService.orders)

    def signals(self) -> dict[str, Any]:
        """Recent signals, and the semi-live entries pending approval (``approve(intent_id)``)."""
        return self._read(ControlService.signals)

    def risk(self) -> dict[str, Any]:
        return self._read(ControlService.risk)

    def metrics(self) -> str:
        """The daemon's Prometheus metrics, as ``GET /metrics`` answers them (docs/metrics.md)."""
        app = self._live_service().app
        return RUNNER.call(lambda: generate_latest(app.metrics_registry).decode())

    def halt(self, reason: str = "") -> dict[str, Any]:
        """Stop trading without stopping the daemon: no new orders until ``resume()``; positions stay."""
        return self._act(lambda service: service.halt(reason or "halted through the Python API"), "halt")

    def resume(self) -> dict[str, Any]:
        return self._act(lambda service: service.resume(), "resume")

    def reset_daily(self) -> dict[str, Any]:
        """Reset the daily risk limits: the daily loss window starts afresh at the current equity."""
        return self._act(lambda service: service.reset_daily(), "reset-daily")

    def flatten(self, underlying: str | None = None) -> dict[str, Any]:
        """Close all positions (or one underlying's) at the market, through the risk gate as a flatten."""
        return self._act(lambda service: service.flatten(underlying), "flatten")

    def cancel(self, ref: str) -> dict[str, Any]:
        return self._act(lambda service: service.cancel(ref), "cancel")

    def approve(self, ref: str) -> dict[str, Any]:
        """Send a pending semi-live entry (by intent or signal id) through the risk gate at the current price."""
        return self._act(lambda service: service.approve(ref), "approve")

    def reject(self, ref: str, reason: str = "") -> dict[str, Any]:
        return self._act(lambda service: service.reject(ref, reason), "reject")

    # -- plumbing ------------------------------------------------------------------------------------------------
    def _live_service(self) -> ControlService:
        if self._service is None or not self.running:
            raise RuntimeError("the trading system is not running: call start() first")
        return self._service

    def _read(self, read: Callable[[ControlService], dict[str, Any]]) -> dict[str, Any]:
        service = self._live_service()
        return RUNNER.call(lambda: read(service))

    def _act(self, act: Callable[[ControlService], Coroutine[Any, Any, dict[str, Any]]],
             what: str) -> dict[str, Any]:
        service = self._live_service()

        async def call() -> dict[str, Any]:
            try:
                return {"ok": True, **await act(service)}
            except ControlError as exc:
                body = exc.body()
                return {"ok": False, **body, "status": exc.status, "message": exc.message}

        return RUNNER.run(call(), service.wait_s + 30, what=what)
