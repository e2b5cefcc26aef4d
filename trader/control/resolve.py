"""Turn an operator's manual order into one exact listed contract, quantity and set of prices — or say why not.

Pure: no I/O, no clock of its own (``now_ns`` comes in), no event loop. ``resolve_order`` takes a validated
``ManualOrder`` (trader/control/requests.py), the day's ``InstrumentMaster``, the latest quote per instrument token
and the event time, and answers a ``ResolvedOrder`` or raises ``OrderSpecError(field, message)``. It never guesses:
anything that could mean two things, or names something not listed today, is an error that says what would work.

The instrument may be given as
* a Kite tradingsymbol, with or without its ``NFO:``/``BFO:`` prefix (``NIFTY26D0126000CE``, ``BFO:SENSEX…``): it
  must be in today's instrument list (an expired or unlisted one gets an error saying so and a spoken form to use);
* the way traders say it: ``UNDERLYING SELECTOR CE|PE`` with the underlying as ``resolve_underlying`` knows it
  (``NIFTY``, ``BANKNIFTY``, ``SENSEX``, ``NSE:NIFTY50-INDEX`` …) and the selector one of
  ``ATM`` (the listed strike nearest the index's last price, the lower one on a tie: ``nearest_strike``),
  ``ATM+N`` / ``ATM-N`` (N listed strikes above / below ATM, for calls and puts alike),
  ``ITMn`` / ``OTMn`` (n strikes into / out of the money: below ATM for a call's ITM, above for a put's), or a strike
  in rupees (``26000``);
* or ``underlying`` + ``strike`` + ``option_type`` fields.

The expiry defaults to the nearest listed expiry that has not closed (on expiry day itself only before the F&O close
of the calendar's session hours, 15:40 IST since 3 Aug 2026); an explicit one must be listed and not closed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from trader.approvals import quote_age_problem, quote_price
from trader.control.requests import ManualOrder
from trader.control.resolved import OrderSpecError, ResolvedOrder
from trader.events import Side, Tick
from trader.market.calendar import MarketCalendar, ist_date, ist_ns
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import (
    FALLBACK_UNDERLYINGS,
    OptionContract,
    OptionType,
    UnderlyingSpec,
    resolve_underlying,
)
from trader.money import MoneyError, format_inr, rupee_text, to_paise, to_rupees

_SHOWN_EXPIRIES = 4

# The selector of the spoken form. ASCII digits only; bounded so no number is ever huge.
_SELECTOR = re.compile(
    r"ATM(?:(?P<sign>[+-])(?P<steps>[0-9]{1,3}))?"
    r"|(?P<money>ITM|OTM)(?P<depth>[0-9]{1,3})?"
    r"|(?P<strike>[0-9]{1,7}(?:\.[0-9]{1,2})?)",
    re.ASCII,
)
_SIGN_SPACES = re.compile(r"\s*([+-])\s*(?=[0-9])")  # "ATM + 2" is "ATM+2"
_EXAMPLES = "'NIFTY ATM CE', 'NIFTY ATM+2 PE', 'NIFTY ITM1 CE', 'NIFTY 26000 CE' or a tradingsymbol"


@dataclass(frozen=True, slots=True)
class _Found:
    contract: OptionContract
    expiry_defaulted: bool
    field: str  # the request field that named the contract: "instrument" or "underlying"
    how: str  # "NIFTY ATM+2 PE → NIFTY26D0126100PE: spot …, ATM strike …, 2 strikes up, expiry … (nearest)"
    spot: int


def resolve_order(order: ManualOrder, instruments: InstrumentMaster, quotes: Mapping[int, Tick], now_ns: int, *,
                  calendar: MarketCalendar | None = None, max_quote_age_ns: int | None = None) -> ResolvedOrder:
    """Resolve ``order`` against today's instruments and quotes at event time ``now_ns``; with
    ``max_quote_age_ns``, a quote older than that (the contract's, or the index's for ATM/ITM/OTM) is refused.

    ``quotes`` maps instrument token → latest tick (indices and options). ``calendar`` gives the session close that
    ends an expiry day (default: the shipped NSE/BSE calendar; the daemon passes its own). Raises ``OrderSpecError``.
    """
    resolver = _Resolver(instruments, quotes, now_ns, calendar or MarketCalendar(), max_quote_age_ns)
    found = resolver.find_contract(order)
    contract = found.contract
    quantity, lots = _quantity(order, contract)
    expected = resolver.expected_price(contract, order.side, found.field)
    limit_price = _on_tick("price", order.price, contract) if order.price is not None else 0
    trigger_price = _on_tick("trigger_price", order.trigger_price, contract) if order.trigger_price is not None else 0
    if order.lots is not None:
        size = f"{lots} lot{_plural(lots)} = {quantity:,} units"
    else:
        size = f"{quantity:,} units = {lots} lot{_plural(lots)} of {contract.lot_size}"
    return ResolvedOrder(
        contract=contract, side=order.side, quantity=quantity, lots=lots, order_type=order.order_type,
        expected_price=expected, limit_price=limit_price, trigger_price=trigger_price,
        market_protection=order.market_protection, spot=found.spot, expiry_defaulted=found.expiry_defaulted,
        how=f"{found.how}, {size}",
    )


class _Resolver:
    def __init__(self, instruments: InstrumentMaster, quotes: Mapping[int, Tick], now_ns: int,
                 calendar: MarketCalendar, max_quote_age_ns: int | None = None) -> None:
        self.instruments = instruments
        self.max_quote_age_ns = max_quote_age_ns
        self.quotes = quotes
        self.now_ns = now_ns
        self.calendar = calendar
        self.today = ist_date(now_ns)

    # --- which contract --------------------------------------------------------------------------------------

    def find_contract(self, order: ManualOrder) -> _Found:
        if order.instrument is None:
            return self._structured(order)
        text = " ".join(order.instrument.upper().split())
        if " " not in text:
            return self._tradingsymbol(order, text)
        return self._spoken(order, _SIGN_SPACES.sub(r"\1", text))

    def _tradingsymbol(self, order: ManualOrder, text: str) -> _Found:
        contract = self.instruments.contract(text)
        if contract is None:
            raise self._not_listed(text)
        if self._closed(contract.expiry):
            raise OrderSpecError("instrument", f"{contract.tradingsymbol} has expired ({self._closed_text(contract)}):"
                                               f" name a current contract, e.g. {_spoken_hint(contract)}")
        if order.expiry is not None and order.expiry != contract.expiry:
            raise OrderSpecError("expiry", f"{contract.tradingsymbol} expires {contract.expiry.isoformat()}, not "
                                           f"{order.expiry.isoformat()}: leave expiry out or make the two agree")
        spot = self._spot_if_streaming(contract.underlying)
        return _Found(
            contract=contract, expiry_defaulted=False, field="instrument", spot=spot,
            how=(f"{text} → {contract.tradingsymbol}: listed {contract.exchange} contract, strike "
                 f"{_strike_text(contract.strike)} {contract.option_type.value}, expiry "
                 f"{contract.expiry.isoformat()}{self._today_note(contract.expiry)}, {_spot_text(spot)}"),
        )

    def _not_listed(self, text: str) -> OrderSpecError:
        """Why a single word is no listed contract, and what to type instead."""
        try:
            spec = resolve_underlying(text)
        except ValueError:
            pass
        else:
            return OrderSpecError("instrument", f"{text!r} names an underlying but no contract: add a strike and CE "
                                                f"or PE, e.g. '{spec.name} ATM CE' or '{spec.name} ATM+1 PE'")
        try:
            parsed = OptionContract.parse(text, calendar=self.calendar)
        except ValueError as exc:
            return OrderSpecError("instrument", f"{exc}; or say it the trader's way: {_EXAMPLES}")
        symbol, expiry = parsed.tradingsymbol, parsed.expiry
        hint = _spoken_hint(parsed)
        if self._closed(expiry):
            return OrderSpecError("instrument", f"{symbol} is not in today's instrument list: it expired "
                                                f"{expiry.isoformat()}; name a current contract, e.g. {hint}")
        listed = self.instruments.expiries(parsed.underlying)
        if expiry not in listed:
            upcoming = [e for e in listed if not self._closed(e)]
            shown = _dates(upcoming) or "none"
            return OrderSpecError("instrument", f"{symbol} is not in today's instrument list: no {parsed.underlying} "
                                                f"expiry {expiry.isoformat()} is listed (listed: {shown}); try {hint} "
                                                "with one of those expiries")
        chain = [c for c in self.instruments.option_chain(parsed.underlying, expiry)
                 if c.option_type is parsed.option_type]
        same = [c for c in chain if c.strike == parsed.strike]
        if same:  # the weekly form of a date Kite lists under the monthly symbol, or the reverse
            return OrderSpecError("instrument", f"{symbol} is not how today's instrument list writes that contract:"
                                                f" it is {same[0].exchange}:{same[0].tradingsymbol}")
        return OrderSpecError("instrument", f"{symbol} is not in today's instrument list: strike "
                                            f"{_strike_text(parsed.strike)} is not listed for {parsed.underlying} "
                                            f"{expiry.isoformat()} {parsed.option_type.value} (nearest listed: "
                                            f"{_nearest_strikes(chain, parsed.strike)}); try "
                                            f"'{parsed.underlying} ATM {parsed.option_type.value}' or a listed strike")

    def _spoken(self, order: ManualOrder, text: str) -> _Found:
        words = text.split(" ")
        if len(words) < 3:
            raise OrderSpecError("instrument", f"{text!r} is not an instrument: say the underlying, the strike and "
                                               f"CE or PE, e.g. {_EXAMPLES}")
        name, selector, type_code = " ".join(words[:-2]), words[-2], words[-1]
        if type_code not in ("CE", "PE"):
            raise OrderSpecError("instrument", f"{text!r} must end in CE or PE (got {type_code!r}), e.g. {_EXAMPLES}")
        option_type = OptionType(type_code)
        spec = _underlying("instrument", name)
        match = _SELECTOR.fullmatch(selector)
        if match is None:
            raise OrderSpecError("instrument", f"{selector!r} in {text!r} is not a strike: use ATM, ATM+N, ATM-N, "
                                               "ITMn, OTMn (n from 1) or a strike in rupees such as 26000")
        expiry, defaulted = self._expiry(spec, order.expiry)
        chain = self._chain(spec, expiry, option_type, "instrument")
        label = f"{spec.name} {selector} {type_code}"
        if match["strike"] is not None:
            contract = _listed_strike("instrument", chain, to_paise(match["strike"]))
            spot = self._spot_if_streaming(spec.name)
            return _Found(contract=contract, expiry_defaulted=defaulted, field="instrument", spot=spot,
                          how=(f"{label} → {contract.tradingsymbol}: strike {_strike_text(contract.strike)}, "
                               f"{self._expiry_text(expiry, defaulted)}, {_spot_text(spot)}"))
        if match["money"] is not None:
            depth = int(match["depth"]) if match["depth"] is not None else 0
            if depth < 1:
                raise OrderSpecError("instrument", f"{match['money']} needs a number of strikes from 1 "
                                                   f"({match['money']}1 = one strike {_money_words(match['money'])}); "
                                                   "ATM for the at-the-money strike")
            call = option_type is OptionType.CE
            # A call is in the money below the spot, a put above it.
            steps = -depth if (match["money"] == "ITM") == call else depth
            walk = (f"{depth} strike{_plural(depth)} {_money_words(match['money'])} "
                    f"({'down' if steps < 0 else 'up'}, for a {'call' if call else 'put'})")
        else:
            steps = int(match["steps"]) * (-1 if match["sign"] == "-" else 1) if match["sign"] else 0
            walk = f"{abs(steps)} strike{_plural(abs(steps))} {'down' if steps < 0 else 'up'}" if steps else ""
        spot = self._spot_for_atm(spec, label)
        atm = self.instruments.nearest_strike(spec.name, expiry, spot, option_type)
        if atm is None:  # _chain already refused an empty chain; kept for the type checker
            raise OrderSpecError("instrument", f"no {spec.name} {type_code} strikes listed for {expiry.isoformat()}")
        at = next(i for i, c in enumerate(chain) if c.tradingsymbol == atm.tradingsymbol)
        if not 0 <= at + steps < len(chain):
            above, below = len(chain) - 1 - at, at
            raise OrderSpecError("instrument", f"{selector} runs off the listed chain: {spec.name} "
                                               f"{expiry.isoformat()} {type_code} lists {above} strike{_plural(above)} "
                                               f"above ATM {_strike_text(atm.strike)} and {below} below "
                                               f"(spot {_amount(spot)})")
        contract = chain[at + steps]
        parts = [f"spot {_amount(spot)}", f"ATM strike {_strike_text(atm.strike)}"]
        if walk:
            parts.append(walk)
        parts.append(self._expiry_text(expiry, defaulted))
        return _Found(contract=contract, expiry_defaulted=defaulted, field="instrument", spot=spot,
                      how=f"{label} → {contract.tradingsymbol}: {', '.join(parts)}")

    def _structured(self, order: ManualOrder) -> _Found:
        # The request model guarantees all three when instrument is absent.
        assert order.underlying is not None and order.strike is not None and order.option_type is not None
        spec = _underlying("underlying", order.underlying)
        expiry, defaulted = self._expiry(spec, order.expiry)
        chain = self._chain(spec, expiry, order.option_type, "underlying")
        try:
            strike = to_paise(order.strike)
        except MoneyError as exc:  # the model already bounds it; kept so nothing but OrderSpecError escapes
            raise OrderSpecError("strike", str(exc)) from None
        # 26000.004 is no strike: never round one into a listed strike.
        exact = to_rupees(strike) == order.strike
        contract = _listed_strike("strike", chain, strike, given=None if exact else order.strike)
        spot = self._spot_if_streaming(spec.name)
        return _Found(contract=contract, expiry_defaulted=defaulted, field="underlying", spot=spot,
                      how=(f"{spec.name} {_strike_text(contract.strike)} {contract.option_type.value} (underlying, "
                           f"strike, option_type) → {contract.tradingsymbol}: {self._expiry_text(expiry, defaulted)}, "
                           f"{_spot_text(spot)}"))

    # --- expiry --------------------------------------------------------------------------------------------

    def _close_ns(self, day: date) -> int:
        """The F&O close on ``day`` by the calendar's effective-dated session hours (15:40 IST from 3 Aug 2026)."""
        return ist_ns(day, self.calendar.session_hours(day).close)

    def _closed(self, expiry: date) -> bool:
        return expiry < self.today or (expiry == self.today and self.now_ns >= self._close_ns(expiry))

    def _closed_text(self, contract: OptionContract) -> str:
        close = self.calendar.session_hours(contract.expiry).close
        return f"trading in it ended {contract.expiry.isoformat()} at {close:%H:%M} IST"

    def _expiry(self, spec: UnderlyingSpec, wanted: date | None) -> tuple[date, bool]:
        listed = self.instruments.expiries(spec.name)
        if not listed:
            raise OrderSpecError("expiry" if wanted else "instrument",
                                 f"no {spec.name} options are in today's instrument list (has the day's instrument "
                                 "dump been loaded?)")
        upcoming = [e for e in listed if not self._closed(e)]
        if wanted is None:
            if not upcoming:
                raise OrderSpecError("expiry", f"every listed {spec.name} expiry has closed (the last, "
                                               f"{listed[-1].isoformat()}, at {self._close_text(listed[-1])}): "
                                               "today's instrument list is out of date")
            return upcoming[0], True
        if wanted in upcoming:
            return wanted, False
        shown = _dates(upcoming) or "none"
        if wanted in listed:
            raise OrderSpecError("expiry", f"the {spec.name} {wanted.isoformat()} expiry has closed (at "
                                           f"{self._close_text(wanted)}); listed expiries still trading: {shown}")
        raise OrderSpecError("expiry", f"{spec.name} has no expiry on {wanted.isoformat()} ({wanted:%A}) in today's "
                                       f"instrument list; the next listed: {shown}")

    def _close_text(self, day: date) -> str:
        return f"{self.calendar.session_hours(day).close:%H:%M} IST on {day.isoformat()}"

    def _today_note(self, expiry: date) -> str:
        if expiry != self.today:
            return ""
        return f", expires today at {self.calendar.session_hours(expiry).close:%H:%M} IST"

    def _expiry_text(self, expiry: date, defaulted: bool) -> str:
        return f"expiry {expiry.isoformat()} ({'nearest' if defaulted else 'given'}{self._today_note(expiry)})"

    def _chain(self, spec: UnderlyingSpec, expiry: date, option_type: OptionType, field: str) -> list[OptionContract]:
        chain = [c for c in self.instruments.option_chain(spec.name, expiry) if c.option_type is option_type]
        if not chain:
            raise OrderSpecError(field, f"no {spec.name} {option_type.value} strikes are listed for "
                                        f"{expiry.isoformat()} in today's instrument list")
        return chain

    # --- quotes --------------------------------------------------------------------------------------------

    def _spot_if_streaming(self, underlying: str) -> int:
        index = self.instruments.index_for(underlying)
        tick = self.quotes.get(index.instrument_token) if index is not None else None
        return tick.last_price if tick is not None and tick.last_price > 0 else 0

    def _spot_for_atm(self, spec: UnderlyingSpec, label: str) -> int:
        index = self.instruments.index_for(spec.name)
        if index is None:
            raise OrderSpecError("instrument", f"{label} needs the {spec.name} index's price, but "
                                               f"{spec.spot_exchange}:{spec.spot_symbol} is not in today's instrument "
                                               f"list: give a strike instead, e.g. '{spec.name} 26000 CE'")
        stale = quote_age_problem(self.quotes.get(index.instrument_token), self.now_ns, self.max_quote_age_ns)
        if stale:
            raise OrderSpecError("instrument", f"{label} needs the {spec.name} index's price, but {stale}: give a "
                                               f"strike instead, e.g. '{spec.name} 26000 CE', or wait for the feed")
        spot = self._spot_if_streaming(spec.name)
        if spot <= 0:
            raise OrderSpecError("instrument", f"{label} needs the {spec.name} index's price, but "
                                               f"{index.exchange}:{index.tradingsymbol} (token "
                                               f"{index.instrument_token}) is not streaming: give a strike instead, "
                                               f"e.g. '{spec.name} 26000 CE', or wait for the feed")
        return spot

    def expected_price(self, contract: OptionContract, side: Side, field: str) -> int:
        tick = self.quotes.get(contract.instrument_token) if contract.instrument_token else None
        if tick is None:
            raise OrderSpecError(field, f"{contract.exchange}:{contract.tradingsymbol} (token "
                                        f"{contract.instrument_token}) is not streaming: there is no quote to price "
                                        "the order against; pick a strike the feed streams, or wait for its first "
                                        "tick")
        stale = quote_age_problem(tick, self.now_ns, self.max_quote_age_ns)
        if stale:
            raise OrderSpecError(field, f"{contract.exchange}:{contract.tradingsymbol} cannot be priced: {stale}")
        price = quote_price(side, tick)
        if price <= 0:
            raise OrderSpecError(field, f"{contract.exchange}:{contract.tradingsymbol} is not streaming a price yet "
                                        "(no bid, ask or last price): wait for a trade or pick another strike")
        return price


