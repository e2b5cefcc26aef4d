"""The built-in market: a seeded index path and a Black-Scholes-priced weekly option chain around ATM.

The index follows geometric Brownian motion at an intraday volatility consistent with its annual volatility
(variance spread over the trading seconds of a year), with a slowly switching drift so that trends — and EMA
crossovers — happen as they do in real sessions. Each session lists the nearest expiry's chain, ±N strikes around
the opening ATM strike, priced with an IV smile; spreads widen and displayed depth thins away from ATM, so orders
far from the money fill partially. Ticks are produced only while the (simulated) market is open: outside the
session the clock jumps to the next open.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from trader.clock import NS_PER_SECOND, SimClock
from trader.events import Tick
from trader.market.calendar import MarketCalendar, ist_date
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, IndexInstrument, OptionContract, OptionType, UnderlyingSpec
from trader.market.pricing import black_scholes_chain

_TRADING_SECONDS_PER_YEAR = 252 * 6.4 * 3600
_CALENDAR_NS_PER_YEAR = 365 * 86_400 * NS_PER_SECOND
_MIN_YEARS = 60 / (365 * 86_400)  # price expiring options with at least a minute left
# Kite's segment codes (low byte of an instrument token) for the F&O exchanges.
_SEGMENT_CODES = {"NFO": 2, "BFO": 5}
_FIRST_OPTION_SERIAL = 1_000_000  # clear of the index tokens; (7 underlyings + 1) M << 8 still fits 32 bits
_RANDOM_BLOCK = 4096


SPREAD_NOTE = "half-spread max(1 tick, 0.2 % of price) + 1 tick per 2 strikes from the index"


def years_to(expiry_close_ns: int, ts_ns: int) -> float:
    """Calendar years from ``ts_ns`` to the expiry's close (at least a minute)."""
    return max((expiry_close_ns - ts_ns) / _CALENDAR_NS_PER_YEAR, _MIN_YEARS)


