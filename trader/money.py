"""Money: the one place where rupees become integer paise and back.

Inside the domain every price and amount is an ``int`` of paise (tick size 0.05 = 5 paise), so sums, P&L and charges
are exact. Rupees exist only at the edges — config, the seed's risk API, Kite REST and the instrument dump (rupee
floats or decimal text), the simulator's wire, log and report fields — and every one of them converts here.

``to_paise`` takes a float, int or decimal text and refuses what is not a finite number (``bool`` too, which Python
would otherwise take as 0 or 1), so a malformed broker reply or config value can never become a price silently.
Floats are converted with ``round(x * 100)``: for any amount that is a whole number of paise this is exact (the float
nearest k/100, times 100, rounds back to k); text is parsed as a decimal, so ``"0.105"`` is 10.5 paise → 10 (half
to even), not a float artefact.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

PAISE_PER_RUPEE = 100
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_RUPEE_DIGITS = 15  # a thousand lakh crore: anything larger in a price or a balance is garbage


class MoneyError(ValueError):
    """A value that should be an amount of rupees is not a finite number."""


def to_paise(rupees: float | int | str | Decimal) -> int:
    """Rupees (float, int, decimal text) → integer paise; ``MoneyError`` if it is not a finite number."""
    if isinstance(rupees, bool):
        raise MoneyError(f"{rupees!r} is a boolean, not an amount of rupees")
    if isinstance(rupees, int):
        return rupees * PAISE_PER_RUPEE
    if isinstance(rupees, float):
        if not math.isfinite(rupees):
            raise MoneyError(f"{rupees!r} is not a finite amount of rupees")
        if abs(rupees) >= 10.0 ** (_MAX_RUPEE_DIGITS + 1):
            raise MoneyError(f"{rupees!r} is not a plausible amount of rupees")
        return round(rupees * PAISE_PER_RUPEE)
    if isinstance(rupees, str):
        if not _DECIMAL_TEXT.fullmatch(rupees.strip()):  # ASCII digits only: no "1_000", no other scripts' digits
            raise MoneyError(f"{rupees!r} is not a number of rupees")
        try:
            rupees = Decimal(rupees.strip())
        except InvalidOperation:
            raise MoneyError(f"{rupees!r} is not a number of rupees") from None
    if isinstance(rupees, Decimal):
        if not rupees.is_finite():
            raise MoneyError(f"{rupees!r} is not a finite amount of rupees")
        if rupees.adjusted() > _MAX_RUPEE_DIGITS:  # "1e1000000" would overflow, or take seconds to round
            raise MoneyError(f"{rupees!r} is not a plausible amount of rupees")
        return round(rupees * PAISE_PER_RUPEE)
    raise MoneyError(f"{rupees!r} ({type(rupees).__name__}) is not an amount of rupees")


def to_paise_or_zero(rupees: float | int | str | Decimal | None) -> int:
    """As ``to_paise``, with ``None`` (an absent optional field on the wire) as 0."""
    return 0 if rupees is None else to_paise(rupees)


def to_rupees(paise: int) -> float:
    """Integer paise → rupees as a float (JSON answers, logs, plots); never fed back into arithmetic."""
    return paise / PAISE_PER_RUPEE


def rupee_text(paise: int) -> str:
    """Integer paise → an exact decimal rupee string (``12345`` → ``"123.45"``), as a wire form field wants it."""
    sign = "-" if paise < 0 else ""
    whole, fraction = divmod(abs(paise), PAISE_PER_RUPEE)
    return f"{sign}{whole}.{fraction:02d}"


def group_indian(number: int) -> str:
    """An integer with Indian digit grouping: the last three digits, then pairs (``12345678`` → ``"1,23,45,678"``)."""
    sign = "-" if number < 0 else ""
    digits = str(abs(number))
    head, last3 = digits[:-3], digits[-3:]
    pairs = [head[max(i - 2, 0):i] for i in range(len(head), 0, -2)][::-1]
    return sign + ",".join([*pairs, last3])


def format_inr(paise: int) -> str:
    """Integer paise → a human-readable amount for messages, grouped the Indian way (lakh, crore):
    ``-123456`` → ``"-₹1,234.56"``, ``12345678`` → ``"₹1,23,456.78"``."""
    sign = "-" if paise < 0 else ""
    whole, fraction = divmod(abs(paise), PAISE_PER_RUPEE)
    return f"{sign}₹{group_indian(whole)}.{fraction:02d}"