# --- helpers ---------------------------------------------------------------------------------------------------


def _underlying(field: str, name: str) -> UnderlyingSpec:
    try:
        return resolve_underlying(name)
    except ValueError:
        raise OrderSpecError(field, f"{name!r} is not an underlying: use {', '.join(FALLBACK_UNDERLYINGS)} (or a "
                                    "quote name such as NSE:NIFTY50-INDEX)") from None


def _listed_strike(field: str, chain: Sequence[OptionContract], strike: int, *,
                   given: float | None = None) -> OptionContract:
    """The listed contract at ``strike``; ``given`` is the rupee value asked for when it was not a whole number of
    paise (then nothing matches and the error shows it as given)."""
    for contract in chain:
        if given is None and contract.strike == strike:
            return contract
    shown = f"{given!r}" if given is not None else _strike_text(strike)
    first = chain[0]  # never empty: _chain refuses an empty chain
    asked = strike if given is None else given * 100
    raise OrderSpecError(field, f"strike {shown} is not listed for {first.underlying} {first.expiry.isoformat()} "
                                f"{first.option_type.value} (nearest listed: {_nearest_strikes(chain, asked)})")


def _nearest_strikes(chain: Sequence[OptionContract], strike: float) -> str:
    """The listed strikes either side of ``strike`` (paise), for an error message."""
    if not chain:
        return "none"
    below = [c.strike for c in chain if c.strike < strike]
    above = [c.strike for c in chain if c.strike > strike]
    nearest = ([below[-1]] if below else []) + ([above[0]] if above else [])
    return ", ".join(_strike_text(s) for s in nearest)


