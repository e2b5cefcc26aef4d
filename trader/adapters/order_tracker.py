"""Order reports (a venue's order-update messages, or polled order-book rows) → ``OrderUpdate`` and ``Fill`` events.

Venue-neutral: every venue turns its reports into one normalised shape, a mapping with ``order_id``, ``tag``,
``status`` (an ``OrderStatus`` value: Kite's wire strings as they are, Fyers' numeric statuses converted by
``adapters/fyers/orders.py``), ``filled_quantity`` (cumulative), ``average_price`` (rupees, of the filled part),
``pending_quantity`` and ``status_message``, and, when the venue reports them, the order's ``exchange``,
``tradingsymbol`` and ``transaction_type`` (BUY/SELL). Kite's postbacks already have it.

Venues report cumulative ``filled_quantity`` and ``average_price``; one execution is the difference between two
reports. Deliveries may repeat (reconnects, a poll after a postback) or arrive out of order, so the tracker keeps
what each order has already reported and emits only what is new: a repeated or stale report adds nothing, and
nothing follows a terminal state. Money arrives as rupee floats and leaves as integer paise.

Trust: a report is booked only for an order id the tracker knows — named by our own ``place_order`` reply
(``placed``), or confirmed from the broker's own record (``on_postback(..., confirmed=True)``). A report for an order
id never seen, even under one of our tags, is held back (``needs_confirmation``): ``KiteBroker`` asks the broker's
order history first, so a forged update never becomes a position the broker does not have. For an order id it knows,
the stored tag rules: a report naming another tag is dropped (``postback_tag_mismatch``). A report whose contract or
side contradicts the intent (even the broker's own record under our tag) is dropped (``postback_contradicts_order``),
and so is a COMPLETE short of the order's quantity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trader.clock import Clock
from trader.events import Fill, OrderIntent, OrderStatus, OrderUpdate
from trader.logging import get_logger
from trader.market.calendar import ist_date
from trader.market.charges import option_charges
from trader.money import MoneyError, to_paise

log = get_logger("trader.orders")

REPORT_STATUSES: Mapping[str, OrderStatus] = {
    "OPEN": OrderStatus.OPEN,
    "TRIGGER PENDING": OrderStatus.TRIGGER_PENDING,
    "COMPLETE": OrderStatus.COMPLETE,
    "CANCELLED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
}


@dataclass(slots=True)
class _Reported:
    intent: OrderIntent
    filled: int = 0
    filled_value: int = 0  # paise × units, from the cumulative average
    fills: int = 0
    status: OrderStatus = OrderStatus.PENDING


class PostbackError(ValueError):
    """A postback without the fields an update needs; it is logged and dropped, never half-applied."""


def _paise(value: Any, field: str) -> int:
    if not isinstance(value, int | float):
        raise PostbackError(f"{field} is {value!r}, not a number")
    try:
        return to_paise(value)
    except MoneyError as error:
        raise PostbackError(f"{field}: {error}") from None


def contradiction(data: Mapping[str, Any], intent: OrderIntent) -> str:
    """Why a report cannot be about ``intent``'s order ("" when nothing in it says so): its ``exchange``,
    ``tradingsymbol`` or ``transaction_type`` (BUY/SELL), each when the report carries it, differ from the intent's."""
    claims = (("exchange", intent.contract.exchange), ("tradingsymbol", intent.contract.tradingsymbol),
              ("transaction_type", intent.side.value))
    wrong = [f"{field} {data.get(field)!r}, not {ours!r}" for field, ours in claims
             if data.get(field) not in (None, "") and str(data.get(field)) != ours]
    return "; ".join(wrong)


