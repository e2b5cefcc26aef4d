"""Fyers' symbol master (``<symbols_root>/NSE_FO.csv``, ``BSE_FO.csv``) → ``OptionContract``s in an InstrumentMaster.

The files have no header row. Column order (Fyers API v3 docs, "Symbol Master"): 0 Fytoken, 1 symbol details,
2 exchange instrument type, 3 minimum lot size, 4 tick size (rupees), 5 ISIN, 6 trading session, 7 last update date,
8 expiry date (epoch seconds), 9 symbol ticker (``NSE:NIFTY26D0326000CE``), 10 exchange (10 NSE, 12 BSE), 11 segment,
12 scrip code (the exchange token), 13 underlying symbol, 14 underlying scrip code, 15 strike price, 16 option type
(CE/PE; XX for futures), 17 underlying Fytoken, 18-20 reserved. Later files may append columns: extra ones are ignored.

Identity (the lead's design): ``instrument_token = int(Fytoken)`` (digits: ``[:4]`` the exchange segment, e.g. 1011
nse_fo, 1211 bse_fo; ``[10:]`` the exchange token); ``tradingsymbol`` is the ticker without its ``NSE:``/``BSE:``
prefix; the exchange stays ours (NFO/BFO). The underlying index's token is its Fytoken from column 17.

Every option row of a wanted underlying is validated; a bad one is counted and named (line and problem), never
guessed and never fatal on its own — ``SymbolMaster.check`` decides whether too many were bad. The ticker must agree
with the columns: it starts with the underlying, ends in the strike as the ticker writes it (``26000``, ``1012.5``)
and the option type, and between them carries the expiry (weekly ``26D08``: year, month code 1-9/O/N/D, day; monthly
``26DEC``). Integers are ASCII digits with an upper bound (a lot of at most ``MAX_LOT``). A ticker or Fytoken that
appears on several rows with different contents refuses EVERY such row (no "first row wins": the wrong lot or
another strike's price feed); identical repeats collapse to one.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from trader.market.calendar import IST
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract, OptionType
from trader.money import MoneyError, to_paise

COLUMNS = 18  # at least: through the underlying Fytoken
MAX_LOT = 100_000  # NSE/BSE index option lots are tens to a few thousand; a bigger one is a broken row
MAX_TOKEN_DIGITS = 20
WEEKLY_MONTH_CODES = "123456789OND"
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
FO_FILES: Mapping[str, str] = {"NFO": "NSE_FO.csv", "BFO": "BSE_FO.csv"}
TICKER_PREFIX: Mapping[str, str] = {"NFO": "NSE:", "BFO": "BSE:"}
SEGMENT_PREFIX: Mapping[str, str] = {"NFO": "1011", "BFO": "1211"}  # fyers_apiv3 map.json exch_seg_dict
# The index each underlying's spot price is quoted as (Fyers tickers, the seed's own notation).
INDEX_TICKERS: Mapping[str, str] = {
    "NIFTY": "NSE:NIFTY50-INDEX", "BANKNIFTY": "NSE:NIFTYBANK-INDEX", "FINNIFTY": "NSE:FINNIFTY-INDEX",
    "MIDCPNIFTY": "NSE:MIDCPNIFTY-INDEX", "SENSEX": "BSE:SENSEX-INDEX", "BANKEX": "BSE:BANKEX-INDEX",
}


class SymbolRowError(ValueError):
    pass


@dataclass
class SymbolMaster:
    """What one file gave: the contracts, each underlying's index Fytoken, and the rows refused (line → problem)."""

    exchange: str
    instruments: InstrumentMaster = field(default_factory=InstrumentMaster)
    index_tokens: dict[str, int] = field(default_factory=dict)
    contracts: int = 0
    skipped: int = 0  # rows of other underlyings, futures, other segments
    bad: dict[int, str] = field(default_factory=dict)

    def check(self, *, max_bad_fraction: float = 0.01) -> None:
        """Refuse a file whose wanted rows were mostly bad (a changed column order, a truncated download)."""
        total = self.contracts + len(self.bad)
        if total == 0:
            raise ValueError(f"{FO_FILES.get(self.exchange, self.exchange)}: no option rows of the wanted underlyings")
        if len(self.bad) > max_bad_fraction * total:
            sample = "; ".join(f"line {line}: {problem}" for line, problem in list(self.bad.items())[:3])
            raise ValueError(f"{FO_FILES.get(self.exchange, self.exchange)}: {len(self.bad)} of {total} option rows "
                             f"are malformed ({sample})")


def _int(value: str, column: str, *, maximum: int | None = None, max_digits: int = MAX_TOKEN_DIGITS) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise SymbolRowError(f"{column} {value!r} is not a positive integer")
    if len(text) > max_digits or (maximum is not None and int(text) > maximum):
        limit = f"{maximum}" if maximum is not None else f"{max_digits} digits"
        raise SymbolRowError(f"{column} {text[:30]!r} is beyond the sane bound ({limit})")
    return int(text)


def ticker_strike(strike_paise: int) -> str:
    """The strike as Fyers' tickers write it: whole rupees bare (``26000``), else the decimal without trailing
    zeros (``1012.5``)."""
    rupees, paise = divmod(strike_paise, 100)
    return str(rupees) if paise == 0 else f"{rupees}.{paise:02d}".rstrip("0")


