"""opening_range_breakout on constructed index paths, across a restart, and through a whole backtest."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from datetime import time
from typing import Any

import pytest
from pydantic import ValidationError
from test_strategy import EXPIRY, NIFTY, at, make_context

from trader.actors.strategy import StrategyActor
from trader.app import App
from trader.bus import EventBus
from trader.config import StrategySettings, load_settings
from trader.events import (
    Direction,
    Fill,
    Heartbeat,
    IntentPurpose,
    OrderIntent,
    OrderStatus,
    OrderUpdate,
    Side,
    Signal,
    Tick,
)
from trader.logging import configure_logging
from trader.market.calendar import ist_ns
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract, OptionType
from trader.market.pricing import OptionKind, black_scholes_price, greeks
from trader.strategies.base import RestoredPosition
from trader.strategies.orb import (
    ATM_DELTA,
    STRATEGY_NAME,
    OpeningRangeBreakout,
    OrbParams,
    option_delta,
    premium_risk,
)
from trader.strategies.state import state_name

RS = 100  # paise per rupee


class Driver:
    """Index ticks (and flat ₹100 quotes for every option) into the strategy as the host actor hands them over."""

    def __init__(self, params: OrbParams | None = None, common: StrategySettings | None = None) -> None:
        self.strategy = OpeningRangeBreakout(STRATEGY_NAME, NIFTY, common or StrategySettings(), params)
        self.ctx, self.contracts = make_context()
        self.out: list[Signal | OrderIntent] = []
        self.tick_id = 0
        self.quote_all(at(9, 15))

    def quote_all(self, ts_ns: int, premium: int = 10_000) -> None:
        for contract in self.contracts.values():
            self.ctx.quotes[contract.instrument_token] = Tick(
                ts_ns=ts_ns, instrument_token=contract.instrument_token, last_price=premium,
                bid=premium - 5, bid_qty=650, ask=premium + 5, ask_qty=650)

    def index(self, ts_ns: int, rupees: float) -> list[Signal | OrderIntent]:
        self.tick_id += 1
        tick = Tick(ts_ns=ts_ns, instrument_token=NIFTY.spot_token, last_price=round(rupees * RS),
                    tick_id=self.tick_id)
        self.ctx.quotes[tick.instrument_token] = tick
        produced = list(self.strategy.on_tick(tick, self.ctx))
        self.out.extend(produced)
        return produced

    def option(self, contract: OptionContract, ts_ns: int, price: int) -> list[Signal | OrderIntent]:
        tick = Tick(ts_ns=ts_ns, instrument_token=contract.instrument_token, last_price=price, bid=price - 5,
                    bid_qty=650, ask=price + 5, ask_qty=650)
        self.ctx.quotes[tick.instrument_token] = tick
        produced = list(self.strategy.on_tick(tick, self.ctx))
        self.out.extend(produced)
        return produced

    def opening(self) -> None:
        """09:15–09:30: the index swings between 25,980 and 26,020 (a 40-point range); 09:10 is before the open."""
        self.index(at(9, 10), 25_000.0)  # pre-open: not part of the range
        prices = [26_000.0, 26_020.0, 25_990.0, 25_980.0, 26_010.0]
        for second in range(15 * 60):
            self.index(at(9, 15) + second * 10**9, prices[second % len(prices)])

    def ticks(self, start_ns: int, prices: list[float]) -> list[Signal | OrderIntent]:
        produced: list[Signal | OrderIntent] = []
        for i, price in enumerate(prices):
            produced += self.index(start_ns + i * 10**9, price)
        return produced

    def fill(self, intent: OrderIntent, price: int) -> None:
        self.strategy.on_fill(Fill(ts_ns=intent.ts_ns, fill_id=intent.intent_id + "F", intent_id=intent.intent_id,
                                   order_id="O" + intent.intent_id, contract=intent.contract, side=intent.side,
                                   quantity=intent.quantity, price=price, expected_price=intent.expected_price,
                                   charges=0, purpose=intent.purpose))
        self.strategy.on_order_update(OrderUpdate(ts_ns=intent.ts_ns, intent_id=intent.intent_id,
                                                  order_id="O" + intent.intent_id, status=OrderStatus.COMPLETE,
                                                  filled_quantity=intent.quantity, average_price=price))


def intents(produced: list[Signal | OrderIntent]) -> list[OrderIntent]:
    return [p for p in produced if isinstance(p, OrderIntent)]


def signals(produced: list[Signal | OrderIntent]) -> list[Signal]:
    return [p for p in produced if isinstance(p, Signal)]


def entered(direction: Direction = Direction.BULLISH) -> tuple[Driver, OrderIntent]:
    driver = Driver()
    driver.opening()
    price = 26_030.0 if direction is Direction.BULLISH else 25_970.0
    [entry] = intents(driver.ticks(at(9, 40), [price] * 3))
    driver.fill(entry, entry.expected_price)
    return driver, entry


# -- the range -----------------------------------------------------------------------------------------------
def test_the_range_is_the_high_and_low_of_the_first_minutes_after_the_open() -> None:
    driver = Driver()
    driver.opening()
    assert driver.strategy.opening_range is None  # not complete until a tick at or after 09:30
    assert driver.out == []
    driver.index(at(9, 30), 26_000.0)  # the first tick after the window: inside the range, no break
    assert driver.strategy.opening_range == (25_980 * RS, 26_020 * RS)
    assert driver.out == []


def test_a_range_wider_than_max_range_pct_is_not_traded() -> None:
    driver = Driver(OrbParams(max_range_pct=0.001))  # 40 points on 26,000 is 0.15 %
    driver.opening()
    assert driver.ticks(at(9, 40), [26_100.0] * 5) == []
    assert driver.strategy.opening_range is None


def test_a_day_whose_open_was_missed_has_no_range() -> None:
    driver = Driver()
    assert driver.ticks(at(9, 45), [26_000.0, 26_100.0, 26_100.0, 26_100.0, 26_100.0]) == []
    assert driver.strategy.opening_range is None


# -- breaks --------------------------------------------------------------------------------------------------
def test_a_confirmed_break_above_buys_the_atm_call_of_the_nearest_expiry() -> None:
    driver = Driver(common=StrategySettings(lots=2))
    driver.opening()
    # Two ticks above the high, then back inside: not confirmed (confirm_ticks = 3 consecutive).
    assert driver.ticks(at(9, 35), [26_030.0, 26_030.0, 26_010.0, 26_030.0, 26_030.0]) == []
    produced = driver.index(at(9, 36), 26_035.0)
    [signal] = signals(produced)
    [entry] = intents(produced)
    assert signal.direction is Direction.BULLISH and entry.signal_id == signal.signal_id
    assert entry.side is Side.BUY and entry.purpose is IntentPurpose.ENTRY
    assert entry.contract.option_type is OptionType.CE and entry.contract.expiry == EXPIRY
    assert entry.contract.strike == 26_050 * RS  # nearest strike to 26,035
    assert entry.quantity == 2 * 65 and entry.expected_price == 10_005
    # confidence: 0.5 + excess/width = 0.5 + 15/40
    assert signal.confidence == pytest.approx(87.5)


def test_a_confirmed_break_below_buys_the_atm_put() -> None:
    driver = Driver()
    driver.opening()
    produced = driver.ticks(at(9, 35), [25_970.0, 25_970.0, 25_970.0])
    [signal] = signals(produced)
    [entry] = intents(produced)
    assert signal.direction is Direction.BEARISH and signal.confidence == pytest.approx(75.0)
    assert entry.contract.option_type is OptionType.PE and entry.contract.strike == 25_950 * RS


def test_entries_are_sized_to_the_risk_budget_of_the_context() -> None:
    """The stop risks ``premium_risk`` per unit; the context's risk budget caps the lots, down to refusing."""
    def entry_with(budget: int) -> tuple[list[Signal], list[OrderIntent]]:
        driver = Driver(common=StrategySettings(lots=3))
        driver.ctx.risk_budget = budget
        driver.opening()
        produced = driver.ticks(at(9, 35), [26_030.0] * 3)
        return signals(produced), intents(produced)

    [_signal], [entry] = entry_with(0)  # no budget known: [strategy] lots
    assert entry.quantity == 3 * 65
    per_lot = (entry.expected_price - (entry.stop_loss_price or 0)) * 65
    assert entry_with(2 * per_lot)[1][0].quantity == 2 * 65  # exactly two lots fit
    assert entry_with(2 * per_lot - 1)[1][0].quantity == 65  # a paisa short of two: one
    assert entry_with(10 * per_lot)[1][0].quantity == 3 * 65  # never more than [strategy] lots
    [refused], no_intent = entry_with(per_lot - 1)
    assert no_intent == [] and "not traded: one lot risks" in refused.reason
    assert "max_risk_per_trade_pct" in refused.reason


