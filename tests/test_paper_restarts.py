"""Paper runs across restarts: a new run trades a new simulated session, so an old run's losses never block it.

The saved simulated day is put in 2030 on purpose: whatever today's date, the next run must start after it.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from trader import builders
from trader.actors.risk import STATE_NAME as RISK_STATE_NAME
from trader.app import App
from trader.clock import NS_PER_SECOND
from trader.config import load_settings
from trader.events import Side, TradingState
from trader.market.calendar import IST, MarketCalendar
from trader.market.instruments import FALLBACK_UNDERLYINGS, OptionContract, OptionType
from trader.risk.core import RiskManager
from trader.store.journal import Journal

from helpers import captured_logs


def ist(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=IST).timestamp()) * NS_PER_SECOND


LAST_RUN = ist(2030, 1, 1, 12, 0)  # Tue 1 Jan 2030 (no holiday data: every weekday trades)
NEXT_OPEN = ist(2030, 1, 2, 9, 15)

pytestmark = pytest.mark.usefixtures("clean_env")  # no TRADER_KITE__* from the shell turns on the Kite market


def test_the_next_run_starts_on_the_session_after_the_last_runs_day(tmp_path: Path) -> None:
    settings = load_settings({"mode": "paper", "data_dir": str(tmp_path)})
    calendar = MarketCalendar()
    journal = Journal(tmp_path / "paper.sqlite3")
    try:
        assert builders.built_in_market_start(settings, journal, calendar, ist(2029, 6, 1, 10)) == ist(2029, 6, 1, 10)
        journal.save_state(builders.PAPER_MARKET_STATE, {"last_event_ns": LAST_RUN}, LAST_RUN)
        with captured_logs() as lines:
            assert builders.built_in_market_start(settings, journal, calendar, ist(2029, 6, 1, 10)) == NEXT_OPEN
        assert [line["event"] for line in lines] == ["paper_market_continues"]
        assert lines[0]["last_run_day"] == "2030-01-01" and lines[0]["journal"] == str(journal.path)
        # A start already later than that session stays where it is.
        assert builders.built_in_market_start(settings, journal, calendar, ist(2030, 3, 4, 10)) == ist(2030, 3, 4, 10)
        for bad in ({"last_event_ns": "soon"}, {"last_event_ns": True}, {"last_event_ns": -5}, {}):
            journal.save_state(builders.PAPER_MARKET_STATE, bad, 1)
            assert builders.built_in_market_start(settings, journal, calendar, 7) == 7  # ignored, never a crash
    finally:
        journal.close()


def test_a_breached_day_of_the_last_run_does_not_block_the_next_one(tmp_path: Path) -> None:
    settings = load_settings({"mode": "paper", "data_dir": str(tmp_path)})
    # The last run lost more than the day's limit (2 %), less than the week's, on 1 Jan 2030: REDUCING_ONLY.
    spec = FALLBACK_UNDERLYINGS["NIFTY"]
    contract = OptionContract(exchange="NFO", tradingsymbol="NIFTY30JAN24000CE", underlying="NIFTY",
                              expiry=date(2030, 1, 31), strike=2_400_000, option_type=OptionType.CE,
                              lot_size=spec.lot_size, tick_size=5, instrument_token=11)
    manager = RiskManager(settings.risk, now_ns=lambda: LAST_RUN)
    manager.on_fill(contract, Side.BUY, spec.lot_size, 20_000, 0, LAST_RUN)
    manager.on_fill(contract, Side.SELL, spec.lot_size, 16_000, 0, LAST_RUN + NS_PER_SECOND)  # 2.6 % lost
    assert manager.metrics(LAST_RUN + NS_PER_SECOND).trading_state is TradingState.REDUCING_ONLY
    journal = Journal(tmp_path / "paper.sqlite3")
    journal.save_state(RISK_STATE_NAME, manager.to_state(), LAST_RUN)
    journal.save_state(builders.PAPER_MARKET_STATE, {"last_event_ns": LAST_RUN}, LAST_RUN)
    journal.close()

    with captured_logs() as lines:
        app = App(settings)
    try:
        start = app.clock.now_ns()
        assert NEXT_OPEN <= start < NEXT_OPEN + 60 * NS_PER_SECOND  # paced at speed 1 from there
        events = [line["event"] for line in lines]
        assert "paper_market_continues" in events
        # On the new session the old day's breach has rolled off: entries are allowed, and nothing says otherwise.
        assert "risk_state_refuses_entries" not in events
        assert next(line for line in lines if line["event"] == "risk_state_restored")["state"] == "ACTIVE"
        assert app.risk.manager.metrics(start).trading_state is TradingState.ACTIVE
    finally:
        assert app.journal is not None
        app.journal.close()


def test_a_restored_halt_names_the_state_the_file_and_the_way_out(tmp_path: Path) -> None:
    settings = load_settings({"mode": "paper", "data_dir": str(tmp_path)})
    manager = RiskManager(settings.risk, now_ns=lambda: LAST_RUN)
    manager.halt("kill-switch file /tmp/KILL exists", LAST_RUN)
    journal = Journal(tmp_path / "paper.sqlite3")
    journal.save_state(RISK_STATE_NAME, manager.to_state(), LAST_RUN)
    journal.close()
    with captured_logs() as lines:
        app = App(settings, start_ns=NEXT_OPEN)
    try:
        [refusal] = [line for line in lines if line["event"] == "risk_state_refuses_entries"]
        assert refusal["state"] == "HALTED" and "kill-switch" in refusal["reason"]
        assert refusal["journal"] == str(tmp_path / "paper.sqlite3") and "delete" in refusal["how_to_clear"]
    finally:
        assert app.journal is not None
        app.journal.close()
