"""The option chain the seed's ``get_option_chain`` returns: contracts with live prices, implied volatility and Greeks.

Prices are rupees (floats) here, at the facade's edge; the ticks they come from are integer paise. Implied volatility
is solved from the mid price (bid/ask), else the last price, with the project's Black-Scholes (``market/pricing.py``)
over the calendar time left to the expiry's session close; the Greeks are taken at that volatility.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from trader.clock import NS_PER_SECOND
from trader.events import Tick
from trader.market.calendar import MarketCalendar
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract, OptionType, UnderlyingSpec
from trader.market.pricing import OptionKind, PricingError, greeks, implied_volatility
from trader.money import to_rupees
from trader.risk.seed_api import plain_contract

_NS_PER_YEAR = 365 * 86_400 * NS_PER_SECOND
_MIN_YEARS = 60 / (365 * 86_400)  # an option expiring within the minute is priced with a minute left


@dataclass(frozen=True, slots=True)
class OptionQuote(OptionContract):
    """An ``OptionContract`` (usable wherever one is: orders, risk checks) with its live quote.

    ``bid``/``ask``/``last_price`` in rupees (0.0 when the book side is empty); ``iv`` a fraction (0.13 = 13 %);
    ``delta`` per rupee of the index, ``gamma`` per rupee, ``theta`` rupees per calendar day, ``vega`` rupees per
    volatility point; ``None`` when no volatility fits the price. ``quote_ts_ns`` is the tick's event time.
    """

    bid: float = 0.0
    ask: float = 0.0
    last_price: float = 0.0
    bid_qty: int = 0
    ask_qty: int = 0
    volume: int = 0
    oi: int = 0
    iv: float | None = None
    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None
    quote_ts_ns: int = 0

    @property
    def contract(self) -> OptionContract:
        """The contract alone, without the quote."""
        return plain_contract(self)

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2 if self.bid > 0 and self.ask > 0 else self.last_price


@dataclass(frozen=True, slots=True)
class OptionChain:
    """One underlying's nearest listed expiry: ``contracts`` by strike, CE before PE. ``spot`` in rupees."""

    underlying: str
    spot: float
    expiry: date
    ts_ns: int
    contracts: tuple[OptionQuote, ...]

    def __len__(self) -> int:
        return len(self.contracts)

    @property
    def calls(self) -> tuple[OptionQuote, ...]:
        return tuple(c for c in self.contracts if c.option_type is OptionType.CE)

    @property
    def puts(self) -> tuple[OptionQuote, ...]:
        return tuple(c for c in self.contracts if c.option_type is OptionType.PE)

    def atm(self, option_type: OptionType | str = OptionType.CE) -> OptionQuote:
        """The contract at the strike nearest spot (the lower one on a tie)."""
        kind = OptionType(str(option_type).strip().upper())
        candidates = [c for c in self.contracts if c.option_type is kind]
        if not candidates:
            raise LookupError(f"the {self.underlying} chain of {self.expiry.isoformat()} has no {kind.value} quotes")
        return min(candidates, key=lambda c: (abs(c.strike_rupees - self.spot), c.strike))

    def get(self, strike: float, option_type: OptionType | str) -> OptionQuote | None:
        """The contract at ``strike`` rupees, or None."""
        kind = OptionType(str(option_type).strip().upper())
        return next((c for c in self.contracts if c.option_type is kind and c.strike_rupees == strike), None)


def build_chain(spec: UnderlyingSpec, instruments: InstrumentMaster, quotes: dict[int, Tick],  # noqa: PLR0917
                calendar: MarketCalendar, now_ns: int, rate: float) -> OptionChain | None:
    """The nearest expiry not yet closed, with every contract that has a quote; None before the first quotes."""
    spot_tick = quotes.get(spec.spot_token)
    if spot_tick is None:
        return None
    spot = to_rupees(spot_tick.last_price)
    for expiry in instruments.expiries(spec.name):
        close_ns = calendar.session_bounds(expiry)[1]
        if close_ns <= now_ns:
            continue
        years = max((close_ns - now_ns) / _NS_PER_YEAR, _MIN_YEARS)
        contracts = tuple(_quote(c, tick, spot, years, rate) for c in instruments.option_chain(spec.name, expiry)
                          if (tick := quotes.get(c.instrument_token)) is not None)
        if contracts:
            return OptionChain(underlying=spec.name, spot=spot, expiry=expiry, ts_ns=spot_tick.ts_ns,
                               contracts=contracts)
    return None


def _quote(contract: OptionContract, tick: Tick, spot: float, years: float, rate: float) -> OptionQuote:
    bid, ask, last = to_rupees(tick.bid), to_rupees(tick.ask), to_rupees(tick.last_price)
    price = (bid + ask) / 2 if bid > 0 and ask > 0 else last
    kind = OptionKind(contract.option_type.value)
    iv = delta = gamma = theta = vega = None
    if price > 0:
        try:
            iv = implied_volatility(kind, price, spot, contract.strike_rupees, years, rate)
            g = greeks(kind, spot, contract.strike_rupees, years, rate, iv)
            delta, gamma, theta, vega = g.delta, g.gamma, g.theta_per_day, g.vega_per_point
        except PricingError:
            iv = None
    fields = {name: getattr(contract, name) for name in OptionContract.__dataclass_fields__}
    return OptionQuote(**fields, bid=bid, ask=ask, last_price=last, bid_qty=tick.bid_qty, ask_qty=tick.ask_qty,
                       volume=tick.volume, oi=tick.oi, iv=iv, delta=delta, gamma=gamma, theta=theta, vega=vega,
                       quote_ts_ns=tick.ts_ns)