def chain_quotes(is_call: npt.NDArray[np.bool_], strikes_rupees: npt.NDArray[np.float64], spot: float, years: float,
                 *, atm_iv: float, smile: float, skew: float, rate: float, tick_size: int,
                 strike_step: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The built-in chain model, pure: (prices, half-spreads) in paise on the tick grid, and each strike's distance
    from the index in strike steps. Used by the built-in market and by index-only replays (modelled options)."""
    moneyness = np.log(strikes_rupees / spot)
    vols = np.maximum(atm_iv * (1 + smile * 100 * moneyness * moneyness) - skew * moneyness, 0.01)
    fair = black_scholes_chain(is_call, spot, strikes_rupees, years, rate, vols)
    prices = np.maximum(np.rint(fair * 100 / tick_size) * tick_size, tick_size)
    steps_away = np.abs(strikes_rupees * 100 - spot * 100) / strike_step
    half_spreads = (np.maximum(1, np.rint(prices * 0.002 / tick_size)) + np.floor(steps_away / 2)) * tick_size
    return prices, half_spreads, steps_away


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    seed: int = 7
    spot: float = 26_000.0
    annual_vol: float = 0.13
    # Regime drift: over one regime it moves the index by trend_strength × (one regime's random-walk sigma), so
    # trends are visible on a chart yet a session's range stays realistic (NIFTY rarely moves > 2 % a day).
    trend_strength: float = 1.0
    regime_seconds: int = 1_800  # average time between drift changes
    atm_iv: float = 0.13
    smile: float = 2.0  # IV rises by smile × ln(K/S)² × 100 relative to ATM
    skew: float = 0.15  # puts below spot get more IV
    rate: float = 0.065
    strikes_each_side: int = 10
    tick_interval_ms: int = 1_000
    chain_interval_ms: int = 1_000
    days: int = 0  # sessions to run; 0 = until stopped

    def __post_init__(self) -> None:
        if self.spot <= 0 or self.annual_vol <= 0 or self.atm_iv <= 0:
            raise ValueError("synthetic spot, annual_vol and atm_iv must be positive")
        if self.tick_interval_ms <= 0 or self.chain_interval_ms < self.tick_interval_ms:
            raise ValueError("synthetic tick_interval_ms must be > 0 and chain_interval_ms >= tick_interval_ms")
        if self.strikes_each_side < 1 or self.days < 0 or self.regime_seconds <= 0:
            raise ValueError("synthetic strikes_each_side >= 1, days >= 0 and regime_seconds > 0 are required")


class SyntheticMarket:
    """Implements the ``MarketData`` port on a ``SimClock``."""

    def __init__(self, clock: SimClock, calendar: MarketCalendar, underlying: UnderlyingSpec,
                 config: SyntheticConfig | None = None) -> None:
        self._clock = clock
        self._calendar = calendar
        self._spec = underlying
        self._config = config or SyntheticConfig()
        self._rng = np.random.default_rng(self._config.seed)
        self._normals: list[float] = []
        self._spot = self._config.spot
        self._drift = 0.0
        self._sigma_per_second = self._config.annual_vol / math.sqrt(_TRADING_SECONDS_PER_YEAR)
        self._instruments: InstrumentMaster | None = None
        self._index = IndexInstrument(exchange=underlying.spot_exchange, tradingsymbol=underlying.spot_symbol,
                                      name=underlying.name, instrument_token=underlying.spot_token,
                                      tick_size=underlying.tick_size_paise)
        self._chain: list[OptionContract] = []
        self._chain_center = 0
        self._tokens: dict[tuple[date, int, OptionType], int] = {}
        self._strikes_rupees: npt.NDArray[np.float64] = np.empty(0)
        self._is_call: npt.NDArray[np.bool_] = np.empty(0, dtype=bool)
        self._expiry = date.min
        self._monthly = False
        self._expiry_close_ns = 0
        self._sessions_done = 0
        self._session_close_ns = 0
        self._next_ts = 0
        self._next_chain_ts = 0
        self._last_step_ns = 0
        self._tick_id = 0
        self._cum_volume: dict[int, int] = {}
        self._closed = False

    @property
    def index(self) -> IndexInstrument:
        return self._index

    @property
    def chain(self) -> list[OptionContract]:
        return list(self._chain)

    @property
    def spot(self) -> float:
        return self._spot

    async def start(self, instruments: InstrumentMaster) -> None:
        self._instruments = instruments
        instruments.add_index(self._index)

    async def close(self) -> None:
        self._closed = True

    async def stream(self) -> AsyncIterator[list[Tick]]:
        # Resumable: the state lives on the object, so a restarted feed continues where it stopped.
        config = self._config
        step_ns = config.tick_interval_ms * 1_000_000
        while not self._closed:
            if self._next_ts == 0 or self._next_ts >= self._session_close_ns:
                if config.days and self._sessions_done >= config.days:
                    return
                self._open_session()
            ts = self._next_ts
            await self._clock.sleep_until(ts)
            if self._clock.paced:
                now = self._clock.now_ns()
                if now - ts > step_ns:  # fell behind real time: skip ahead, the random walk covers the gap
                    ts = min(now - now % step_ns, self._session_close_ns - step_ns)
            batch = self._step(ts)
            self._next_ts = ts + step_ns
            yield batch

    # -- sessions -----------------------------------------------------------------------------------------
    def _open_session(self) -> None:
        now = max(self._clock.now_ns(), self._session_close_ns)
        open_ns = self._calendar.next_session_open(now)
        day = ist_date(open_ns)
        _, close_ns = self._calendar.session_bounds(day)
        start = max(open_ns, now)
        if start > self._clock.now_ns():
            self._clock.jump_to(start)
        self._session_close_ns = close_ns
        self._sessions_done += 1
        self._last_step_ns = start
        self._next_ts = start
        self._next_chain_ts = start
        self._list_chain(start)

    def _list_chain(self, ts_ns: int) -> None:
        spec = self._spec
        expiry = self._calendar.next_expiry(spec.name, ts_ns)
        monthly = expiry == self._calendar.monthly_expiry(spec.name, expiry.year, expiry.month)
        _, self._expiry_close_ns = self._calendar.session_bounds(expiry)
        self._expiry = expiry
        self._monthly = monthly
        self._chain = []
        self._list_strikes()

    def _list_strikes(self) -> None:
        """List ±N strikes around the current ATM strike, keeping those already listed."""
        spec = self._spec
        step = spec.strike_step_paise
        atm = round(self._spot * 100 / step) * step
        self._chain_center = atm
        listed = {(c.strike, c.option_type) for c in self._chain}
        for i in range(-self._config.strikes_each_side, self._config.strikes_each_side + 1):
            strike = atm + i * step
            for option_type in (OptionType.CE, OptionType.PE):
                if (strike, option_type) in listed:
                    continue
                token = self._token_for(strike, option_type)
                contract = OptionContract.build(spec, self._expiry, strike, option_type, monthly=self._monthly,
                                                instrument_token=token, calendar=self._calendar)
                self._chain.append(contract)
                if self._instruments is not None:
                    self._instruments.add(contract)
        self._chain.sort(key=lambda c: (c.strike, c.option_type.value))
        self._strikes_rupees = np.array([c.strike_rupees for c in self._chain])
        self._is_call = np.array([c.option_type is OptionType.CE for c in self._chain])

    def _token_for(self, strike: int, option_type: OptionType) -> int:
        """A Kite-shaped token: a serial number above the segment code in the low byte, which tells a WebSocket
        client the price divisor (2 = NFO, 5 = BFO). A contract keeps its token across sessions."""
        key = (self._expiry, strike, option_type)
        token = self._tokens.get(key)
        if token is None:
            segment = _SEGMENT_CODES[self._spec.fo_exchange]
            # Each underlying numbers its contracts in its own million, so several markets never collide.
            first = _FIRST_OPTION_SERIAL * (1 + list(FALLBACK_UNDERLYINGS).index(self._spec.name))
            token = (first + len(self._tokens)) << 8 | segment
            self._tokens[key] = token
        return token

    # -- prices -------------------------------------------------------------------------------------------
    def _normal(self) -> float:
        if not self._normals:
            self._normals = self._rng.standard_normal(_RANDOM_BLOCK).tolist()
        return self._normals.pop()

    def _step(self, ts_ns: int) -> list[Tick]:
        config = self._config
        dt = max((ts_ns - self._last_step_ns) / NS_PER_SECOND, 0.0)
        self._last_step_ns = ts_ns
        if dt > 0:
            sigma = self._sigma_per_second
            if self._rng.random() < dt / config.regime_seconds:
                self._drift = self._normal() * config.trend_strength * sigma / math.sqrt(config.regime_seconds)
            shock = self._normal() * sigma * math.sqrt(dt)
            self._spot *= math.exp((self._drift - 0.5 * sigma * sigma) * dt + shock)
        tick_size = self._spec.tick_size_paise
        self._tick_id += 1
        spot_paise = round(self._spot * 100 / tick_size) * tick_size
        if abs(spot_paise - self._chain_center) > (config.strikes_each_side // 2) * self._spec.strike_step_paise:
            self._list_strikes()  # the index walked away from the listed strikes: add more
        batch = [Tick(ts_ns=ts_ns, instrument_token=self._index.instrument_token, last_price=spot_paise,
                      exchange_ts_ns=ts_ns, tick_id=self._tick_id)]
        if ts_ns >= self._next_chain_ts:
            self._next_chain_ts = ts_ns + config.chain_interval_ms * 1_000_000
            batch.extend(self._chain_ticks(ts_ns))
        return batch

    def _chain_ticks(self, ts_ns: int) -> list[Tick]:
        config = self._config
        spec = self._spec
        tick_size = spec.tick_size_paise
        spot = self._spot
        prices, half_spreads, steps_away = chain_quotes(
            self._is_call, self._strikes_rupees, spot, years_to(self._expiry_close_ns, ts_ns), atm_iv=config.atm_iv,
            smile=config.smile, skew=config.skew, rate=config.rate, tick_size=tick_size,
            strike_step=spec.strike_step_paise)
        count = len(self._chain)
        depth_lots = np.maximum(1, np.rint(40 * np.exp(-steps_away / 3) * (0.5 + self._rng.random(count))))
        traded_lots = self._rng.integers(0, 20, count)
        ticks = []
        for contract, price, half, lots, traded in zip(self._chain, prices.tolist(), half_spreads.tolist(),
                                                       depth_lots.tolist(), traded_lots.tolist(), strict=True):
            token = contract.instrument_token
            lot = contract.lot_size
            volume = self._cum_volume.get(token, 0) + traded * lot
            self._cum_volume[token] = volume
            self._tick_id += 1
            bid = max(price - half, tick_size)
            ticks.append(Tick(ts_ns=ts_ns, instrument_token=token, last_price=int(price), volume=volume,
                              bid=int(bid), bid_qty=int(lots) * lot, ask=int(price + half),
                              ask_qty=int(lots) * lot, exchange_ts_ns=ts_ns, tick_id=self._tick_id))
        return ticks
