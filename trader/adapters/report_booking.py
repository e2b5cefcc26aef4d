"""Booking a venue's order reports through the shared ``OrderTracker``, with the trust rule both live brokers keep:
a report for an order id the tracker has not seen, under one of our tags, is held until the broker's own record
confirms it, and then that record (not the report) is booked. ``KiteBroker`` and ``FyersBroker`` inherit this and
supply ``_lookup`` (Kite: the order's history; Fyers: its order-book row).

The confirmation runs in a task, so the socket that delivered the report is never held up; reports arriving for the
same order meanwhile are held and booked after it (repeats and stale ones add nothing). An order id the broker does
not confirm is logged ``postback_unconfirmed`` and nothing is booked: a forged update never becomes a position.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trader.adapters.order_tracker import OrderTracker, contradiction
from trader.adapters.ports import BrokerUnavailable
from trader.events import Tick
from trader.logging import get_logger

log = get_logger("trader.report_booking")


def _drop(_event: object) -> None:
    pass


class ReportBooking:
    tracker: OrderTracker | None

    def _init_booking(self, tracker: OrderTracker | None) -> None:
        self.tracker = tracker
        self._publish: Callable[[object], None] = _drop
        self._confirming: dict[str, list[Mapping[str, Any]]] = {}  # order id → reports held until confirmed
        self._confirmations: set[asyncio.Task[None]] = set()
        self.unconfirmed = 0  # reports dropped because the broker did not confirm their order
        self.confirm_rounds = 3  # asks of the broker (each with the client's own GET retries)
        self.confirm_pause_s = 1.0  # between rounds, doubling

    @property
    def wants_ticks(self) -> bool:
        return False  # a venue's broker: the exchange fills, not our ticks

    def on_tick(self, tick: Tick) -> None:
        pass

    def attach(self, publish: Callable[[object], None]) -> None:
        self._publish = publish

    async def _lookup(self, order_id: str, tag: str) -> tuple[Mapping[str, Any] | None, str]:
        """The broker's record of ``order_id`` as a normalised report, and why it does not confirm ``tag``'s order
        ("" when it does). ``(None, problem)``: the broker answered that it has no such order. Raises when the broker
        could not be asked (the next round asks again)."""
        raise NotImplementedError

    def _on_report(self, report: Mapping[str, Any]) -> None:
        """A normalised report from the venue's socket: publish what it adds, or hold it for confirmation."""
        if self.tracker is None:
            return
        order_id = str(report.get("order_id") or "")
        held = self._confirming.get(order_id)
        if held is not None:
            held.append(report)
        elif self.tracker.needs_confirmation(report):
            self._confirming[order_id] = [report]
            task = asyncio.create_task(self._confirm(order_id, str(report.get("tag") or "")),
                                       name=f"confirm:{order_id}")
            self._confirmations.add(task)
            task.add_done_callback(self._confirmations.discard)
        else:
            self._book(report)

    def _book(self, report: Mapping[str, Any], *, confirmed: bool = False) -> None:
        if self.tracker is None:
            return
        for event in self.tracker.on_postback(report, confirmed=confirmed):
            self._publish(event)

    def _refuse_contradicting_rows(self, tag: str, reports: Sequence[Mapping[str, Any]]) -> None:
        """Raise ``BrokerUnavailable`` if one of the broker's order-book rows under our ``tag`` (as normalised
        reports) is for another contract or side than the order we placed under it.

        Why raise, not answer: ``find_order_by_tag`` tells the execution actor whether its order exists. The row
        cannot be returned (its fills would be booked as ours, for a contract we never traded), and ``None`` would
        say "absent", so the actor would send the order again. An error is "the broker could not say": the intent
        stays unresolved, nothing is re-sent, the actor asks again at each reconcile, and the error log line calls
        for a person, because a row under our tag for another contract means something is badly wrong."""
        intent = self.tracker.intent_for(tag) if self.tracker is not None else None
        if intent is None:
            return
        for report in reports:
            problem = contradiction(report, intent)
            if problem:
                log.error("order_book_row_contradicts_our_order", tag=tag, order_id=report.get("order_id"),
                          problem=problem, status=report.get("status"), filled=report.get("filled_quantity"),
                          effect="not adopted and not re-sent: the intent stays unresolved")
                raise BrokerUnavailable(f"the broker's order {report.get('order_id')} under our tag {tag} is not "
                                        f"our order ({problem})")

    @property
    def pending_confirmations(self) -> int:
        return len(self._confirming)

    async def _confirm(self, order_id: str, tag: str) -> None:
        record: Mapping[str, Any] | None = None
        problem = ""
        for round_ in range(self.confirm_rounds):
            if round_:
                await asyncio.sleep(self.confirm_pause_s * 2 ** (round_ - 1))
                if self.tracker is not None and self.tracker.is_known(order_id):
                    break  # our own reply named it meanwhile: the held reports are booked below
            try:
                record, problem = await self._lookup(order_id, tag)
            except Exception as exc:
                problem = f"the broker could not be asked ({exc})"
                continue
            break
        held = self._confirming.pop(order_id, [])
        if not problem and record is not None:
            log.info("postback_confirmed", order_id=order_id, tag=tag, status=record.get("status"),
                     filled=record.get("filled_quantity"))
            self._book(record, confirmed=True)
        elif self.tracker is None or not self.tracker.is_known(order_id):
            self.unconfirmed += len(held)
            claim = held[0] if held else {}
            log.error("postback_unconfirmed", order_id=order_id, tag=tag, reason=problem, postbacks=len(held),
                      claimed_status=claim.get("status"), claimed_filled=claim.get("filled_quantity"),
                      claimed_average_price=claim.get("average_price"),
                      effect="nothing booked: an update for an order the broker does not confirm is never trusted")
            return
        for report in held:  # a known order now: repeats and stale reports add nothing
            self._book(report)

    async def close(self) -> None:
        """Stop confirmations still under way (at shutdown, after the last resync read the whole order book)."""
        tasks = list(self._confirmations)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
