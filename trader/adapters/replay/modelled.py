"""Index-only history: option quotes modelled from the index with the built-in chain model.

When the data holds an index (ticks or candles) but no options, every index tick at least ``interval_ns`` after the
last modelled one is followed, at the same time, by quotes of the nearest expiry's strikes within
``strikes_each_side`` strike steps of the index, priced by ``trader.adapters.synthetic.chain_quotes`` (Black-Scholes,
``trader.market.pricing``) at a **flat** implied volatility (``iv``; no smile, no skew) and the built-in market's
spreads. The chain is the instrument dump's (strikes, lots, tick sizes, expiries as listed that day) when one is
given, else derived as the built-in market lists it (``OptionContract.build`` on the calendar's expiries, the
fallback table's lots and strike steps). Such a run's results are modelled, not observed: its ``DataSource`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time

import numpy as np
import numpy.typing as npt

from trader.adapters.replay.checks import ReplayDataError
from trader.adapters.synthetic import SPREAD_NOTE, chain_quotes, years_to
from trader.events import Tick
from trader.market.calendar import MarketCalendar, ist_date, ist_ns, ist_text
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, OptionContract, OptionType, UnderlyingSpec

DEFAULT_IV = 0.13  # the built-in market's ATM IV
DEFAULT_RATE = 0.065
DEFAULT_STRIKES_EACH_SIDE = 10
DEFAULT_INTERVAL_NS = 1_000_000_000  # at most one modelled chain a second per underlying
_SEGMENT_CODES = {"NFO": 2, "BFO": 5}
_FIRST_SERIAL = 3_000_000  # derived tokens: clear of the index tokens and of the built-in market's


@dataclass(frozen=True, slots=True)
class ModelSettings:
    iv: float = DEFAULT_IV
    rate: float = DEFAULT_RATE
    strikes_each_side: int = DEFAULT_STRIKES_EACH_SIDE
    interval_ns: int = DEFAULT_INTERVAL_NS

    def note(self, derived: bool) -> str:
        chain = "chain derived as the built-in market lists it" if derived else "chain from the instrument dump"
        return (f"options priced from the index by Black-Scholes (trader.market.pricing via the built-in chain model),"
                f" IV {self.iv:.1%} flat, rate {self.rate:.1%}, spread: {SPREAD_NOTE}; {chain}")


@dataclass(slots=True)
class _Expiry:
    expiry: date
    close_ns: int
    contracts: list[OptionContract]
    strikes: npt.NDArray[np.int64]  # paise
    is_call: npt.NDArray[np.bool_]


class ModelledChain:
    """Option quotes for index ticks. ``derive``: list contracts as the built-in market does (no dump)."""

    def __init__(self, master: InstrumentMaster, calendar: MarketCalendar, settings: ModelSettings, *,
                 derive: bool) -> None:
        self._master = master
        self._calendar = calendar
        self.settings = settings
        self.derive = derive
        self._by_index = {spec.spot_token: spec for spec in FALLBACK_UNDERLYINGS.values()}
        for spec in FALLBACK_UNDERLYINGS.values():
            index = master.index_for(spec.name)
            if index is not None:
                self._by_index[index.instrument_token] = spec
        self._next_ns: dict[int, int] = {}
        self._expiries: dict[tuple[str, date], _Expiry] = {}
        self._tokens: dict[tuple[str, date, int, OptionType], int] = {}
        self.quotes_made = 0

    def bind(self, master: InstrumentMaster) -> None:
        """Register derived contracts in the master the actors share (the dump's are merged by the replay)."""
        self._master = master
        self._expiries.clear()

    def is_index(self, token: int) -> bool:
        return token in self._by_index

    def quotes(self, tick: Tick) -> list[Tick]:
        """The modelled chain at an index tick (or nothing: not an index, or too soon after the last)."""
        spec = self._by_index.get(tick.instrument_token)
        if spec is None or tick.ts_ns < self._next_ns.get(tick.instrument_token, 0):
            return []
        self._next_ns[tick.instrument_token] = tick.ts_ns + self.settings.interval_ns
        listed = self._listed(spec, tick.ts_ns)
        if listed is None:
            return []
        step = spec.strike_step_paise
        spot = tick.last_price
        if self.derive:
            self._list_around(spec, listed, spot)
        near = np.abs(listed.strikes - spot) <= self.settings.strikes_each_side * step
        if not near.any():
            return []
        chosen = [c for c, keep in zip(listed.contracts, near.tolist(), strict=True) if keep]
        tick_size = chosen[0].tick_size or spec.tick_size_paise
        prices, halves, steps_away = chain_quotes(
            listed.is_call[near], listed.strikes[near] / 100.0, spot / 100.0, years_to(listed.close_ns, tick.ts_ns),
            atm_iv=self.settings.iv, smile=0.0, skew=0.0, rate=self.settings.rate, tick_size=tick_size,
            strike_step=step)
        depth = np.maximum(1, np.rint(40 * np.exp(-steps_away / 3)))
        out = []
        for contract, price, half, lots in zip(chosen, prices.tolist(), halves.tolist(), depth.tolist(), strict=True):
            quantity = int(lots) * contract.lot_size
            out.append(Tick(ts_ns=tick.ts_ns, instrument_token=contract.instrument_token, last_price=int(price),
                            bid=int(max(price - half, tick_size)), bid_qty=quantity, ask=int(price + half),
                            ask_qty=quantity, exchange_ts_ns=tick.ts_ns))
        self.quotes_made += len(out)
        return out

    def _listed(self, spec: UnderlyingSpec, ts_ns: int) -> _Expiry | None:
        if self.derive:
            expiry = self._calendar.next_expiry(spec.name, ts_ns)
        else:
            day = ist_date(ts_ns)
            known = self._master.expiries(spec.name)
            live = [e for e in known if e >= day and self._close_ns(e) > ts_ns]
            if not live:
                if known and max(known) < day:  # not one option of the day to price: the dump is of another period
                    raise ReplayDataError("the instrument dump", f"at {ist_text(ts_ns)}", "expiry",
                                          f"its {spec.name} expiries end on {max(known).isoformat()}, before the "
                                          f"data's day {day.isoformat()}: no option can be modelled; give the "
                                          "Kite instrument dump of the data's period (--instruments)")
                return None
            expiry = live[0]
        key = (spec.name, expiry)
        listed = self._expiries.get(key)
        if listed is None:
            contracts = [] if self.derive else self._master.option_chain(spec.name, expiry)
            listed = _Expiry(expiry, self._close_ns(expiry), [], np.empty(0, dtype=np.int64),
                             np.empty(0, dtype=bool))
            self._set(listed, contracts)
            self._expiries[key] = listed
        return listed

    def _close_ns(self, expiry: date) -> int:
        """The expiry day's session close; a dump's expiry on a day the calendar calls closed: 15:30 IST that day."""
        try:
            return self._calendar.session_bounds(expiry)[1]
        except ValueError:
            return ist_ns(expiry, time(15, 30))

    @staticmethod
    def _set(listed: _Expiry, contracts: list[OptionContract]) -> None:
        listed.contracts = sorted(contracts, key=lambda c: (c.strike, c.option_type.value))
        listed.strikes = np.array([c.strike for c in listed.contracts], dtype=np.int64)
        listed.is_call = np.array([c.option_type is OptionType.CE for c in listed.contracts], dtype=bool)

    def _list_around(self, spec: UnderlyingSpec, listed: _Expiry, spot: int) -> None:
        """Derived chain: add the strikes within reach of the index that are not listed yet."""
        step = spec.strike_step_paise
        atm = round(spot / step) * step
        have = {(c.strike, c.option_type) for c in listed.contracts}
        wanted = [(atm + i * step, kind) for i in range(-self.settings.strikes_each_side,
                                                        self.settings.strikes_each_side + 1)
                  for kind in (OptionType.CE, OptionType.PE)]
        new = [(strike, kind) for strike, kind in wanted if (strike, kind) not in have and strike > 0]
        if not new:
            return
        monthly = listed.expiry == self._calendar.monthly_expiry(spec.name, listed.expiry.year, listed.expiry.month)
        added = list(listed.contracts)
        for strike, kind in new:
            contract = OptionContract.build(spec, listed.expiry, strike, kind, monthly=monthly,
                                            instrument_token=self._token(spec, listed.expiry, strike, kind),
                                            calendar=self._calendar)
            self._master.add(contract)
            added.append(contract)
        self._set(listed, added)

    def _token(self, spec: UnderlyingSpec, expiry: date, strike: int, kind: OptionType) -> int:
        key = (spec.name, expiry, strike, kind)
        token = self._tokens.get(key)
        if token is None:
            first = _FIRST_SERIAL + 1_000_000 * list(FALLBACK_UNDERLYINGS).index(spec.name)
            token = (first + len(self._tokens)) << 8 | _SEGMENT_CODES[spec.fo_exchange]
            self._tokens[key] = token
        return token