def _check_ticker(contract: OptionContract) -> None:
    """The ticker must say what the columns say: underlying, expiry, strike, option type."""
    symbol = contract.tradingsymbol
    suffix = f"{ticker_strike(contract.strike)}{contract.option_type.value}"
    if not symbol.endswith(suffix):
        raise SymbolRowError(f"ticker {symbol} does not end in {suffix} (strike {ticker_strike(contract.strike)}, "
                             f"option type {contract.option_type.value} as the columns say)")
    middle = symbol[len(contract.underlying):-len(suffix)]
    expiry = contract.expiry
    weekly = f"{expiry.year % 100:02d}{WEEKLY_MONTH_CODES[expiry.month - 1]}{expiry.day:02d}"
    monthly = f"{expiry.year % 100:02d}{MONTH_NAMES[expiry.month - 1]}"
    if middle not in (weekly, monthly):
        raise SymbolRowError(f"ticker {symbol} does not carry the expiry {expiry.isoformat()} "
                             f"({weekly} or {monthly} expected, found {middle!r})")


def _paise(value: str, column: str) -> int:
    try:
        return to_paise(value.strip())
    except MoneyError:
        raise SymbolRowError(f"{column} {value!r} is not an amount") from None


def parse_row(cells: list[str], exchange: str) -> tuple[OptionContract, int]:
    """One option row → its contract and the underlying index's Fytoken; ``SymbolRowError`` naming the problem."""
    if len(cells) < COLUMNS:
        raise SymbolRowError(f"{len(cells)} columns, expected at least {COLUMNS}")
    token_text = cells[0].strip()
    token = _int(token_text, "Fytoken")
    if not token_text.startswith(SEGMENT_PREFIX[exchange]) or len(token_text) <= 10:
        raise SymbolRowError(f"Fytoken {token_text} is not a {exchange} token ({SEGMENT_PREFIX[exchange]}…)")
    ticker = cells[9].strip()
    prefix = TICKER_PREFIX[exchange]
    if not ticker.startswith(prefix) or len(ticker) <= len(prefix):
        raise SymbolRowError(f"ticker {ticker!r} does not start with {prefix}")
    try:
        option_type = OptionType(cells[16].strip())
    except ValueError:
        raise SymbolRowError(f"option type {cells[16]!r} is not CE or PE") from None
    try:
        expiry = datetime.fromtimestamp(_int(cells[8], "expiry"), IST).date()
    except (OverflowError, OSError, ValueError) as exc:
        raise SymbolRowError(f"expiry {cells[8]!r} is not an epoch time ({exc})") from None
    try:
        contract = OptionContract(exchange=exchange, tradingsymbol=ticker[len(prefix):],
                                  underlying=cells[13].strip(), expiry=expiry, strike=_paise(cells[15], "strike"),
                                  option_type=option_type, lot_size=_int(cells[3], "lot size", maximum=MAX_LOT),
                                  tick_size=_paise(cells[4], "tick size"), instrument_token=token)
    except ValueError as exc:
        raise SymbolRowError(str(exc)) from None
    if not contract.underlying or not contract.tradingsymbol.startswith(contract.underlying):
        raise SymbolRowError(f"underlying {contract.underlying!r} does not name {contract.tradingsymbol}")
    _check_ticker(contract)
    return contract, _int(cells[17], "underlying Fytoken")


def parse_symbol_master(text: str, exchange: str, underlyings: Collection[str]) -> SymbolMaster:
    """Options of ``underlyings`` from one master file (``exchange`` NFO for NSE_FO.csv, BFO for BSE_FO.csv)."""
    if exchange not in FO_FILES:
        raise ValueError(f"exchange must be NFO or BFO, got {exchange!r}")
    result = SymbolMaster(exchange)
    wanted = set(underlyings)
    parsed: dict[int, tuple[OptionContract, int]] = {}
    by_ticker: dict[str, list[int]] = defaultdict(list)
    by_token: dict[int, list[int]] = defaultdict(list)
    for line, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not cells or not any(cell.strip() for cell in cells):
            continue
        underlying = cells[13].strip() if len(cells) > 13 else ""
        if len(cells) > 16 and (underlying not in wanted or cells[16].strip() not in ("CE", "PE")):
            result.skipped += 1  # another underlying, a future: not ours to read
            continue
        try:
            parsed[line] = parse_row(cells, exchange)
        except ValueError as exc:
            result.bad[line] = str(exc)
            continue
        contract = parsed[line][0]
        by_ticker[contract.tradingsymbol].append(line)
        by_token[contract.instrument_token].append(line)
    # A ticker or Fytoken on several rows that disagree: no row of them can be trusted (which one is right?).
    for kind, groups in (("ticker", by_ticker), ("Fytoken", by_token)):
        for key, lines in groups.items():
            if len({parsed[line] for line in lines}) > 1:
                for line in lines:
                    result.bad.setdefault(line, f"{kind} {key} appears on lines {', '.join(map(str, lines))} "
                                                f"with different contents")
    seen: set[tuple[OptionContract, int]] = set()
    for line, (contract, index_token) in parsed.items():
        if line in result.bad or (contract, index_token) in seen:
            continue  # refused, or an identical repeat
        seen.add((contract, index_token))
        try:
            result.instruments.add(contract)
        except ValueError as exc:  # a clash with nothing above should not remain; never guess if it does
            result.bad[line] = str(exc)
            continue
        result.contracts += 1
        result.index_tokens.setdefault(contract.underlying, index_token)
    return result