def test_a_weak_break_is_reported_but_not_traded() -> None:
    driver = Driver(common=StrategySettings(confidence_cutoff=90))
    driver.opening()
    produced = driver.ticks(at(9, 35), [26_025.0] * 3)
    [signal] = signals(produced)
    assert intents(produced) == [] and "not traded: confidence below the cutoff" in signal.reason


def test_one_trade_per_direction_per_day_and_the_next_day_starts_afresh() -> None:
    driver, entry = entered(Direction.BULLISH)
    [stop] = intents(driver.option(entry.contract, at(9, 50), 5_000))
    assert stop.reason == "stop_loss"
    driver.fill(stop, 4_995)
    assert driver.strategy.holdings() == []
    # The index breaks above again: the bullish trade of the day is spent.
    assert driver.ticks(at(10, 0), [26_040.0] * 10) == []
    # A break below is still allowed, once.
    [put] = intents(driver.ticks(at(10, 30), [25_960.0] * 3))
    assert put.contract.option_type is OptionType.PE
    driver.fill(put, put.expected_price)
    [out] = intents(driver.option(put.contract, at(10, 40), 5_000))
    driver.fill(out, 4_995)
    assert driver.ticks(at(11, 0), [25_950.0] * 10) == []
    # The next session builds its own range and may trade both ways again.
    tomorrow = at(9, 15) + 3 * 86_400 * 10**9  # Mon 23 Nov
    driver.quote_all(tomorrow)
    for second in range(15 * 60):
        driver.index(tomorrow + second * 10**9, 26_000.0 + (second % 3) * 10)
    driver.index(tomorrow + 15 * 60 * 10**9, 26_010.0)
    assert driver.strategy.opening_range == (26_000 * RS, 26_020 * RS)
    [again] = intents(driver.ticks(tomorrow + 20 * 60 * 10**9, [26_050.0] * 3))
    assert again.contract.option_type is OptionType.CE


