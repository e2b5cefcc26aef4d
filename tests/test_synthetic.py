"""The built-in market: sessions on the simulated clock, the option chain, prices, spreads and depth."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time

from trader.adapters.synthetic import SyntheticConfig, SyntheticMarket
from trader.clock import SimClock
from trader.events import Tick
from trader.market.calendar import IST, MarketCalendar, ist_date
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, OptionContract, OptionType
from trader.market.pricing import OptionKind, black_scholes_price

NIFTY = FALLBACK_UNDERLYINGS["NIFTY"]
NS = 1_000_000_000


def ist(d: date, hh: int, mm: int) -> int:
    return int(datetime.combine(d, time(hh, mm), tzinfo=IST).timestamp()) * NS


async def collect(start_ns: int, days: int, **config: int) -> tuple[SyntheticMarket, InstrumentMaster, list[Tick]]:
    clock = SimClock(start_ns, speed=0)
    market = SyntheticMarket(clock, MarketCalendar(), NIFTY,
                             SyntheticConfig(seed=3, days=days, chain_interval_ms=config.pop("chain", 60_000),
                                             tick_interval_ms=config.pop("tick", 1_000)))
    master = InstrumentMaster()
    await market.start(master)
    ticks = [tick async for batch in market.stream() for tick in batch]
    return market, master, ticks


async def test_ticks_only_during_sessions_skipping_weekend_and_holiday() -> None:
    # Fri 20 Nov 2026 at 20:00 IST → next sessions Mon 23 Nov, then Wed 25 Nov (24 Nov is Guru Nanak Jayanti).
    _, _, ticks = await collect(ist(date(2026, 11, 20), 20, 0), days=2, tick=60_000, chain=600_000)
    days = sorted({ist_date(t.ts_ns) for t in ticks})
    assert days == [date(2026, 11, 23), date(2026, 11, 25)]
    calendar = MarketCalendar()
    assert all(calendar.is_open(t.ts_ns) for t in ticks)
    first = min(t.ts_ns for t in ticks)
    assert first == ist(date(2026, 11, 23), 9, 15)
    assert max(t.ts_ns for t in ticks) < ist(date(2026, 11, 25), 15, 40)
    assert [t.ts_ns for t in ticks] == sorted(t.ts_ns for t in ticks)


async def test_chain_around_atm_with_consistent_prices_spreads_and_depth() -> None:
    market, master, ticks = await collect(ist(date(2026, 11, 20), 9, 15), days=1, tick=60_000, chain=600_000)
    chain = master.option_chain("NIFTY", date(2026, 11, 23))  # 24 Nov is a holiday: the weekly moved to Monday
    strikes = sorted({c.strike for c in chain})
    assert len(strikes) >= 21 and all(b - a == 5_000 for a, b in itertools.pairwise(strikes))
    assert all(c.lot_size == 65 and c.tick_size == 5 for c in chain)
    first_chain_ts = min(t.ts_ns for t in ticks if isinstance(master.by_token(t.instrument_token), OptionContract))
    at_open = {t.instrument_token: t for t in ticks if t.ts_ns == first_chain_ts}
    spot = at_open[NIFTY.spot_token].last_price
    atm = min(strikes, key=lambda k: abs(k - spot))
    by_key = {(c.strike, c.option_type): c for c in chain}
    # Put-call parity holds on the quoted mids to within the spreads and rounding.
    call = at_open[by_key[atm, OptionType.CE].instrument_token]
    put = at_open[by_key[atm, OptionType.PE].instrument_token]
    years = (ist(date(2026, 11, 23), 15, 40) - first_chain_ts) / (365 * 86_400 * NS)
    forward_gap = spot / 100 - atm / 100 * 2.718281828 ** (-0.065 * years)
    assert abs((call.last_price - put.last_price) / 100 - forward_gap) < 1.0
    fair = black_scholes_price(OptionKind.CALL, spot / 100, atm / 100, years, 0.065, 0.13)
    assert abs(call.last_price / 100 - fair) < 0.05 * fair
    for tick in (call, put):
        assert 0 < tick.bid < tick.last_price < tick.ask and tick.bid_qty % 65 == 0 and tick.ask_qty > 0
    far = at_open[by_key[max(strikes), OptionType.CE].instrument_token]
    assert (far.ask - far.bid) > (call.ask - call.bid) or far.bid == 5  # wider away from the money
    assert far.ask_qty < call.ask_qty  # thinner away from the money
    assert market.chain and all(c.expiry == date(2026, 11, 23) for c in market.chain)


async def test_same_seed_same_path_and_two_sessions_share_an_expiry() -> None:
    # Wed 25 and Thu 26 Nov both list the 1 Dec weekly: contracts keep their tokens, nothing is registered twice.
    _, master, first = await collect(ist(date(2026, 11, 25), 9, 0), days=2, tick=30_000, chain=900_000)
    _, _, second = await collect(ist(date(2026, 11, 25), 9, 0), days=2, tick=30_000, chain=900_000)
    assert first == second
    tokens = {t.instrument_token for t in first}
    assert all(master.by_token(token) is not None for token in tokens)
    assert master.expiries("NIFTY") == [date(2026, 12, 1)]


async def test_index_moves_realistically_within_a_day() -> None:
    _, _, ticks = await collect(ist(date(2026, 11, 20), 9, 15), days=1, chain=10_000_000)
    index = [t.last_price for t in ticks if t.instrument_token == NIFTY.spot_token]
    assert len(index) == 6 * 3600 + 25 * 60  # one tick a second, 09:15-15:40
    day_range = (max(index) - min(index)) / index[0]
    assert 0.001 < day_range < 0.04
    assert all(p % 5 == 0 for p in index)


async def test_option_tokens_carry_the_segment_code_and_never_collide_across_underlyings() -> None:
    _, nifty_master, _ = await collect(ist(date(2026, 11, 20), 9, 15), days=1, tick=600_000, chain=600_000)
    clock = SimClock(ist(date(2026, 11, 20), 9, 15), speed=0)
    sensex = SyntheticMarket(clock, MarketCalendar(), FALLBACK_UNDERLYINGS["SENSEX"],
                             SyntheticConfig(seed=3, days=1, spot=85_000, tick_interval_ms=600_000,
                                             chain_interval_ms=600_000))
    sensex_master = InstrumentMaster()
    await sensex.start(sensex_master)
    _ = [t async for batch in sensex.stream() for t in batch]
    nifty_tokens = {c.instrument_token for c in nifty_master.option_chain("NIFTY", date(2026, 11, 23))}
    sensex_tokens = {c.instrument_token for e in sensex_master.expiries("SENSEX")
                     for c in sensex_master.option_chain("SENSEX", e)}
    assert nifty_tokens and sensex_tokens and nifty_tokens.isdisjoint(sensex_tokens)
    assert {t & 0xFF for t in nifty_tokens} == {2} and {t & 0xFF for t in sensex_tokens} == {5}  # NFO, BFO
    assert max(nifty_tokens | sensex_tokens) < 2**32
