"""The state document of ``ema_crossover_enhanced``, read back with every field and their consistency checked.

What it holds (contract, units, cost), the stop and target fixed when the entry filled, the time exit, the order it
waits on and the phase. The bars and EMAs are not saved: they warm up again from ticks, and while it holds a
position the strategy does not enter, so a restart never re-enters or double counts. Version 1, money in paise and
times in ns:

    {"version": 1, "strategy_id": "ema_crossover_enhanced", "phase": "flat" | "entering" | "open" | "exiting",
     "contract": null | {exchange, tradingsymbol, underlying, expiry: "YYYY-MM-DD", strike, option_type, lot_size,
                         tick_size, instrument_token},
     "quantity": 65, "cost": 650000, "stop_price": 7000, "target_price": 16000, "time_exit_ns": ..., "opened_ns": ...,
     "pending_intent": "" | "<intent id>", "exit_reason": "", "retry_exit_at_ns": 0}

``quantity`` is units held, ``cost`` their total cost; ``stop_price``/``target_price`` are the premium levels (an
exit when the bid is at or below the stop, at or above the target); ``time_exit_ns`` is when the position must go
(0 = the day's ``exit_time``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from trader.market.instruments import OptionContract
from trader.store.codec import DocReader
from trader.strategies.state import check_header

if TYPE_CHECKING:
    from trader.strategies.orb_state import Saved as OrbSaved

STATE_VERSION = 1


class Phase(Enum):
    FLAT = "flat"
    ENTERING = "entering"
    OPEN = "open"
    EXITING = "exiting"


@dataclass(frozen=True, slots=True)
class Saved:
    """A checked state document."""

    phase: Phase
    contract: OptionContract | None
    quantity: int
    cost: int
    stop_price: int
    target_price: int
    time_exit_ns: int
    opened_ns: int
    pending_intent: str
    exit_reason: str
    retry_exit_at_ns: int


def read_state(state: Mapping[str, object], strategy_id: str) -> Saved:
    """The document, or ``ValueError`` naming the field that is wrong or inconsistent."""
    doc = DocReader(state)
    check_header(doc, strategy_id, STATE_VERSION)
    phase = Phase(doc.text("phase", choices=tuple(p.value for p in Phase)))
    saved = Saved(
        phase=phase, contract=doc.contract("contract") if doc.raw("contract") is not None else None,
        quantity=doc.integer("quantity", minimum=0), cost=doc.integer("cost", minimum=0),
        stop_price=doc.integer("stop_price", minimum=0), target_price=doc.integer("target_price", minimum=0),
        time_exit_ns=doc.integer("time_exit_ns", minimum=0), opened_ns=doc.integer("opened_ns", minimum=0),
        pending_intent=doc.text("pending_intent"), exit_reason=doc.text("exit_reason"),
        retry_exit_at_ns=doc.integer("retry_exit_at_ns", minimum=0))
    check_position(saved)
    return saved


def check_position(saved: Saved | OrbSaved) -> None:
    """The position fields of a saved document agree with each other (``ValueError`` naming the field if not)."""
    phase = saved.phase
    if saved.contract is None and (phase is not Phase.FLAT or saved.quantity):
        raise ValueError(f"contract: missing for phase {phase.value} with quantity {saved.quantity}")
    if phase is Phase.FLAT and (saved.quantity or saved.pending_intent):
        raise ValueError("phase: flat, but quantity or pending_intent is set")
    if phase is Phase.OPEN and saved.quantity == 0:
        raise ValueError("quantity: phase open needs a position, got 0")
    if phase in (Phase.ENTERING, Phase.EXITING) and not saved.pending_intent:
        raise ValueError(f"pending_intent: phase {phase.value} needs the intent it waits on")
    if saved.quantity == 0 and saved.cost:
        raise ValueError(f"cost: {saved.cost} for no units")