def test_no_entry_before_first_entry_time_nor_after_last_entry_time() -> None:
    early = Driver(OrbParams(range_minutes=1))  # range 09:15-09:16; entries from 09:20
    for second in range(60):
        early.index(at(9, 15) + second * 10**9, 26_000.0 + second % 2 * 10)
    assert early.ticks(at(9, 17), [26_050.0] * 5) == []
    assert len(intents(early.index(at(9, 20), 26_050.0))) == 1  # still beyond once the window opens

    late = Driver()
    late.opening()
    assert late.ticks(at(15, 0), [26_100.0] * 5) == []


# -- stop, target, exits -------------------------------------------------------------------------------------
def test_premium_risk_is_delta_times_the_distance_in_whole_ticks_floored_at_one_tick() -> None:
    assert premium_risk(0.5, 5_000, 10_000, 5) == 2_500
    assert premium_risk(0.52, 5_001, 10_000, 5) == 2_605  # 2,600.52 rounded up to a whole tick
    assert premium_risk(0.5, 1_000_000, 10_000, 5) == 9_995  # the stop never goes below one tick
    assert premium_risk(0.5, 0, 10_000, 5) == 5  # at least one tick of risk


def test_option_delta_comes_from_the_quote_implied_volatility() -> None:
    contract = OptionContract.build(NIFTY, EXPIRY, 26_000 * RS, OptionType.CE, monthly=True, instrument_token=9)
    now = at(10, 0)
    years = (ist_ns(EXPIRY, time(15, 30)) - now) / (365 * 86_400 * 10**9)
    price = black_scholes_price(OptionKind.CALL, 26_100.0, 26_000.0, years, 0.0, 0.15)
    paise = round(price * RS)
    quote = Tick(ts_ns=now, instrument_token=9, last_price=paise, bid=paise - 5, ask=paise + 5)
    expected = greeks(OptionKind.CALL, 26_100.0, 26_000.0, years, 0.0, 0.15).delta
    assert option_delta(contract, quote, 26_100 * RS, now) == pytest.approx(expected, abs=0.01)
    assert 0.5 < expected < 0.9
    no_quote = Tick(ts_ns=now, instrument_token=9, last_price=0)
    assert option_delta(contract, no_quote, 26_100 * RS, now) == ATM_DELTA


