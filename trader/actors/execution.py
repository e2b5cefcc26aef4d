"""Execution actor: sends approved orders to the broker exactly once, within the order-rate limit.

Exactly once: the broker ``tag`` is derived from the intent id. A rejection is final; a 429 was not accepted and is
sent again after a pause; a timeout or 5xx is ambiguous, so the tag is looked up in the broker's order book first
and the order is sent again only if it is not there. If even the look-up keeps failing, the order is never re-sent:
it is parked as unresolved and looked up again later.

No request vanishes: each ends as one order on the broker's book under its tag, or with one terminal update that
says why it was never sent; at shutdown too (see ``close``). The one exception is a broker that cannot answer for an
order at shutdown: that request is logged as ``order_state_unknown_at_shutdown`` with its tag, never called rejected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from trader.actors.base import Actor
from trader.actors.cancels import FlattenCancels, cancel_for_operator, cancel_resting
from trader.actors.risk import FLATTEN_SOURCE
from trader.adapters.ports import Broker, BrokerOrder, BrokerUnavailable, OrderRejected, RateLimited
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, Clock
from trader.events import (
    JOURNAL_PROBLEM,
    Command,
    CommandKind,
    CommandResult,
    FeedStatus,
    Fill,
    Heartbeat,
    IntentPurpose,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Tick,
    VenueStatus,
)
from trader.faults import crash_point
from trader.logging import get_logger
from trader.money import to_rupees
from trader.ratelimit import RateLimiter
from trader.store.journal import JournalWriteError
from trader.store.orders import OrderJournal

log = get_logger("trader.execution")



@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff_s: float = 0.5
    reconcile_every_s: float = 5.0
    reprice_after_s: float = 30.0  # a MARKET order still resting after this is cancelled (see _cancel_stale)
    settle_s: float = 1.0  # wait after an ambiguous failure before looking the tag up


@dataclass(slots=True)
class SlippageStats:
    fills: int = 0
    units: int = 0
    paise_total: int = 0  # Σ slippage per unit × units
    bps_weighted: float = 0.0  # Σ bps × units

    def add(self, fill: Fill) -> None:
        self.fills += 1
        self.units += fill.quantity
        self.paise_total += fill.slippage_paise * fill.quantity
        self.bps_weighted += fill.slippage_bps * fill.quantity

    @property
    def average_bps(self) -> float:
        return self.bps_weighted / self.units if self.units else 0.0


class ExecutionActor(Actor):
    name = "execution"

    def __init__(self, bus: EventBus, broker: Broker, clock: Clock, *, max_orders_per_second: int = 8,
                 retry: RetryPolicy | None = None, conflate_ticks: bool = True,
                 journal: OrderJournal | None = None) -> None:
        self.broker = broker
        self.journal = journal
        self.journal_failed = False
        super().__init__(bus, conflate_ticks=conflate_ticks)
        self.clock = clock
        self.limiter = RateLimiter(max_orders_per_second, clock=clock)
        self.retry = retry or RetryPolicy()
        self._seen_tags: set[str] = set()
        self._open: dict[str, str] = {}  # order id → intent id, until terminal
        self._flatten = FlattenCancels()  # our working intents, and those a flatten cancels once placed
        self._unresolved: dict[str, OrderRequest] = {}
        self._never_resend: set[str] = set()  # parked at a restart: a stale intent is never sent late
        self._cancel_at: dict[str, int] = {}  # order id → when a still-resting MARKET order gets cancelled
        self._placements: set[asyncio.Task[None]] = set()
        self._maybe_at_broker: set[str] = set()  # tags whose place call is under way or ended ambiguously
        self._next_reconcile_ns = 0
        self.orders_placed = 0
        self.orders_rejected = 0
        self.retries = 0
        self.recovered_by_tag = 0
        self._resync_pending = False
        self._closing = False
        self.slippage = SlippageStats()
        broker.attach(bus.publish)

    def subscriptions(self) -> Iterable[type]:
        # Heartbeats drive the timers (reconcile, cancel of resting orders) even when no tick reaches this actor;
        # FeedStatus says when the order channel reconnected, after which missed updates are fetched; Command: CANCEL,
        # and the risk gate's FLATTEN (our working orders on what it flattens are cancelled).
        kinds: list[type] = [OrderRequest, OrderUpdate, Fill, Heartbeat, FeedStatus, Command]
        if self.broker.wants_ticks:
            kinds.append(Tick)
        return kinds

    @property
    def open_orders(self) -> int:
        return len(self._open)

    @property
    def unresolved(self) -> int:
        return len(self._unresolved)

    async def handle(self, event: Any) -> None:
        kind = type(event)
        if kind is Tick:
            self.broker.on_tick(event)
        elif kind is FeedStatus:
            if event.status == "connected":
                await self._resync("order channel (re)connected")
        elif kind is Command:
            if event.kind is CommandKind.CANCEL:
                await self._on_cancel(event)
            elif event.kind is CommandKind.FLATTEN and event.source == FLATTEN_SOURCE:
                # The risk gate's: our working orders on what it flattens are cancelled; it sends the exits.
                retry = await self._flatten.cancel(event.target, self.broker, self.limiter, self._open)
                for order_id in retry:
                    self._cancel_at[order_id] = self.clock.now_ns() + int(self.retry.backoff_s * NS_PER_SECOND)
        else:
            self._record(event)
        if self._resync_pending:
            self._resync_pending = False
            await self._resync("an order was recovered by its tag")
        if self._unresolved and self.clock.now_ns() >= self._next_reconcile_ns:
            await self._reconcile()
        if self._cancel_at and self.clock.now_ns() >= min(self._cancel_at.values()):
            await self._cancel_stale()

    def adopt_open(self, request: OrderRequest, order_id: str) -> None:
        """Before start: keep managing an order placed before a restart: its updates, and its re-price timer,
        counted from when it was sent, not from the restart."""
        self._seen_tags.add(request.tag)
        self._open.setdefault(order_id, request.intent.intent_id)
        self._flatten.track(request.intent)
        if request.intent.order_type is OrderType.MARKET:
            self._cancel_at[order_id] = request.ts_ns + int(self.retry.reprice_after_s * NS_PER_SECOND)

    def park_unresolved(self, request: OrderRequest) -> None:
        """Before start: an intent from before a restart the broker could not be asked about. It is looked up by
        its tag at every reconcile; found, it is adopted; confirmed absent, it ends as not sent, never re-sent (it
        is stale by now)."""
        self._seen_tags.add(request.tag)
        self._unresolved[request.tag] = request
        self._never_resend.add(request.tag)
        self._flatten.track(request.intent)  # a flatten cancels it once found at the broker

    def _write(self, what: str, action: Callable[[OrderJournal], object]) -> None:
        """One journal write; a failure halts entries at once (never trade with a journal that cannot be written)."""
        if self.journal is None:
            return
        try:
            action(self.journal)
        except JournalWriteError as exc:
            if not self.journal_failed:
                self.journal_failed = True
                log.error("journal_write_failed", what=what, journal=self.journal.path, error=str(exc),
                          fix="free disk space or make the data dir writable, then restart the daemon")
                # Entries stop (the risk gate refuses them while the problem lasts); exits and stops still go.
                self.bus.publish(VenueStatus(ts_ns=self.clock.now_ns(), ok=False, problem=JOURNAL_PROBLEM,
                                             detail=str(exc)))

    def _record(self, event: object) -> None:
        """What needs no broker call: a request starts its placement; updates and fills are tracked and logged."""
        if type(event) is OrderRequest:
            self._flatten.track(event.intent)
            self._start_placement(event)
        elif type(event) is OrderUpdate:
            self._write("order_update", lambda j: j.record_update(event))
            if event.status.is_terminal:
                self._flatten.ended(event.intent_id)
            if event.order_id and self._unresolved:
                self._resolved_by_update(event)
            if event.order_id:
                if event.status.is_terminal:
                    self._open.pop(event.order_id, None)
                    self._cancel_at.pop(event.order_id, None)
                else:
                    self._open[event.order_id] = event.intent_id
                    self._cancel_if_flattened(event.order_id, event.intent_id)
            log.info("order_update", intent_id=event.intent_id, order_id=event.order_id,
                     status=event.status.value, filled=event.filled_quantity, pending=event.pending_quantity,
                     average_price_inr=to_rupees(event.average_price), reason=event.reason, event_ts_ns=event.ts_ns)
        elif type(event) is Fill:
            crash_point("fill_received")
            self._write("fill", lambda j: j.record_fill(event))
            self.slippage.add(event)
            log.info("fill", fill_id=event.fill_id, intent_id=event.intent_id, order_id=event.order_id,
                     tradingsymbol=event.contract.tradingsymbol, side=event.side.value, quantity=event.quantity,
                     price_inr=to_rupees(event.price), expected_price_inr=to_rupees(event.expected_price),
                     slippage_inr=to_rupees(event.slippage_paise), slippage_bps=round(event.slippage_bps, 2),
                     charges_inr=to_rupees(event.charges), event_ts_ns=event.ts_ns)

    async def _cancel_stale(self) -> None:
        """Cancel MARKET orders that Kite's market protection left resting: the strategy re-prices them."""
        await cancel_resting(self.broker, self._cancel_at, self._open, self.clock.now_ns(),
                             retry_ns=int(self.retry.backoff_s * NS_PER_SECOND), after_s=self.retry.reprice_after_s)

    async def _on_cancel(self, command: Command) -> None:
        """The operator's CANCEL (target: a broker order id, or our intent id of an open order); one
        ``CommandResult`` when it carries a ``command_id``."""
        placing = {task.get_name().removeprefix("place:") for task in self._placements}
        ok, detail = await cancel_for_operator(self.broker, self.limiter, command.target, self._open,
                                               placing=placing, unknown=self._unresolved)
        if command.command_id:
            self.bus.publish(CommandResult(ts_ns=self.clock.now_ns(), command_id=command.command_id,
                                           kind=command.kind, ok=ok, detail=detail))

    def _start_placement(self, request: OrderRequest) -> None:
        """Place each order in its own task, so one order's retries never hold up another (an exit above all).

        The inbox is held until the task ends: the actor counts as busy, so an unpaced run stays deterministic
        and a graceful stop waits for in-flight orders.
        """
        tag = request.tag
        if tag in self._seen_tags:
            log.warning("duplicate_request_ignored", tag=tag, intent_id=request.intent.intent_id)
            return
        self._seen_tags.add(tag)
        if self._closing:
            self._reject(request, "not sent: the daemon is stopping")
            return
        if self.journal is not None:
            # Write-ahead: the intent is on disk before its order can exist, so a restart always knows the tag.
            self._write("intent", lambda j: j.record_intent(request, self.clock.now_ns()))
            if self.journal_failed:
                if request.intent.purpose is IntentPurpose.ENTRY:
                    self._reject(request, f"not sent: the journal {self.journal.path} cannot be written")
                    return
                # An exit still goes: it only takes risk off, and a restart finds it by its tag at the broker.
                log.error("exit_sent_without_journal", intent_id=request.intent.intent_id, tag=tag,
                          journal=self.journal.path)
            crash_point("intent_written")
        self.inbox.hold()
        task = asyncio.create_task(self._place_guarded(request), name=f"place:{tag}")
        self._placements.add(task)
        task.add_done_callback(self._placements.discard)

    async def _place_guarded(self, request: OrderRequest) -> None:
        try:
            await self._place(request)
        except asyncio.CancelledError:
            if request.tag in self._maybe_at_broker:
                self._park(request, "placement cancelled during shutdown")  # looked up by its tag in close()
            else:  # still waiting for a rate-limit slot or a backoff after a clear refusal: certainly not sent
                self._reject(request, "not sent: the daemon stopped before it was sent")
            raise
        except Exception:
            log.exception("order_placement_failed", tag=request.tag)
            self._park(request, "placement failed unexpectedly")  # the order may exist: never forget it
        finally:
            self._maybe_at_broker.discard(request.tag)
            self.inbox.task_done()

    @property
    def placements(self) -> set[asyncio.Task[None]]:
        return set(self._placements)

    async def settle(self) -> None:
        """Wait until every placement under way has finished."""
        while self._placements:
            await asyncio.gather(*self._placements, return_exceptions=True)

    async def close(self, *, budget_s: float = 2.0) -> None:
        """At shutdown, after the drain: every request this actor was handed gets its end, as far as the broker tells.

        Placements still under way are stopped and, like orders parked earlier, looked up by their tag once more
        (after the settle pause, as for any ambiguous failure): one found is adopted, it is on the book; one the
        broker confirms absent gets one terminal REJECTED update and is never sent again. Requests still queued,
        or arriving later, were never sent: each gets one terminal update too. A look-up that fails, or does not
        answer within ``budget_s`` (wall time), leaves its request unknown: it may exist at the broker, so it is
        logged as ``order_state_unknown_at_shutdown`` with its tag for the operator, never called rejected.
        """
        self._closing = True
        stopped = list(self._placements)
        for task in stopped:
            task.cancel()
        await asyncio.gather(*stopped, return_exceptions=True)  # each one parked itself
        if self._unresolved:
            try:
                async with asyncio.timeout(budget_s):
                    await self._resolve_parked(settle_first=bool(stopped))
            except TimeoutError:
                log.error("shutdown_lookup_timeout", budget_s=budget_s, unresolved=len(self._unresolved))
        self._refuse_queued()  # last, and without an await after it: nothing can slip in behind it
        for tag, request in self._unresolved.items():
            log.error("order_state_unknown_at_shutdown", intent_id=request.intent.intent_id, tag=tag,
                      hint="check the broker's order book for this tag")

    async def _resolve_parked(self, *, settle_first: bool) -> None:
        if settle_first:
            await self._pause(self.retry.settle_s)  # a stopped placement may have been accepted a moment ago
        for tag, request in list(self._unresolved.items()):
            found = await self._lookup(tag)
            if found is None or self._unresolved.pop(tag, None) is None:
                continue  # still unknown, or the actor's own reconcile resolved it meanwhile
            if isinstance(found, BrokerOrder):
                self._adopt(request, found, 0)
            else:
                self._reject(request, "not sent: the daemon stopped before the broker had it")
        if self._resync_pending:
            self._resync_pending = False
            await self._resync("orders adopted at shutdown")

    def _refuse_queued(self) -> None:
        """Take what is still in the inbox: requests there were never sent, and are refused with a reason."""
        while (event := self.inbox.get_nowait()) is not None:
            self._record(event)
            self.inbox.task_done()

    async def _place(self, request: OrderRequest) -> None:
        tag = request.tag
        last_error = ""
        for attempt in range(1, self.retry.max_attempts + 1):
            await self.limiter.acquire(urgent=request.intent.purpose is not IntentPurpose.ENTRY)
            self._maybe_at_broker.add(tag)  # from here until a clear answer, the broker may hold it
            try:
                order_id = await self.broker.place_order(request)
            except OrderRejected as exc:
                self._reject(request, f"broker: {exc}")
                return
            except RateLimited as exc:
                self._maybe_at_broker.discard(tag)  # a 429 is a refusal before acceptance
                last_error = f"rate limited: {exc}"
            except Exception as exc:  # anything else is as ambiguous as a timeout
                last_error = (f"broker unavailable: {exc}" if isinstance(exc, BrokerUnavailable)
                              else f"unexpected error: {exc!r}")
                if not isinstance(exc, BrokerUnavailable):
                    log.exception("order_place_unexpected_error", tag=tag)
                # An order accepted a moment ago may not be in the order book yet: let it settle before looking,
                # or "absent" could be wrong and the re-send a duplicate.
                await self._pause(self.retry.settle_s)
                found = await self._lookup(tag)
                if found is None:
                    self._park(request, last_error)  # cannot tell whether it exists: never re-send blindly
                    return
                if isinstance(found, BrokerOrder):
                    self._adopt(request, found, attempt)
                    return
            else:
                self._accepted(request, order_id, attempt)
                return
            self.retries += 1
            log.warning("order_retry", tag=tag, attempt=attempt, error=last_error)
            await self._pause(self.retry.backoff_s * attempt)
        self._reject(request, f"not placed after {self.retry.max_attempts} attempts ({last_error})")

    async def _lookup(self, tag: str) -> BrokerOrder | bool | None:
        """The order with this tag; False if the broker says there is none; None if it cannot say."""
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                found = await self.broker.find_order_by_tag(tag)
            except Exception as exc:  # the look-up could not say; never assume absence
                log.warning("order_lookup_failed", tag=tag, attempt=attempt, error=repr(exc))
                await self._pause(self.retry.backoff_s * attempt)
                continue
            return found if found is not None else False
        return None

    async def _reconcile(self) -> None:
        self._next_reconcile_ns = self.clock.now_ns() + int(self.retry.reconcile_every_s * NS_PER_SECOND)
        for tag, request in list(self._unresolved.items()):
            try:
                found = await self.broker.find_order_by_tag(tag)
            except Exception:  # still unknown; try again at the next reconcile
                continue
            if self._unresolved.pop(tag, None) is None:
                continue  # resolved meanwhile (at shutdown, ``close`` looks parked orders up too)
            if found is not None:
                self._adopt(request, found, 0)
            elif tag in self._never_resend:
                self._reject(request, "not sent: the daemon stopped before the broker had it")
            elif self._flatten.caught(request.intent.intent_id):
                self._reject(request, "not sent: a flatten cancelled it before the broker had it")
            else:
                # Confirmed absent: now it is safe to send it once more (or, once stopping, to say it was not sent).
                self._seen_tags.discard(tag)
                self._start_placement(request)

    def _track(self, request: OrderRequest, order_id: str) -> None:
        self._open.setdefault(order_id, request.intent.intent_id)
        if request.intent.order_type is OrderType.MARKET:
            self._cancel_at[order_id] = self.clock.now_ns() + int(self.retry.reprice_after_s * NS_PER_SECOND)
        self._cancel_if_flattened(order_id, request.intent.intent_id)

    def _cancel_if_flattened(self, order_id: str, intent_id: str) -> None:
        if self._flatten.placed(intent_id):
            self._cancel_at[order_id] = self.clock.now_ns()  # cancelled at the next event this actor handles

    def _resolved_by_update(self, update: OrderUpdate) -> None:
        """A parked request whose order reports in: it is on the broker's book, no look-up needed any more."""
        tag = next((t for t, r in self._unresolved.items() if r.intent.intent_id == update.intent_id), None)
        if tag is not None:
            del self._unresolved[tag]
            self.orders_placed += 1
            self._write("order_sent", lambda j: j.record_sent(tag, update.order_id, self.clock.now_ns()))
            log.warning("order_recovered_by_update", intent_id=update.intent_id, tag=tag, order_id=update.order_id,
                        status=update.status.value)

    def _accepted(self, request: OrderRequest, order_id: str, attempt: int) -> None:
        crash_point("order_sent")
        self._write("order_sent", lambda j: j.record_sent(request.tag, order_id, self.clock.now_ns()))
        self.orders_placed += 1
        self._track(request, order_id)
        log.info("order_placed", intent_id=request.intent.intent_id, tag=request.tag, order_id=order_id,
                 attempt=attempt, tradingsymbol=request.intent.contract.tradingsymbol,
                 side=request.intent.side.value, quantity=request.intent.quantity,
                 order_type=request.intent.order_type.value)

    async def _resync(self, why: str) -> None:
        try:
            await self.broker.resync()
        except Exception as exc:  # the next reconnect or adoption tries again
            log.warning("broker_resync_failed", why=why, error=repr(exc))

    def _adopt(self, request: OrderRequest, found: BrokerOrder, attempt: int) -> None:
        self._write("order_sent", lambda j: j.record_sent(request.tag, found.order_id, self.clock.now_ns()))
        self.orders_placed += 1
        self.recovered_by_tag += 1
        self._resync_pending = True  # its progress so far was never reported to us
        if not found.status.is_terminal:
            self._track(request, found.order_id)
        log.warning("order_recovered_by_tag", intent_id=request.intent.intent_id, tag=request.tag,
                    order_id=found.order_id, status=found.status.value, attempt=attempt)

    def _park(self, request: OrderRequest, error: str) -> None:
        self._unresolved[request.tag] = request
        self._next_reconcile_ns = self.clock.now_ns() + int(self.retry.reconcile_every_s * NS_PER_SECOND)
        log.error("order_state_unknown", intent_id=request.intent.intent_id, tag=request.tag, error=error)

    def _reject(self, request: OrderRequest, reason: str) -> None:
        self.orders_rejected += 1
        log.warning("order_rejected", intent_id=request.intent.intent_id, tag=request.tag, reason=reason)
        self.bus.publish(OrderUpdate(ts_ns=self.clock.now_ns(), intent_id=request.intent.intent_id, order_id="",
                                     status=OrderStatus.REJECTED, reason=reason))

    async def _pause(self, seconds: float) -> None:
        await self.clock.sleep_until(self.clock.now_ns() + int(seconds * NS_PER_SECOND))
