"""Option contracts, Kite tradingsymbols, indices and the fallback contract table.

The instrument master (``instrument_master.py``) is filled from Kite's daily instrument dump, whose ``lot_size``,
``tick_size``, ``expiry`` and ``strike`` are authoritative (fact sheet (docs/reference/india-fno-facts.md) §2.1,
§2.4c). Symbol parsing and ``FALLBACK_UNDERLYINGS`` exist for the places that have no dump: the CLI, tests and
replays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType

from trader.market.calendar import MarketCalendar
from trader.money import to_rupees


class OptionType(StrEnum):
    CE = "CE"
    PE = "PE"


@dataclass(frozen=True, slots=True)
class UnderlyingSpec:
    name: str  # Kite's F&O ``name``, the prefix of its tradingsymbols: "NIFTY"
    spot_exchange: str  # where the index is quoted: "NSE" / "BSE"
    spot_symbol: str  # Kite's quote symbol of the index: "NIFTY 50"
    spot_token: int  # Kite instrument token of the index
    fo_exchange: str  # "NFO" / "BFO"
    lot_size: int  # units per lot
    strike_step_paise: int  # near-the-money strike interval
    tick_size_paise: int
    weekly: bool  # has weekly expiries
    freeze_quantity: int  # max units per order


# FALLBACK ONLY: the one place where contract sizes are written down. The Kite instrument dump, read
# every day, overrides them (InstrumentMaster). Values from the fact sheet (docs/reference/india-fno-facts.md)
# compiled 24 Nov 2026, which covers circulars up to 22 Aug 2026:
# * lot sizes: §2.1 [V], in force since the Jan 2026 expiries (SENSEX 20 since Nov 2024 [V/S]);
# * freeze quantities: §2.3, NSE revision effective 3 Aug 2026 [V], SENSEX [S]; NSE revises them monthly;
# * strike steps: §2.3 practitioner values [U]; NIFTYNXT50 is not in the fact sheet (100 is assumed [U]);
# * tick size 0.05 for all index options: §2.3 [V];
# * spot tokens: NIFTY 50 256265, SENSEX 265 (§2.4 [S]); NIFTY BANK 260105, NIFTY FIN SERVICE 257801 from
#   public code [S]; NIFTY MID SELECT 288009 and NIFTY NEXT 50 270857 not verified [U].
FALLBACK_UNDERLYINGS: Mapping[str, UnderlyingSpec] = MappingProxyType({
    spec.name: spec
    for spec in (
        UnderlyingSpec(name="NIFTY", spot_exchange="NSE", spot_symbol="NIFTY 50", spot_token=256265,
                       fo_exchange="NFO", lot_size=65, strike_step_paise=5_000, tick_size_paise=5,
                       weekly=True, freeze_quantity=1_800),
        UnderlyingSpec(name="BANKNIFTY", spot_exchange="NSE", spot_symbol="NIFTY BANK", spot_token=260105,
                       fo_exchange="NFO", lot_size=30, strike_step_paise=10_000, tick_size_paise=5,
                       weekly=False, freeze_quantity=600),
        UnderlyingSpec(name="FINNIFTY", spot_exchange="NSE", spot_symbol="NIFTY FIN SERVICE",
                       spot_token=257801, fo_exchange="NFO", lot_size=60, strike_step_paise=5_000,
                       tick_size_paise=5, weekly=False, freeze_quantity=1_800),
        UnderlyingSpec(name="MIDCPNIFTY", spot_exchange="NSE", spot_symbol="NIFTY MID SELECT",
                       spot_token=288009, fo_exchange="NFO", lot_size=120, strike_step_paise=2_500,
                       tick_size_paise=5, weekly=False, freeze_quantity=2_800),
        UnderlyingSpec(name="NIFTYNXT50", spot_exchange="NSE", spot_symbol="NIFTY NEXT 50",
                       spot_token=270857, fo_exchange="NFO", lot_size=25, strike_step_paise=10_000,
                       tick_size_paise=5, weekly=False, freeze_quantity=600),
        UnderlyingSpec(name="SENSEX", spot_exchange="BSE", spot_symbol="SENSEX", spot_token=265,
                       fo_exchange="BFO", lot_size=20, strike_step_paise=10_000, tick_size_paise=5,
                       weekly=True, freeze_quantity=1_000),
    )
})

# The index names of the ``EXCHANGE:NAME-INDEX`` form the CLI accepts.
_CLI_INDEX_NAMES: Mapping[str, str] = MappingProxyType({
    "NIFTY": "NIFTY50",
    "BANKNIFTY": "NIFTYBANK",
    "FINNIFTY": "FINNIFTY",
    "MIDCPNIFTY": "MIDCPNIFTY",
    "NIFTYNXT50": "NIFTYNXT50",
    "SENSEX": "SENSEX",
})


def _underlying_aliases() -> dict[str, UnderlyingSpec]:
    aliases: dict[str, UnderlyingSpec] = {}
    for spec in FALLBACK_UNDERLYINGS.values():
        aliases[spec.name] = spec
        aliases[f"{spec.spot_exchange}:{spec.spot_symbol}"] = spec
        aliases[f"{spec.spot_exchange}:{_CLI_INDEX_NAMES[spec.name]}-INDEX"] = spec
    return aliases


_UNDERLYING_ALIASES: Mapping[str, UnderlyingSpec] = MappingProxyType(_underlying_aliases())


def freeze_quantity(underlying: str) -> int:
    """Units one order may carry (the exchange rejects more); from the fallback table until the dump has it."""
    spec = FALLBACK_UNDERLYINGS.get(underlying)
    if spec is None:
        raise ValueError(f"no freeze quantity known for {underlying!r}; known: {', '.join(FALLBACK_UNDERLYINGS)}")
    return spec.freeze_quantity


def resolve_underlying(symbol: str) -> UnderlyingSpec:
    """The underlying named by a CLI/config symbol: ``NSE:NIFTY50-INDEX``, ``NSE:NIFTY 50`` or ``NIFTY``.

    Case-insensitive; surrounding whitespace is ignored.
    """
    spec = _UNDERLYING_ALIASES.get(symbol.strip().upper())
    if spec is None:
        accepted = ", ".join(repr(alias) for alias in _UNDERLYING_ALIASES)
        raise ValueError(f"unknown underlying {symbol!r}; accepted forms (case-insensitive): {accepted}")
    return spec


def underlying_spec(name: str) -> UnderlyingSpec:
    try:
        return FALLBACK_UNDERLYINGS[name]
    except KeyError:
        raise ValueError(
            f"unknown underlying {name!r}; known underlyings: {', '.join(FALLBACK_UNDERLYINGS)}"
        ) from None


# --- Kite tradingsymbols (fact sheet §2.4) -----------------------------------------------------------

_OPTION_EXCHANGES = frozenset({"NFO", "BFO"})
OPTION_TYPE_CODES = frozenset(option_type.value for option_type in OptionType)
_MONTHLY_CODES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKLY_MONTH_CODES = "123456789OND"  # Jan-Sep as digits, then Oct/Nov/Dec as letters
_EXAMPLES = "e.g. 'NIFTY25DEC24000CE' (monthly), 'NIFTY2581425000CE' (weekly), 'BFO:SENSEX2642379100PE'"
# Names contain digits and prefix one another (NIFTY / NIFTYNXT50), so try the longest known name first:
# the year check alone would not separate SENSEX from SENSEX50 ("SENSEX5026...") if that is ever added.
_NAMES_LONGEST_FIRST = tuple(sorted(FALLBACK_UNDERLYINGS, key=len, reverse=True))

_DEFAULT_CALENDAR = MarketCalendar()


class _SymbolError(ValueError):
    def __init__(self, tradingsymbol: str, problem: str) -> None:
        super().__init__(f"invalid option tradingsymbol {tradingsymbol!r}: {problem}; expected {_EXAMPLES}")


def underlying_of_symbol(symbol: str) -> UnderlyingSpec | None:
    """The known underlying whose name prefixes ``symbol`` followed by a two-digit year."""
    for name in _NAMES_LONGEST_FIRST:
        year = symbol[len(name):len(name) + 2]
        if symbol.startswith(name) and len(year) == 2 and year.isdigit():
            return FALLBACK_UNDERLYINGS[name]
    return None


def _split_exchange(tradingsymbol: str) -> tuple[str | None, str]:
    exchange, colon, symbol = tradingsymbol.strip().upper().rpartition(":")
    if not colon:
        return None, symbol
    if exchange not in _OPTION_EXCHANGES:
        raise _SymbolError(tradingsymbol, f"exchange prefix {exchange!r} is not NFO or BFO")
    return exchange, symbol


def _format_tradingsymbol(name: str, expiry: date, strike_rupees: int, option_type: OptionType, *,
                          monthly: bool) -> str:
    if monthly:
        expiry_code = f"{expiry:%y}{_MONTHLY_CODES[expiry.month - 1]}"
    else:
        expiry_code = f"{expiry:%y}{_WEEKLY_MONTH_CODES[expiry.month - 1]}{expiry.day:02d}"
    return f"{name}{expiry_code}{strike_rupees}{option_type.value}"


@dataclass(frozen=True, slots=True)
class OptionContract:
    exchange: str  # "NFO" / "BFO"
    tradingsymbol: str  # Kite's, without the exchange prefix
    underlying: str
    expiry: date
    strike: int  # paise
    option_type: OptionType
    lot_size: int
    tick_size: int  # paise
    instrument_token: int = 0  # 0 = not known (contract not from the instrument dump)

    def __post_init__(self) -> None:
        problems = []
        if self.exchange not in _OPTION_EXCHANGES:
            problems.append(f"exchange {self.exchange!r} is not NFO or BFO")
        if self.strike <= 0:
            problems.append(f"strike must be positive, got {self.strike}")
        if self.lot_size <= 0:
            problems.append(f"lot_size must be positive, got {self.lot_size}")
        if self.tick_size <= 0:
            problems.append(f"tick_size must be positive, got {self.tick_size}")
        elif self.strike % self.tick_size:
            problems.append(f"strike {self.strike} paise is not a multiple of the tick {self.tick_size}")
        if problems:
            raise ValueError(f"invalid option contract {self.tradingsymbol!r}: {'; '.join(problems)}")

    @property
    def strike_rupees(self) -> float:
        """For display and option pricing only; money stays in paise."""
        return to_rupees(self.strike)

    @property
    def is_call(self) -> bool:
        return self.option_type is OptionType.CE

    @classmethod
    def parse(cls, tradingsymbol: str, *, calendar: MarketCalendar | None = None, lot_size: int | None = None,
              tick_size: int | None = None, instrument_token: int = 0) -> OptionContract:
        """Decode a Kite option tradingsymbol, optionally prefixed with ``NFO:`` or ``BFO:``.

        Monthly ``NAME YY MMM STRIKE CE|PE`` takes its expiry from ``calendar`` (the default calendar
        if None); weekly ``NAME YY M DD STRIKE CE|PE`` spells out the date. Lot and tick size default to
        ``FALLBACK_UNDERLYINGS``: pass the instrument dump's values when you have them.
        """
        exchange, symbol = _split_exchange(tradingsymbol)
        spec = underlying_of_symbol(symbol)
        if spec is None:
            known = ", ".join(FALLBACK_UNDERLYINGS)
            raise _SymbolError(
                tradingsymbol, f"does not start with a known underlying ({known}) and a 2-digit year"
            )
        if exchange is not None and exchange != spec.fo_exchange:
            raise _SymbolError(
                tradingsymbol, f"{spec.name} options trade on {spec.fo_exchange}, not {exchange}"
            )
        year = 2000 + int(symbol[len(spec.name):len(spec.name) + 2])
        rest = symbol[len(spec.name) + 2:]
        if rest.endswith("FUT"):
            raise _SymbolError(tradingsymbol, "a futures symbol, not an option")
        expiry, rest = _decode_expiry(tradingsymbol, spec.name, year, rest, calendar or _DEFAULT_CALENDAR)
        option_type_code, strike_text = rest[-2:], rest[:-2]
        if option_type_code not in OPTION_TYPE_CODES:
            raise _SymbolError(tradingsymbol, "does not end in CE or PE")
        if not (strike_text.isascii() and strike_text.isdigit()) or strike_text.startswith("0"):
            raise _SymbolError(
                tradingsymbol,
                f"strike {strike_text!r} is not a whole number of rupees (Kite has no decimal strikes)",
            )
        return cls(
            exchange=spec.fo_exchange,
            tradingsymbol=symbol,
            underlying=spec.name,
            expiry=expiry,
            strike=int(strike_text) * 100,
            option_type=OptionType(option_type_code),
            lot_size=spec.lot_size if lot_size is None else lot_size,
            tick_size=spec.tick_size_paise if tick_size is None else tick_size,
            instrument_token=instrument_token,
        )

    @classmethod
    def build(cls, spec: UnderlyingSpec, expiry: date, strike_paise: int, option_type: OptionType, *,
              monthly: bool, instrument_token: int = 0,
              calendar: MarketCalendar | None = None) -> OptionContract:
        """The contract with Kite's tradingsymbol: monthly format if ``monthly``, else weekly format.

        A monthly ``expiry`` must be that month's monthly expiry in ``calendar``, since the symbol carries
        only the month. Kite lists the weekly that expires on the monthly date under the monthly symbol
        (fact sheet §2.4), so pass ``monthly=True`` for that date.
        """
        if strike_paise % 100:
            raise ValueError(f"strike {strike_paise} paise is not a whole rupee, as Kite strikes are")
        if monthly:
            calendar = calendar or _DEFAULT_CALENDAR
            monthly_expiry = calendar.monthly_expiry(spec.name, expiry.year, expiry.month)
            if expiry != monthly_expiry:
                raise ValueError(
                    f"{expiry.isoformat()} is not the {spec.name} monthly expiry of {expiry:%b %Y} "
                    f"({monthly_expiry.isoformat()}); use monthly=False for a weekly"
                )
        return cls(
            exchange=spec.fo_exchange,
            tradingsymbol=_format_tradingsymbol(spec.name, expiry, strike_paise // 100, option_type,
                                                monthly=monthly),
            underlying=spec.name,
            expiry=expiry,
            strike=strike_paise,
            option_type=option_type,
            lot_size=spec.lot_size,
            tick_size=spec.tick_size_paise,
            instrument_token=instrument_token,
        )


def _decode_expiry(tradingsymbol: str, name: str, year: int, rest: str,
                   calendar: MarketCalendar) -> tuple[date, str]:
    """The expiry encoded at the start of ``rest`` and what follows it.

    Unambiguous because a monthly code is three letters, while a weekly code is one of 1-9/O/N/D
    followed by two digits.
    """
    month_code = rest[:3]
    if len(month_code) == 3 and month_code.isascii() and month_code.isalpha():
        if month_code not in _MONTHLY_CODES:
            raise _SymbolError(
                tradingsymbol, f"month {month_code!r} is not one of {'/'.join(_MONTHLY_CODES)}"
            )
        month = _MONTHLY_CODES.index(month_code) + 1
        try:
            return calendar.monthly_expiry(name, year, month), rest[3:]
        except ValueError as exc:
            raise _SymbolError(tradingsymbol, f"cannot compute the monthly expiry: {exc}") from exc
    weekly_month, day_text = rest[:1], rest[1:3]
    if not weekly_month or weekly_month not in _WEEKLY_MONTH_CODES:
        raise _SymbolError(
            tradingsymbol,
            f"after the year expected a month (JAN-DEC) or a weekly month (1-9, O, N, D), got {rest[:3]!r}",
        )
    if not (len(day_text) == 2 and day_text.isascii() and day_text.isdigit()):
        raise _SymbolError(tradingsymbol, f"expected a 2-digit day after weekly month code {weekly_month!r}")
    month = _WEEKLY_MONTH_CODES.index(weekly_month) + 1
    try:
        return date(year, month, int(day_text)), rest[3:]
    except ValueError:
        raise _SymbolError(tradingsymbol, f"day {day_text} does not exist in {year}-{month:02d}") from None


@dataclass(frozen=True, slots=True)
class IndexInstrument:
    exchange: str  # "NSE" / "BSE"
    tradingsymbol: str  # "NIFTY 50"
    name: str
    instrument_token: int
    tick_size: int  # paise; Kite's dump often gives 0 for indices
