"""The state document of ``opening_range_breakout``, read back with every field and their consistency checked.

Besides the position (as the EMA crossover keeps it: contract, units, cost, the stop and target fixed when the entry
filled, the order waited on, the phase), it keeps the day's opening range and which directions have been taken, so a
restart mid-day neither rebuilds the range from later ticks nor trades a direction twice. Version 1, money in paise,
times in ns, the day as an IST date:

    {"version": 1, "strategy_id": "opening_range_breakout", "day": "" | "YYYY-MM-DD",
     "range_high": 0, "range_low": 0, "range_complete": 0 | 1, "range_usable": 0 | 1,
     "up_done": 0 | 1, "down_done": 0 | 1,
     "phase": "flat" | "entering" | "open" | "exiting", "contract": null | {...},
     "quantity": 65, "cost": 650000, "risk_per_unit": 2500, "stop_price": 7500, "target_price": 15000,
     "time_exit_ns": ..., "opened_ns": ..., "pending_intent": "", "exit_reason": "", "retry_exit_at_ns": 0}

``range_high``/``range_low`` are index prices in paise (0/0 before the first index tick of the day);
``risk_per_unit`` is the premium distance from the entry to the stop fixed at the signal (the index back at the
range's other side, translated with the option's delta); ``stop_price``/``target_price`` are the premium levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from trader.market.instruments import OptionContract
from trader.store.codec import DocReader
from trader.strategies.ema_state import Phase, check_position
from trader.strategies.state import check_header

STATE_VERSION = 1

__all__ = ["STATE_VERSION", "Phase", "Saved", "read_state"]


@dataclass(frozen=True, slots=True)
class Saved:
    """A checked state document."""

    day: date | None
    range_high: int
    range_low: int
    range_complete: bool
    range_usable: bool
    up_done: bool
    down_done: bool
    phase: Phase
    contract: OptionContract | None
    quantity: int
    cost: int
    risk_per_unit: int
    stop_price: int
    target_price: int
    time_exit_ns: int
    opened_ns: int
    pending_intent: str
    exit_reason: str
    retry_exit_at_ns: int


def _flag(doc: DocReader, key: str) -> bool:
    value = doc.integer(key, minimum=0)
    if value > 1:
        raise ValueError(f"{doc.name(key)}: expected 0 or 1, got {value}")
    return value == 1


def _day(doc: DocReader) -> date | None:
    text = doc.text("day")
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{doc.name('day')}: expected YYYY-MM-DD or \"\", got {text!r}") from None


def read_state(state: Mapping[str, object], strategy_id: str) -> Saved:
    """The document, or ``ValueError`` naming the field that is wrong or inconsistent."""
    doc = DocReader(state)
    check_header(doc, strategy_id, STATE_VERSION)
    phase = Phase(doc.text("phase", choices=tuple(p.value for p in Phase)))
    saved = Saved(
        day=_day(doc), range_high=doc.integer("range_high", minimum=0), range_low=doc.integer("range_low", minimum=0),
        range_complete=_flag(doc, "range_complete"), range_usable=_flag(doc, "range_usable"),
        up_done=_flag(doc, "up_done"), down_done=_flag(doc, "down_done"),
        phase=phase, contract=doc.contract("contract") if doc.raw("contract") is not None else None,
        quantity=doc.integer("quantity", minimum=0), cost=doc.integer("cost", minimum=0),
        risk_per_unit=doc.integer("risk_per_unit", minimum=0),
        stop_price=doc.integer("stop_price", minimum=0), target_price=doc.integer("target_price", minimum=0),
        time_exit_ns=doc.integer("time_exit_ns", minimum=0), opened_ns=doc.integer("opened_ns", minimum=0),
        pending_intent=doc.text("pending_intent"), exit_reason=doc.text("exit_reason"),
        retry_exit_at_ns=doc.integer("retry_exit_at_ns", minimum=0))
    if saved.range_low > saved.range_high:
        raise ValueError(f"range_low: {saved.range_low} is above range_high {saved.range_high}")
    if saved.range_high and saved.day is None:
        raise ValueError("day: a range is saved without the day it belongs to")
    check_position(saved)
    return saved
