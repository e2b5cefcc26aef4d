"""ema_crossover_enhanced on crafted price paths."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import date, datetime, time

import pytest

from trader.events import (
    Direction,
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Signal,
    Tick,
)
from trader.ids import IdFactory
from trader.market.calendar import IST
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, IndexInstrument, OptionContract, OptionType
from trader.strategies.base import StrategyContext
from trader.strategies.ema_crossover import EmaCrossoverEnhanced, EmaCrossoverParams

NIFTY = FALLBACK_UNDERLYINGS["NIFTY"]
EXPIRY = date(2026, 11, 23)
DAY = date(2026, 11, 20)
NS = 1_000_000_000


def at(hh: int, mm: int, ss: int = 0) -> int:
    return int(datetime.combine(DAY, time(hh, mm, ss), tzinfo=IST).timestamp()) * NS


def make_context() -> tuple[StrategyContext, dict[tuple[int, OptionType], OptionContract]]:
    master = InstrumentMaster()
    master.add_index(IndexInstrument(exchange="NSE", tradingsymbol="NIFTY 50", name="NIFTY",
                                     instrument_token=NIFTY.spot_token, tick_size=5))
    contracts = {}
    token = 1000
    for strike in range(25_500, 26_550, 50):
        for option_type in (OptionType.CE, OptionType.PE):
            token += 1
            contract = OptionContract.build(NIFTY, EXPIRY, strike * 100, option_type, monthly=True,
                                            instrument_token=token)
            master.add(contract)
            contracts[(strike, option_type)] = contract
    return StrategyContext(master, IdFactory(at(9, 0))), contracts


class Driver:
    """Feeds one index tick a second (and quotes for every option) into the strategy like the host actor does."""

    def __init__(self, params: EmaCrossoverParams | None = None) -> None:
        self.strategy = EmaCrossoverEnhanced(params or EmaCrossoverParams(confirm_bars=3))
        self.ctx, self.contracts = make_context()
        self.out: list[Signal | OrderIntent] = []
        self.tick_id = 0
        self.index_at: dict[int, int] = {}
        self.quote_all: Callable[[int], None] = self.quote_flat  # how ``run_path`` quotes the options; replaceable

    def quote_flat(self, ts_ns: int, premium: int = 10_000) -> None:
        for contract in self.contracts.values():
            self.ctx.quotes[contract.instrument_token] = Tick(
                ts_ns=ts_ns, instrument_token=contract.instrument_token, last_price=premium,
                bid=premium - 5, bid_qty=650, ask=premium + 5, ask_qty=650)

    def index(self, ts_ns: int, price_rupees: float) -> list[Signal | OrderIntent]:
        self.tick_id += 1
        tick = Tick(ts_ns=ts_ns, instrument_token=NIFTY.spot_token, last_price=round(price_rupees * 20) * 5,
                    tick_id=self.tick_id)
        self.ctx.quotes[tick.instrument_token] = tick
        self.index_at[ts_ns] = tick.last_price
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

    def run_path(self, start_ns: int, minutes_and_prices: list[tuple[int, float]]) -> None:
        """Piecewise-linear path: (minutes from start, price) knots, one tick per second."""
        for (m0, p0), (m1, p1) in itertools.pairwise(minutes_and_prices):
            seconds = (m1 - m0) * 60
            for s in range(seconds):
                ts = start_ns + (m0 * 60 + s) * NS
                if s % 30 == 0:
                    self.quote_all(ts)
                self.index(ts, p0 + (p1 - p0) * s / seconds)

    def intents(self) -> list[OrderIntent]:
        return [o for o in self.out if isinstance(o, OrderIntent)]

    def signals(self) -> list[Signal]:
        return [o for o in self.out if isinstance(o, Signal)]

    def fill(self, intent: OrderIntent, price: int) -> None:
        self.strategy.on_fill(Fill(ts_ns=intent.ts_ns, fill_id=intent.intent_id + "F", intent_id=intent.intent_id,
                                   order_id="O" + intent.intent_id, contract=intent.contract, side=intent.side,
                                   quantity=intent.quantity, price=price, expected_price=intent.expected_price,
                                   charges=0, purpose=intent.purpose))
        self.strategy.on_order_update(OrderUpdate(ts_ns=intent.ts_ns, intent_id=intent.intent_id,
                                                  order_id="O" + intent.intent_id, status=OrderStatus.COMPLETE,
                                                  filled_quantity=intent.quantity, average_price=price))


# 30 minutes of gentle decline (warm-up, fast EMA below slow), then a sustained rally: the fast EMA crosses above.
RALLY = [(0, 26_050.0), (30, 26_000.0), (60, 26_150.0)]
SLIDE = [(0, 25_950.0), (30, 26_000.0), (60, 25_850.0)]


def test_rally_buys_the_atm_call_in_whole_lots() -> None:
    driver = Driver()
    driver.run_path(at(9, 30), RALLY)
    intents = driver.intents()
    assert len(intents) == 1
    intent = intents[0]
    assert intent.side is Side.BUY and intent.purpose is IntentPurpose.ENTRY
    assert intent.contract.option_type is OptionType.CE
    assert intent.quantity == 65  # one NIFTY lot
    assert intent.order_type is OrderType.MARKET and intent.market_protection == -1
    index_at_signal = driver.index_at[intent.ts_ns]
    assert abs(intent.contract.strike - index_at_signal) <= 25 * 100  # nearest 50-point strike
    assert intent.expected_price == 10_005  # the ask the decision was based on
    signal = next(s for s in driver.signals() if s.signal_id == intent.signal_id)
    assert signal.direction is Direction.BULLISH and signal.confidence >= 50


def test_slide_buys_the_atm_put() -> None:
    driver = Driver()
    driver.run_path(at(9, 30), SLIDE)
    intents = driver.intents()
    assert [i.contract.option_type for i in intents] == [OptionType.PE]
    assert driver.signals()[0].direction is Direction.BEARISH


def test_flat_market_produces_no_signal() -> None:
    driver = Driver()
    driver.run_path(at(9, 30), [(0, 26_000.0), (90, 26_000.0)])
    assert driver.out == []


def test_cutoff_filters_weak_signals_but_they_are_still_reported() -> None:
    driver = Driver(EmaCrossoverParams(confidence_cutoff=100.0, confirm_bars=2))
    # A slow drift: the averages cross, but without the gap/slope/momentum a 100 cutoff demands.
    driver.run_path(at(9, 30), [(0, 26_050.0), (30, 26_000.0), (60, 26_015.0)])
    assert driver.intents() == []
    signals = driver.signals()
    assert signals and all("not acted on" in s.reason for s in signals)
    assert all(s.confidence < 100 for s in signals)


def test_confidence_components_are_bounded_and_sum_to_the_score() -> None:
    driver = Driver()
    driver.run_path(at(9, 30), RALLY)
    score, reason = driver.strategy.confidence(Direction.BULLISH)
    parts = dict(part.split("=") for part in reason.split())
    values = [float(v.split("/")[0]) for v in parts.values()]
    assert 0 <= score <= 100
    assert score == pytest.approx(sum(values), abs=0.2)
    bearish, _ = driver.strategy.confidence(Direction.BEARISH)
    assert bearish < score  # the same bars argue against the other direction


def entered_driver(params: EmaCrossoverParams | None = None) -> tuple[Driver, OrderIntent]:
    driver = Driver(params)
    driver.run_path(at(9, 30), RALLY)
    entry = driver.intents()[0]
    driver.fill(entry, 10_000)
    return driver, entry


def test_stop_loss_exits_when_the_premium_falls_30_percent() -> None:
    driver, entry = entered_driver()
    assert driver.option(entry.contract, at(10, 31), 7_500) == []  # 25 % down: hold
    produced = driver.option(entry.contract, at(10, 32), 6_900)
    assert len(produced) == 1
    exit_intent = produced[0]
    assert isinstance(exit_intent, OrderIntent)
    assert exit_intent.side is Side.SELL and exit_intent.purpose is IntentPurpose.EXIT
    assert exit_intent.quantity == entry.quantity and exit_intent.reason == "stop_loss"
    assert exit_intent.expected_price == 6_895  # the bid


def test_target_exits_when_the_premium_rises_60_percent() -> None:
    driver, entry = entered_driver()
    assert driver.option(entry.contract, at(10, 31), 15_900) == []
    produced = driver.option(entry.contract, at(10, 32), 16_100)
    assert [p.reason for p in produced if isinstance(p, OrderIntent)] == ["target"]


def test_time_exit_before_square_off_and_no_entries_late() -> None:
    driver, entry = entered_driver()
    assert driver.option(entry.contract, at(15, 9, 59), 10_000) == []
    produced = driver.option(entry.contract, at(15, 10), 10_000)
    assert [p.reason for p in produced if isinstance(p, OrderIntent)] == ["time_exit"]

    late = Driver()
    late.run_path(at(14, 40), RALLY)  # the crossover happens after 15:00
    assert late.intents() == []
    assert late.signals()  # the signal is still published


def test_opposite_signal_exits_and_a_failed_exit_is_retried_later_not_every_tick() -> None:
    driver, entry = entered_driver()
    driver.run_path(at(10, 30), [(0, 26_100.0), (30, 26_150.0), (60, 25_950.0)])
    exits = [i for i in driver.intents() if i.purpose is IntentPurpose.EXIT]
    assert [e.reason for e in exits] == ["opposite_signal"]
    # The exit is refused: the strategy is open again and retries on a later tick, not on the next one.
    driver.strategy.on_order_update(OrderUpdate(ts_ns=at(11, 31), intent_id=exits[0].intent_id, order_id="",
                                                status=OrderStatus.REJECTED, reason="test"))
    assert driver.option(entry.contract, at(11, 31, 1), 6_000) == []
    retried = driver.option(entry.contract, at(11, 31, 6), 6_000)
    assert [p.reason for p in retried if isinstance(p, OrderIntent)] == ["stop_loss"]


def test_no_entry_while_entries_are_stopped_or_without_a_quote() -> None:
    stopped = Driver()
    stopped.ctx.entries_allowed = False
    stopped.run_path(at(9, 30), RALLY)
    assert stopped.intents() == [] and stopped.signals()

    blind = Driver()
    blind.quote_all = lambda ts_ns: None  # no quotes at all
    blind.run_path(at(9, 30), RALLY)
    assert blind.intents() == []


def test_rejected_entry_returns_to_flat_and_can_enter_again() -> None:
    driver = Driver()
    driver.run_path(at(9, 30), RALLY)
    entry = driver.intents()[0]
    driver.strategy.on_order_update(OrderUpdate(ts_ns=entry.ts_ns, intent_id=entry.intent_id, order_id="",
                                                status=OrderStatus.REJECTED, reason="risk: test"))
    driver.run_path(at(10, 30), [(0, 26_100.0), (30, 26_150.0), (60, 25_950.0)])
    assert [i.contract.option_type for i in driver.intents()] == [OptionType.CE, OptionType.PE]


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="fast < slow"):
        EmaCrossoverParams(fast=21, slow=9)
    with pytest.raises(ValueError, match="confidence_cutoff"):
        EmaCrossoverParams(confidence_cutoff=120)
    with pytest.raises(ValueError, match="stop_loss_pct"):
        EmaCrossoverParams(stop_loss_pct=30)


def test_expired_contracts_left_in_the_master_are_never_chosen() -> None:
    driver = Driver()
    for strike in range(25_500, 26_550, 50):
        for option_type in (OptionType.CE, OptionType.PE):
            driver.ctx.instruments.add(OptionContract.build(
                NIFTY, date(2026, 11, 17), strike * 100, option_type, monthly=False,
                instrument_token=50_000 + strike * 2 + (option_type is OptionType.PE)))
    driver.run_path(at(9, 30), RALLY)
    assert [i.contract.expiry for i in driver.intents()] == [EXPIRY]


def test_the_strike_walks_out_of_the_money_until_the_premium_at_risk_fits_the_budget() -> None:
    # ₹1,000 at risk per trade, 30 % stop, one lot of 65: the ask may be at most ₹51.28.
    driver = Driver(EmaCrossoverParams(confirm_bars=3, max_premium_at_risk=100_000))

    def quote_by_distance(ts_ns: int) -> None:
        spot = driver.ctx.quotes[NIFTY.spot_token].last_price if NIFTY.spot_token in driver.ctx.quotes else 2_600_000
        for (strike, _), contract in driver.contracts.items():
            steps = abs(strike * 100 - spot) // 5_000
            price = max(10_000 - 2_000 * steps, 500)
            driver.ctx.quotes[contract.instrument_token] = Tick(
                ts_ns=ts_ns, instrument_token=contract.instrument_token, last_price=price, bid=price - 5,
                bid_qty=650, ask=price + 5, ask_qty=650)

    driver.quote_all = quote_by_distance
    driver.run_path(at(9, 30), RALLY)
    [intent] = driver.intents()
    assert intent.contract.option_type is OptionType.CE
    assert intent.expected_price * 65 * 0.30 <= 100_000
    assert intent.expected_price > 2_000  # the nearest strike that fits, not the cheapest one listed
    assert intent.contract.strike > driver.index_at[intent.ts_ns]  # out of the money for a call

    broke = Driver(EmaCrossoverParams(confirm_bars=3, max_premium_at_risk=1_000))  # nothing fits ₹10
    broke.run_path(at(9, 30), RALLY)
    assert broke.intents() == [] and broke.signals()