class OrderTracker:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._intents: dict[str, OrderIntent] = {}  # tag → intent
        self._by_order: dict[str, _Reported] = {}  # progress per broker order: a tag may (wrongly) have two
        self._tag_of_order: dict[str, str] = {}
        self._terminal: set[str] = set()

    def expect(self, intent: OrderIntent, tag: str) -> None:
        """Register an order we are about to place, so its reports can be tied to the intent."""
        self._intents.setdefault(tag, intent)

    def adopt(self, intent: OrderIntent, tag: str, order_id: str, filled: int, filled_value: int) -> None:
        """An order placed before a restart: ``filled`` units worth ``filled_value`` paise are already booked."""
        self._intents.setdefault(tag, intent)
        if not order_id:
            return  # its order id is not known yet: a report under its tag is confirmed with the broker first
        self._tag_of_order[order_id] = tag
        reported = self._by_order.setdefault(order_id, _Reported(intent))
        if filled > reported.filled:
            reported.filled, reported.filled_value = filled, filled_value
            reported.fills = max(reported.fills, 1)  # the brokerage of its first execution is booked already

    def placed(self, tag: str, order_id: str) -> None:
        """The broker named ``order_id`` for our order ``tag`` (its own reply or order book): trusted from now on."""
        if order_id and tag in self._intents:
            self._tag_of_order.setdefault(order_id, tag)

    def is_known(self, order_id: str) -> bool:
        return order_id in self._tag_of_order

    def intent_for(self, tag: str) -> OrderIntent | None:
        return self._intents.get(tag)

    def needs_confirmation(self, data: Mapping[str, Any]) -> bool:
        """A report under one of our tags for an order id we have not seen: the broker must confirm it first."""
        order_id = str(data.get("order_id") or "")
        return bool(order_id) and order_id not in self._tag_of_order and str(data.get("tag") or "") in self._intents

    def on_postback(self, data: Mapping[str, Any], *, confirmed: bool = False) -> list[OrderUpdate | Fill]:
        """The events a report adds. ``confirmed``: ``data`` is the broker's own record (order book or history)."""
        try:
            return self._translate(data, confirmed)
        except PostbackError as exc:
            log.error("postback_rejected", problem=str(exc), order_id=str(data.get("order_id", "")))
        except Exception:  # a broker message must never take the market-data feed down with it
            log.exception("postback_failed", order_id=str(data.get("order_id", "")))
        return []

    def _translate(self, data: Mapping[str, Any], confirmed: bool) -> list[OrderUpdate | Fill]:
        order_id = str(data.get("order_id") or "")
        if not order_id:
            raise PostbackError("order_id is missing")
        reported_tag = str(data.get("tag") or "")
        known_tag = self._tag_of_order.get(order_id)
        if known_tag is not None and reported_tag and reported_tag != known_tag:
            # The order is known, and whose it is was settled when it became known (our reply, the broker's record):
            # a report naming another tag is garbled or forged. Booking it to that tag's intent would also take the
            # order over, so its real fills would later be refused: it is dropped, never booked.
            log.warning("postback_tag_mismatch", order_id=order_id, tag=known_tag, reported_tag=reported_tag,
                        status=data.get("status"), effect="dropped: the order's stored tag rules")
            return []
        tag = known_tag if known_tag is not None else reported_tag
        intent = self._intents.get(tag)
        if intent is None:
            log.info("postback_for_unknown_order", order_id=order_id, tag=tag, status=data.get("status"))
            return []  # placed outside this daemon (web, app): not ours to trade on
        if order_id not in self._tag_of_order and not confirmed:
            log.warning("postback_not_booked_unconfirmed", order_id=order_id, tag=tag, status=data.get("status"))
            return []
        problem = contradiction(data, intent)
        if problem:
            # Our order is for one contract and side; a report (or the broker's own record, under our tag) saying
            # otherwise is not a fill of ours, whatever else it claims: dropped, and the order id not made ours.
            log.error("postback_contradicts_order", order_id=order_id, tag=tag, problem=problem,
                      status=data.get("status"), filled=data.get("filled_quantity"), confirmed=confirmed,
                      effect="nothing booked")
            return []
        self._tag_of_order[order_id] = tag
        reported = self._by_order.setdefault(order_id, _Reported(intent))
        if order_id in self._terminal:
            return []
        raw_status = str(data.get("status") or "")
        status = REPORT_STATUSES.get(raw_status, OrderStatus.OPEN if raw_status == "UPDATE" else OrderStatus.PENDING)
        filled = data.get("filled_quantity", 0)
        if not isinstance(filled, int) or filled < 0:
            raise PostbackError(f"filled_quantity is {filled!r}")
        if filled > reported.intent.quantity:
            raise PostbackError(f"filled_quantity {filled} exceeds the order's {reported.intent.quantity}")
        if status is OrderStatus.COMPLETE and filled < reported.intent.quantity:
            # COMPLETE means every unit traded (Kite's always say filled == quantity); one short of it would end the
            # order here and the real fill, reported later, would be ignored.
            raise PostbackError(f"status COMPLETE with filled_quantity {filled} of the order's "
                                f"{reported.intent.quantity}")
        average = _paise(data.get("average_price", 0), "average_price")
        if filled and average <= 0:
            raise PostbackError(f"average_price {data.get('average_price')!r} for {filled} filled units")
        now = self._clock.now_ns()
        events: list[OrderUpdate | Fill] = []
        if filled > reported.filled:
            value = average * filled
            quantity = filled - reported.filled
            price = round((value - reported.filled_value) / quantity)
            if price <= 0:
                raise PostbackError(f"the reports imply a fill at {price} paise (average {average}, filled {filled})")
            reported.fills += 1
            intent = reported.intent
            charges = option_charges(exchange=intent.contract.exchange, side=intent.side, quantity=quantity,
                                     price=price, trade_date=ist_date(now), include_brokerage=reported.fills == 1)
            events.append(Fill(ts_ns=now, fill_id=f"{order_id}F{filled}", intent_id=intent.intent_id,
                               order_id=order_id, contract=intent.contract, side=intent.side, quantity=quantity,
                               price=price, expected_price=intent.expected_price, charges=charges.total,
                               purpose=intent.purpose))
            reported.filled, reported.filled_value = filled, value
        elif filled < reported.filled:
            log.warning("postback_out_of_order", order_id=order_id, filled=filled, known_filled=reported.filled)
            return []
        if status is not reported.status or events:
            reported.status = status
            pending = data.get("pending_quantity", reported.intent.quantity - reported.filled)
            events.append(OrderUpdate(
                ts_ns=now, intent_id=reported.intent.intent_id, order_id=order_id, status=status,
                filled_quantity=reported.filled, pending_quantity=pending if isinstance(pending, int) else 0,
                average_price=average, reason=str(data.get("status_message") or "")))
        if status.is_terminal:
            self._terminal.add(order_id)
        return events
