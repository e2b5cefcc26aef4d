"""A live daemon restarted against the exchange simulator on another day than the wall clock's (a `trader sim
--start` rehearsal): what it restores is judged at the session's time, never at wall time.

The exchange clock reads wall time until Kite's first timestamp. The restored risk state used to be judged at that
moment: on a simulated day earlier than today, the saved day's loss windows rolled over to today's date, so a
breached day came back ACTIVE and the day's losses were forgotten (and the windows, keyed to a later day, never
rolled over with the session again).
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path

import pytest

from trader.actors.risk import STATE_NAME as RISK_STATE_NAME
from trader.app import App
from trader.config import load_settings
from trader.events import Side, Tick, TradingState
from trader.market.calendar import IST
from trader.market.instruments import FALLBACK_UNDERLYINGS, OptionContract, OptionType
from trader.risk.core import RiskManager
from trader.sim import ExchangeSimulator
from trader.store.journal import Journal

from helpers import captured_logs, sim_access_token

# Fri 20 Nov 2026 09:20 IST: a session day before the day this test was written, so before any wall clock that runs
# it (the bug needs the session on an earlier day than wall time).
OPEN = int(datetime(2026, 11, 20, 9, 20, tzinfo=IST).timestamp()) * 1_000_000_000


def breached_state(capital: float) -> dict[str, object]:
    """The risk state of a run that lost 2.6 % of capital on 20 Nov 2026 (daily limit 2 %): REDUCING_ONLY."""
    load = load_settings({"risk": {"initial_capital": capital}})
    spec = FALLBACK_UNDERLYINGS["NIFTY"]
    contract = OptionContract(exchange="NFO", tradingsymbol="NIFTY26N2326000CE", underlying="NIFTY",
                              expiry=date(2026, 11, 23), strike=2_600_000, option_type=OptionType.CE,
                              lot_size=spec.lot_size, tick_size=5, instrument_token=11)
    manager = RiskManager(load.risk, now_ns=lambda: OPEN)
    loss_per_unit = round(capital * 100 * 0.026 / spec.lot_size)
    manager.on_fill(contract, Side.BUY, spec.lot_size, 20_000 + loss_per_unit, 0, OPEN)
    manager.on_fill(contract, Side.SELL, spec.lot_size, 20_000, 0, OPEN + 1_000_000_000)
    assert manager.metrics(OPEN + 1_000_000_000).trading_state is TradingState.REDUCING_ONLY
    return manager.to_state()


async def test_a_breached_simulated_day_stays_breached_across_a_restart(tmp_path: Path,
                                                                        clean_env: pytest.MonkeyPatch) -> None:
    sim = ExchangeSimulator(start_ns=OPEN, speed=1.0)
    base = await sim.start()
    try:
        token = await sim_access_token(base)
        settings = load_settings({
            "mode": "live", "live_confirm": "yes", "data_dir": str(tmp_path),
            "kite": {"api_key": "sim_api_key", "access_token": token},
            "kite_api_root": base, "kite_ws_root": sim.ws_url, "kite_timeout_seconds": 2.0,
            "control": {"enabled": False},
        })
        journal = Journal(tmp_path / "live.sqlite3")
        journal.save_state(RISK_STATE_NAME, breached_state(settings.risk.initial_capital), OPEN)
        journal.close()
        with captured_logs() as lines:
            app = App(settings)
            seen: list[TradingState] = []

            def first_tick(event: object) -> None:
                if type(event) is Tick and not seen:
                    seen.append(app.risk.manager.metrics(app.clock.now_ns()).trading_state)
                    app.request_stop("test over")

            app.bus.tap(first_tick)
            async with asyncio.timeout(60):
                await app.run(install_signal_handlers=False)
    finally:
        await sim.stop()
    restored = next(line for line in lines if line["event"] == "risk_state_restored")
    assert restored["state"] == "REDUCING_ONLY", restored
    refusal = next(line for line in lines if line["event"] == "risk_state_refuses_entries")
    assert "daily" in refusal["reason"] and "trader reset-daily" in refusal["how_to_clear"], refusal
    assert seen == [TradingState.REDUCING_ONLY]  # on the session's day the breach holds
    assert app.risk.manager.to_state()["day"] == "2026-11-20"
