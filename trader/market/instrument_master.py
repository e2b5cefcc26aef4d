"""The instrument master: the index options and indices we trade, by token and by tradingsymbol, filled from Kite's
daily instrument dump (every row validated: a malformed one names its line and column)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Mapping
from datetime import date

from trader.market.instruments import (
    FALLBACK_UNDERLYINGS,
    OPTION_TYPE_CODES,
    IndexInstrument,
    OptionContract,
    OptionType,
    underlying_of_symbol,
    underlying_spec,
)
from trader.money import MoneyError, to_paise

_KITE_COLUMNS = (
    "instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry", "strike",
    "tick_size", "lot_size", "instrument_type", "segment", "exchange",
)
_OPTION_SEGMENTS = frozenset({"NFO-OPT", "BFO-OPT"})
_INDEX_SEGMENT = "INDICES"
_CHAIN_ORDER = {OptionType.CE: 0, OptionType.PE: 1}


class InstrumentMaster:
    """In-memory registry of the index options and indices we trade, by token and by tradingsymbol."""

    def __init__(self) -> None:
        self._by_token: dict[int, OptionContract | IndexInstrument] = {}
        self._contracts: dict[str, OptionContract] = {}
        self._chains: dict[tuple[str, date], list[OptionContract]] = defaultdict(list)
        self._indices: dict[str, IndexInstrument] = {}

    def add(self, contract: OptionContract) -> None:
        """Register a contract. Re-adding an equal one is a no-op; a different one with a used
        tradingsymbol or token is an error."""
        existing = self._contracts.get(contract.tradingsymbol)
        if existing == contract:
            return
        if existing is not None:
            raise ValueError(f"{contract.tradingsymbol} is already registered as {existing}")
        self._register_token(contract.instrument_token, contract)
        self._contracts[contract.tradingsymbol] = contract
        self._chains[contract.underlying, contract.expiry].append(contract)

    def merge(self, other: InstrumentMaster) -> None:
        """Register everything ``other`` holds (the day's dump into the master the actors already share)."""
        for index in other._indices.values():
            self.add_index(index)
        for contract in other._contracts.values():
            self.add(contract)

    def add_index(self, index: IndexInstrument) -> None:
        self._register_token(index.instrument_token, index)
        for spec in FALLBACK_UNDERLYINGS.values():
            if (spec.spot_exchange, spec.spot_symbol) == (index.exchange, index.tradingsymbol):
                self._indices[spec.name] = index

    def _register_token(self, token: int, instrument: OptionContract | IndexInstrument) -> None:
        if token == 0:  # unknown token: reachable by symbol only
            return
        existing = self._by_token.get(token)
        if existing is not None and existing != instrument:
            raise ValueError(f"instrument token {token} is already registered to {existing}")
        self._by_token[token] = instrument

    def registered(self) -> list[OptionContract | IndexInstrument]:
        """Every instrument with a known token (indices and contracts), in registration order."""
        return list(self._by_token.values())

    def by_token(self, token: int) -> OptionContract | IndexInstrument | None:
        return self._by_token.get(token)

    def contract(self, tradingsymbol: str) -> OptionContract | None:
        """The contract with this tradingsymbol; an ``NFO:``/``BFO:`` prefix must match its exchange."""
        exchange, _, symbol = tradingsymbol.strip().upper().rpartition(":")
        contract = self._contracts.get(symbol)
        if contract is None or exchange not in ("", contract.exchange):
            return None
        return contract

    def option_chain(self, underlying: str, expiry: date) -> list[OptionContract]:
        """All strikes of one expiry, by strike then CE before PE."""
        chain = self._chains.get((underlying, expiry), [])
        return sorted(chain, key=lambda contract: (contract.strike, _CHAIN_ORDER[contract.option_type]))

    def expiries(self, underlying: str) -> list[date]:
        return sorted(expiry for name, expiry in self._chains if name == underlying)

    def nearest_strike(self, underlying: str, expiry: date, spot_paise: int,
                       option_type: OptionType) -> OptionContract | None:
        """The at-the-money contract: the strike closest to ``spot_paise``, the lower one on a tie."""
        candidates = [c for c in self._chains.get((underlying, expiry), []) if c.option_type is option_type]
        if not candidates:
            return None
        return min(candidates, key=lambda contract: (abs(contract.strike - spot_paise), contract.strike))

    def index_for(self, underlying: str) -> IndexInstrument | None:
        return self._indices.get(underlying)

    def lot_size(self, underlying: str) -> int:
        """The lot size of the nearest listed expiry, else the fallback table's.

        Lots change at the semi-annual reviews and old expiries keep the old lot for a while (fact sheet
        §2.1), so the nearest expiry, the one we trade, is the one that counts. For a given contract use
        its own ``lot_size``.
        """
        expiries = self.expiries(underlying)
        if expiries:
            return self._chains[underlying, expiries[0]][0].lot_size
        return underlying_spec(underlying).lot_size

    @classmethod
    def from_kite_csv(cls, text: str) -> InstrumentMaster:
        """Build the master from Kite's instrument dump (``GET /instruments``, CSV).

        Keeps options (segment NFO-OPT/BFO-OPT, type CE/PE) of the index underlyings in
        ``FALLBACK_UNDERLYINGS``, with the dump's own expiry, strike, lot and tick size, and the INDICES
        rows. Stock options and everything else are skipped: the daemon trades index options only. Old
        dumps leave ``name`` empty; then the underlying is read from the tradingsymbol. A malformed row
        raises ValueError naming its line and column.
        """
        reader = csv.DictReader(io.StringIO(text))
        missing = [column for column in _KITE_COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"Kite instrument dump line 1: missing column(s) {', '.join(missing)}")
        master = cls()
        for row in reader:
            try:
                master._add_kite_row(row)
            except ValueError as exc:
                raise ValueError(f"Kite instrument dump line {reader.line_num}: {exc}") from exc
        return master

    def _add_kite_row(self, row: Mapping[str | None, str | list[str] | None]) -> None:
        if None in row or None in row.values():
            raise ValueError(f"expected {len(_KITE_COLUMNS)} columns")
        fields = {column: str(row[column]) for column in _KITE_COLUMNS}
        if fields["segment"] in _OPTION_SEGMENTS and fields["instrument_type"] in OPTION_TYPE_CODES:
            contract = _contract_from_row(fields)
            if contract is not None:
                self.add(contract)
        elif fields["segment"] == _INDEX_SEGMENT:
            self.add_index(IndexInstrument(
                exchange=fields["exchange"],
                tradingsymbol=fields["tradingsymbol"],
                name=fields["name"],
                instrument_token=_int_column(fields, "instrument_token"),
                tick_size=_paise_column(fields, "tick_size") if fields["tick_size"] else 0,
            ))


def _contract_from_row(row: Mapping[str, str]) -> OptionContract | None:
    name = row["name"].strip()
    spec = FALLBACK_UNDERLYINGS.get(name) if name else underlying_of_symbol(row["tradingsymbol"])
    if spec is None:
        return None
    return OptionContract(
        exchange=row["exchange"],
        tradingsymbol=row["tradingsymbol"],
        underlying=spec.name,
        expiry=_date_column(row, "expiry"),
        strike=_paise_column(row, "strike"),
        option_type=OptionType(row["instrument_type"]),
        lot_size=_int_column(row, "lot_size"),
        tick_size=_paise_column(row, "tick_size"),
        instrument_token=_int_column(row, "instrument_token"),
    )


def _column_error(row: Mapping[str, str], column: str, expected: str) -> ValueError:
    return ValueError(f"column {column!r}: {row[column]!r} is not {expected}")


def _int_column(row: Mapping[str, str], column: str) -> int:
    try:
        return int(row[column])
    except ValueError:
        raise _column_error(row, column, "an integer") from None


def _paise_column(row: Mapping[str, str], column: str) -> int:
    """A rupee amount from Kite's dump (decimal text) as paise."""
    try:
        return to_paise(row[column])
    except MoneyError:
        finite = row[column].strip().lower() not in {"nan", "inf", "+inf", "-inf", "infinity", "-infinity"}
        raise _column_error(row, column, "a number" if finite else "a finite number") from None


def _date_column(row: Mapping[str, str], column: str) -> date:
    try:
        return date.fromisoformat(row[column])
    except ValueError:
        raise _column_error(row, column, "a YYYY-MM-DD date") from None
