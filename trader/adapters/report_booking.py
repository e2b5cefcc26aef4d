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
from collections.abc import Callable, Mapping
from typing import Any

from trader.adapters.order_tracker import OrderTracker
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