def test_the_stop_is_the_premium_with_the_index_back_at_the_other_side_and_the_target_is_r_multiples() -> None:
    driver = Driver(OrbParams(target_r=1.5))
    driver.opening()
    produced = driver.ticks(at(9, 40), [26_030.0] * 3)
    [entry] = intents(produced)
    quote = driver.ctx.quotes[entry.contract.instrument_token]
    delta = option_delta(entry.contract, quote, 26_030 * RS, at(9, 40, 2))
    risk = premium_risk(delta, (26_030 - 25_980) * RS, 10_005, 5)
    assert 0.3 < delta < 0.7 and risk == pytest.approx(delta * 50 * RS, abs=5)
    assert entry.stop_loss_price == 10_005 - risk
    driver.fill(entry, 10_100)  # filled worse than expected: the levels follow the fill, the risk stays
    [holding] = driver.strategy.holdings()
    assert holding.stop_price == 10_100 - risk
    assert holding.target_price == 10_100 + round(1.5 * risk + 0.49)
    assert driver.option(entry.contract, at(9, 45), holding.stop_price + 10) == []  # bid 5 above the stop
    [stop] = intents(driver.option(entry.contract, at(9, 46), holding.stop_price + 5))
    assert stop.reason == "stop_loss" and stop.quantity == 65 and stop.side is Side.SELL


def test_target_exit() -> None:
    driver, entry = entered()
    [holding] = driver.strategy.holdings()
    assert driver.option(entry.contract, at(10, 0), holding.target_price) == []  # the bid is 5 below
    [target] = intents(driver.option(entry.contract, at(10, 1), holding.target_price + 5))
    assert target.reason == "target"


def test_everything_is_exited_by_exit_time() -> None:
    driver, entry = entered()
    assert driver.index(at(15, 9, 59), 26_010.0) == []
    [out] = intents(driver.index(at(15, 10), 26_010.0))
    assert (out.reason, out.side, out.quantity, out.contract) == ("time_exit", Side.SELL, 65, entry.contract)
    assert driver.index(at(15, 10, 1), 26_010.0) == []  # one exit working at a time


def test_params_are_strict_and_frozen() -> None:
    with pytest.raises(ValidationError):
        OrbParams.model_validate({"range_minutes": 15, "rang_minutes": 5})
    with pytest.raises(ValidationError):
        OrbParams(range_minutes=0)
    params = OrbParams()
    with pytest.raises(ValidationError):
        params.range_minutes = 30  # type: ignore[misc]
    assert OpeningRangeBreakout.Params is OrbParams and OpeningRangeBreakout.name == "opening_range_breakout"


# -- across a restart ----------------------------------------------------------------------------------------
def saved(driver: Driver) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(driver.strategy.snapshot_state()))
    return doc


def held(contract: OptionContract, quantity: int = 65, price: int = 10_005) -> RestoredPosition:
    return RestoredPosition(contract=contract, quantity=quantity, average_price=price, strategy_id=STRATEGY_NAME,
                            opened_ns=0)


def test_round_trip_keeps_the_range_the_position_and_its_stop() -> None:
    driver, entry = entered()
    doc = saved(driver)
    assert (doc["range_low"], doc["range_high"], doc["up_done"], doc["down_done"]) == (
        25_980 * RS, 26_020 * RS, 1, 0)
    after = Driver(OrbParams(target_r=5.0))  # changed parameters do not move an open trade's levels
    assert after.strategy.restore_state(doc, [held(entry.contract)]) == []
    assert saved(after) == doc
    assert after.strategy.opening_range == (25_980 * RS, 26_020 * RS)
    [holding] = after.strategy.holdings()
    assert (holding.stop_price, holding.target_price) == (doc["stop_price"], doc["target_price"])
    [stop] = intents(after.option(entry.contract, at(10, 0), holding.stop_price))
    assert stop.reason == "stop_loss"
    after.fill(stop, holding.stop_price - 5)
    assert after.ticks(at(10, 5), [26_050.0] * 5) == []  # the bullish trade was spent before the restart


def test_a_restart_inside_the_range_window_keeps_what_was_seen() -> None:
    driver = Driver()
    for second in range(300):  # 09:15-09:20 only
        driver.index(at(9, 15) + second * 10**9, 26_000.0 + (second % 2) * 40)
    doc = saved(driver)
    after = Driver()
    after.strategy.restore_state(doc, [])
    for second in range(300, 900):
        after.index(at(9, 15) + second * 10**9, 26_010.0)
    after.index(at(9, 30), 26_010.0)
    assert after.strategy.opening_range == (26_000 * RS, 26_040 * RS)


def test_a_saved_range_of_another_day_is_dropped() -> None:
    driver, entry = entered()
    driver.fill(intents(driver.option(entry.contract, at(10, 0), 4_000))[0], 3_995)
    doc = saved(driver)
    after = Driver()
    after.strategy.restore_state(doc, [])
    tomorrow = at(9, 15) + 3 * 86_400 * 10**9
    after.index(tomorrow + 16 * 60 * 10**9, 26_000.0)  # a late start the next day: no range for that day
    assert after.strategy.opening_range is None
    assert saved(after)["up_done"] == 0