def _quantity(order: ManualOrder, contract: OptionContract) -> tuple[int, int]:
    lot = contract.lot_size
    if order.lots is not None:
        return order.lots * lot, order.lots
    assert order.quantity is not None  # the request model guarantees lots or quantity
    units = order.quantity
    if units % lot == 0:
        return units, units // lot
    below = units - units % lot
    valid = [q for q in (below, below + lot) if q > 0]
    choices = " or ".join(f"{q:,} ({q // lot} lot{_plural(q // lot)})" for q in valid)
    raise OrderSpecError("quantity", f"{units:,} units is not a whole number of lots: a {contract.tradingsymbol} lot "
                                     f"is {lot} units; use {choices}, or give lots instead")


def _on_tick(field: str, rupees: float, contract: OptionContract) -> int:
    """Rupees → paise, refusing what is not a whole number of ticks (the error names the nearest valid prices)."""
    try:
        paise = to_paise(rupees)
    except MoneyError as exc:  # the model already refuses non-finite and huge prices
        raise OrderSpecError(field, str(exc)) from None
    tick = contract.tick_size
    if to_rupees(paise) == rupees and paise % tick == 0:
        return paise
    below = paise - paise % tick
    if to_rupees(below) > rupees:  # rounded up onto a tick: the tick below is the other neighbour
        below -= tick
    valid = [p for p in (below, below + tick) if p > 0]
    raise OrderSpecError(field, f"{rupees!r} is not on the tick of {contract.tradingsymbol} (₹{rupee_text(tick)}): "
                                f"nearest valid prices {' or '.join(rupee_text(p) for p in valid)}")


def _money_words(money: str) -> str:
    return "in the money" if money == "ITM" else "out of the money"


def _spoken_hint(contract: OptionContract) -> str:
    return (f"'{contract.underlying} {contract.strike // 100} {contract.option_type.value}' (nearest expiry) or "
            f"'{contract.underlying} ATM {contract.option_type.value}'")


def _dates(days: Sequence[date]) -> str:
    shown = ", ".join(day.isoformat() for day in days[:_SHOWN_EXPIRIES])
    return shown + (", …" if len(days) > _SHOWN_EXPIRIES else "")


def _amount(paise: int) -> str:
    """26,012.35 (rupees, grouped, no symbol)."""
    return format_inr(paise).replace("₹", "")


def _strike_text(paise: int) -> str:
    return f"{paise // 100:,}" if paise % 100 == 0 else _amount(paise)


def _spot_text(spot: int) -> str:
    return f"spot {_amount(spot)}" if spot > 0 else "spot not streaming"


def _plural(count: int) -> str:
    return "" if count == 1 else "s"
