"""Converters from other tick layouts to the replay schema (CSV out, streamed: one row in, one row out).

* ``convert_csv``: any CSV whose columns map onto the schema's, with times given as one column or a date and a time
  column, in ISO or a ``strptime`` format, naive (read in ``zone``, IST by default) or with their own offset.
* ``convert_kite_ticks``: JSON lines of Kite WebSocket ticks as ``kiteconnect`` hands them to ``on_ticks`` (one tick
  dict per line, ``exchange_timestamp`` a naive IST ``yyyy-mm-dd hh:mm:ss`` text or ISO time, the best bid and offer
  from ``depth``).

Prices are copied as decimal text (never through a float), so the replay's paise are the source's exactly.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from trader.adapters.replay import schema

OUTPUT_COLUMNS = (schema.TS, schema.INSTRUMENT_TOKEN, schema.TRADINGSYMBOL, schema.LAST_PRICE, schema.BID,
                  schema.BID_QTY, schema.ASK, schema.ASK_QTY, schema.VOLUME, schema.OI)


class ConvertError(ValueError):
    """A source row cannot be converted; the message names the file, the line and the column."""


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """How a source CSV maps onto the schema.

    ``columns``: schema column → source column (``{"last_price": "LTP", "tradingsymbol": "Ticker"}``); ``ts`` may be
    mapped directly, or ``date_column`` and ``time_column`` are joined with a space. ``time_format``: a ``strptime``
    format for the (joined) time, None = ISO-8601. Naive times are read in ``zone``.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    date_column: str = ""
    time_column: str = ""
    time_format: str | None = None
    zone: str = "Asia/Kolkata"


def _iso_time(text: str, layout: CsvLayout) -> str:
    moment = datetime.strptime(text, layout.time_format) if layout.time_format else datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(layout.zone))
    return moment.isoformat()


def convert_csv(source: Path, target: Path, layout: CsvLayout) -> int:
    """Rewrite ``source`` in the replay schema to ``target``; returns the rows written."""
    count = 0
    with source.open(newline="", encoding="utf-8-sig") as src, target.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        wanted = [*layout.columns.values(), *(c for c in (layout.date_column, layout.time_column) if c)]
        missing = [c for c in wanted if c not in (reader.fieldnames or ())]
        if missing:
            raise ConvertError(f"{source} line 1: missing column(s) {', '.join(missing)}")
        if schema.TS not in layout.columns and not layout.time_column:
            raise ConvertError("the layout names no time: map ts, or give time_column (and date_column)")
        writer = csv.writer(dst)
        writer.writerow(OUTPUT_COLUMNS)
        for row in reader:
            if schema.TS in layout.columns:
                when = row[layout.columns[schema.TS]].strip()
            else:
                when = " ".join(row[c].strip() for c in (layout.date_column, layout.time_column) if c)
            try:
                ts = _iso_time(when, layout)
            except ValueError:
                raise ConvertError(f"{source} line {reader.line_num}: {when!r} does not read as a time "
                                   f"({layout.time_format or 'ISO-8601'})") from None
            out = {name: (row[layout.columns[name]] or "").strip() if name in layout.columns else ""
                   for name in OUTPUT_COLUMNS}
            out[schema.TS] = ts
            writer.writerow([out[name] for name in OUTPUT_COLUMNS])
            count += 1
    return count


def _price(value: Any) -> str:
    if value is None or value == "":
        return ""
    return str(Decimal(str(value)))  # a JSON float's shortest repr: 120.05 stays "120.05"


def _best(depth: Mapping[str, Any], side: str) -> tuple[str, str]:
    levels = depth.get(side) or []
    if not levels:
        return "", ""
    level = levels[0]
    price = _price(level.get("price"))
    if price in ("", "0", "0.0", "0.00"):  # Kite pads an empty book with zero levels
        return "", ""
    return price, str(level.get("quantity", ""))


def convert_kite_ticks(source: Path, target: Path) -> int:
    """Kite WebSocket ticks, one JSON object per line, to the replay schema; returns the rows written."""
    ist = CsvLayout()
    count = 0
    with source.open(encoding="utf-8") as src, target.open("w", newline="") as dst:
        writer = csv.writer(dst)
        writer.writerow(OUTPUT_COLUMNS)
        for number, line in enumerate(src, start=1):
            if not line.strip():
                continue
            try:
                tick = json.loads(line)
                stamp = tick.get("exchange_timestamp") or tick.get("last_trade_time") or tick["timestamp"]
                ts = _iso_time(str(stamp), ist)
                bid, bid_qty = _best(tick.get("depth") or {}, "buy")
                ask, ask_qty = _best(tick.get("depth") or {}, "sell")
                row = [ts, str(int(tick["instrument_token"])), "", _price(tick["last_price"]), bid, bid_qty, ask,
                       ask_qty, str(tick.get("volume_traded", tick.get("volume", "")) or ""),
                       str(tick.get("oi", "") or "")]
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ConvertError(f"{source} line {number}: not a Kite tick ({type(exc).__name__}: {exc})") from None
            writer.writerow(row)
            count += 1
    return count


def kite_tick_lines(ticks: Iterable[Mapping[str, Any]]) -> str:
    """Ticks as the JSON lines ``convert_kite_ticks`` reads (what a user's ``on_ticks`` logger would write)."""
    return "".join(json.dumps(dict(tick), default=str) + "\n" for tick in ticks)