def test_without_a_document_the_position_is_taken_with_the_common_stop() -> None:
    contract = make_context()[1][(26_000, OptionType.CE)]
    driver = Driver(common=StrategySettings(stop_loss_pct=0.2), params=OrbParams(target_r=2.0))
    assert driver.strategy.restore_state(None, [held(contract, price=10_000)]) == []
    [holding] = driver.strategy.holdings()
    assert (holding.stop_price, holding.target_price) == (8_000, 14_000)


def test_a_malformed_document_is_refused_and_changes_nothing() -> None:
    driver, entry = entered()
    before = saved(driver)
    for field, value, words in (("range_low", 99_999_999, "range_low"), ("up_done", 2, "up_done"),
                                ("day", "tomorrow", "day"), ("risk_per_unit", "7", "risk_per_unit")):
        with pytest.raises(ValueError, match=words):
            driver.strategy.restore_state({**before, field: value}, [held(entry.contract)])
        assert saved(driver) == before


# -- the whole daemon ----------------------------------------------------------------------------------------
def test_a_two_day_backtest_trades_and_ends_flat() -> None:
    configure_logging("WARNING", io.StringIO())
    settings = load_settings({
        "mode": "backtest", "strategies": ["opening_range_breakout"],
        "sim": {"days": 2, "start": "2026-11-19T09:00:00", "seed": 7, "chain_interval_ms": 5_000},
        # An ATM NIFTY lot risks about ₹1,300-1,700 to the range's other side: allow 3 % of ₹1 lakh per trade.
        "risk": {"max_risk_per_trade_pct": 0.03},
    })
    app = App(settings)
    fills: list[Fill] = []
    app.bus.tap(lambda e: fills.append(e) if type(e) is Fill else None)
    result = asyncio.run(app.run(install_signal_handlers=False))
    assert result.counters["signals"] >= 2
    assert result.summary.trades >= 2
    entries = [f for f in fills if f.purpose is IntentPurpose.ENTRY]
    exits = [f for f in fills if f.purpose is IntentPurpose.EXIT]
    assert entries and sum(f.quantity for f in entries) == sum(f.quantity for f in exits)
    assert {f.contract.option_type for f in entries} <= {OptionType.CE, OptionType.PE}
    assert all(f.quantity % 65 == 0 for f in entries)
    assert result.summary.open_positions == 0


def test_the_index_token_of_the_days_master_wins_over_the_fallback_table() -> None:
    driver = Driver()
    index = driver.ctx.instruments.index_for("NIFTY")
    assert index is not None
    driver.ctx.instruments = InstrumentMaster()
    driver.ctx.instruments.add_index(dataclasses.replace(index, instrument_token=4242))
    for contract in driver.contracts.values():
        driver.ctx.instruments.add(contract)
    driver.opening()  # on the fallback token: not the day's index
    driver.index(at(9, 30), 26_000.0)
    assert driver.strategy.opening_range is None
    for second in range(15 * 60 + 1):
        tick = Tick(ts_ns=at(9, 15) + 86_400 * 10**9 * 3 + second * 10**9, instrument_token=4242,
                    last_price=2_600_000 + (second % 2) * 1_000)
        driver.strategy.on_tick(tick, driver.ctx)
    assert driver.strategy.opening_range == (2_600_000, 2_601_000)


def test_the_host_actor_saves_the_range_on_a_heartbeat_so_a_restart_keeps_it() -> None:
    driver = Driver()
    docs: dict[str, dict[str, object]] = {}

    def save(name: str, doc: dict[str, object]) -> None:
        docs[name] = json.loads(json.dumps(doc))

    actor = StrategyActor(EventBus(), [driver.strategy], driver.ctx, save_state=save)

    async def day() -> None:
        for second in range(15 * 60 + 1):
            await actor.handle(Tick(ts_ns=at(9, 15) + second * 10**9, instrument_token=NIFTY.spot_token,
                                    last_price=2_600_000 + (second % 2) * 4_000))
        assert docs == {}  # no trade yet: ticks alone are not saved
        await actor.handle(Heartbeat(ts_ns=at(9, 30, 1)))

    asyncio.run(day())
    doc = docs[state_name(STRATEGY_NAME)]
    assert (doc["range_low"], doc["range_high"], doc["range_complete"]) == (2_600_000, 2_604_000, 1)
    after = Driver()
    after.strategy.restore_state(doc, [])
    assert after.strategy.opening_range == (2_600_000, 2_604_000)
    assert len(intents(after.ticks(at(9, 45), [26_050.0] * 3))) == 1  # trades on the saved range
