"""The start-up gate's I/O: read the broker's book (with retries), run the pure ``reconcile``, journal what it
decided, and restore the actors' books from it. ``App`` runs it before any actor starts, so no strategy or
feed-driven intent can reach the broker before it has passed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from trader.actors.execution import ExecutionActor
from trader.actors.portfolio import PortfolioActor
from trader.actors.risk import RiskGateActor
from trader.adapters.ports import Broker, BrokerBook
from trader.book import PositionBook
from trader.clock import NS_PER_SECOND
from trader.events import Fill, IntentPurpose, OrderRequest, Side, TradingState
from trader.logging import get_logger
from trader.market.calendar import ist_date
from trader.market.charges import option_charges
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract
from trader.reconcile import OUTSIDE_FILL_PREFIXES, Reconciliation, outside_fill_id, reconcile
from trader.risk.persistence import rebuild_book
from trader.store.orders import JournaledIntent, OrderJournal
from trader.strategies.base import RestoredPosition

log = get_logger("trader.gate")

HALT_PREFIX = "reconciliation"
UNREADABLE = "the broker's order, trade and position books could not be read"
# Only this halt clears by itself, at a later start whose books agree: the cause was the broker's silence. A
# disagreement, or any other halt (an operator's, the kill switch's), waits for an operator.
_SELF_CLEARING = f"{HALT_PREFIX}: {UNREADABLE}"
RATE_WINDOW_NS = NS_PER_SECOND  # Kite's order-rate limit counts per second


@dataclass(slots=True)
class GateResult:
    halt_reason: str  # "" when the books agree
    fills: list[Fill]  # every fill the books must hold: journaled (with the missed ones) and outside ones
    positions: list[RestoredPosition]  # our open positions, with their owner strategy ("" = owner unknown)
    adopted: list[tuple[OrderRequest, str, int, int]]  # (request, order id, units filled, value filled)
    outside_tokens: set[int] = field(default_factory=set)
    recent_sends: list[int] = field(default_factory=list)  # send times within the rate window before the start
    # Open intents not reconciled because the book was unreadable: (request, order id or "", units, value filled).
    pending: list[tuple[OrderRequest, str, int, int]] = field(default_factory=list)
    reconciliation: Reconciliation | None = None
    elapsed_ms: int = 0


Sleep = Callable[[float], Awaitable[None]]


async def read_book(broker: Broker, *, attempts: int, backoff_s: float, sleep: Sleep) -> BrokerBook | str:
    """The broker's book, or why it could not be read after ``attempts`` tries with growing pauses."""
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            return await broker.book()
        except Exception as exc:  # any failure: try again, then say what was unreachable
            error = f"{type(exc).__name__}: {exc}"
            log.warning("broker_book_read_failed", attempt=attempt, attempts=attempts, error=error)
            if attempt < attempts:
                await sleep(backoff_s * attempt)
    return f"{UNREADABLE} after {attempts} tries ({error})"


async def run_gate(broker: Broker, orders: OrderJournal, instruments: InstrumentMaster, now_ns: int, *,
                   intraday: bool = True, attempts: int = 6, backoff_s: float = 0.5, settle_s: float = 1.0,
                   sleep: Sleep = asyncio.sleep) -> GateResult:
    """``intraday``: the broker squares every position off at the end of its day (Kite MIS; not paper)."""
    started = time.monotonic()
    open_intents = orders.open_intents()
    journaled = orders.fills()
    decided: Reconciliation | None = None
    book: BrokerBook | str = ""
    for look in range(2):
        book = await read_book(broker, attempts=attempts, backoff_s=backoff_s, sleep=sleep)
        if isinstance(book, str):
            break
        if look == 0 and _any_unsent(open_intents, book):
            # An order accepted a moment before the kill may not be in the book yet: look once more after a
            # pause, or "absent" could be wrong.
            await sleep(settle_s)
            continue
        decided = _decide(orders, journaled, book, now_ns, intraday)
        if not decided.problems or look == 1:
            break
        # The three books are read one after another: a fill between two reads looks like a disagreement.
        log.warning("reconciliation_recheck", problems=decided.problems)
        await sleep(settle_s)
    if isinstance(book, str) or decided is None:
        reason = book if isinstance(book, str) else UNREADABLE
        result = GateResult(halt_reason=f"{HALT_PREFIX}: {reason}", fills=journaled,
                            positions=_our_positions(journaled, orders), adopted=[],
                            pending=_pending(open_intents, orders))
        result.elapsed_ms = int((time.monotonic() - started) * 1000)
        return result
    for update in decided.ended:
        orders.record_update(update)
    for fill in [*decided.missed_fills, *_closing_fills(journaled, decided, now_ns),
                 *_outside_fills(decided, book, instruments, now_ns)]:
        orders.record_fill(fill)  # once: the ids are the same at every start
    filled = orders.filled_by_order()
    adopted = [(request, order.order_id, *filled.get(order.order_id, (0, 0))) for request, order in decided.adopted]
    fills = orders.fills()
    held = {p.instrument_token: p.quantity for p in book.positions}
    result = GateResult(
        halt_reason=f"{HALT_PREFIX}: {'; '.join(decided.problems)}" if decided.problems else "",
        fills=fills, positions=_clipped(_our_positions(fills, orders), held), adopted=adopted,
        outside_tokens=set(decided.outside_quantity), reconciliation=decided)
    result.recent_sends = orders.sent_since(now_ns - RATE_WINDOW_NS)
    result.elapsed_ms = int((time.monotonic() - started) * 1000)
    return result


def _pending(open_intents: list[JournaledIntent], orders: OrderJournal) -> list[tuple[OrderRequest, str, int, int]]:
    filled = orders.filled_by_order()
    return [(j.request, j.order_id, *filled.get(j.order_id, (0, 0))) for j in open_intents]


def _decide(orders: OrderJournal, journaled: list[Fill], book: BrokerBook, now_ns: int,
            intraday: bool) -> Reconciliation:
    known = orders.intents_by_tag(sorted({o.tag for o in book.orders if o.tag}))
    positions_all, positions_today = _positions(journaled, now_ns)
    return reconcile(open_intents=orders.open_intents(), known=known, journal_filled=orders.filled_by_order(),
                     journaled_ids={f.fill_id for f in journaled}, journal_positions=positions_all,
                     journal_positions_today=positions_today,
                     expiries={f.contract.instrument_token: f.contract.expiry for f in journaled},
                     intraday=intraday, book=book, now_ns=now_ns)


def _clipped(positions: list[RestoredPosition], held: dict[int, int]) -> list[RestoredPosition]:
    """A strategy gets back no more than the broker holds: a position reduced by hand is managed as it is now."""
    kept = []
    for position in positions:
        broker = held.get(position.contract.instrument_token, 0)
        if broker * position.quantity <= 0:
            log.warning("restored_position_dropped", tradingsymbol=position.contract.tradingsymbol,
                        journal_quantity=position.quantity, broker_quantity=broker,
                        why="the broker no longer holds it in that direction (closed outside the daemon)")
            continue
        if abs(broker) < abs(position.quantity):
            log.warning("restored_position_reduced", tradingsymbol=position.contract.tradingsymbol,
                        journal_quantity=position.quantity, broker_quantity=broker,
                        why="reduced outside the daemon: the strategy manages what the broker holds")
            kept.append(dataclasses.replace(position, quantity=broker))
        else:
            kept.append(position)
    return kept


def _any_unsent(open_intents: list[JournaledIntent], book: BrokerBook) -> bool:
    tags = {o.tag for o in book.orders}
    return any(j.request.tag not in tags for j in open_intents)


def _positions(fills: list[Fill], now_ns: int) -> tuple[dict[int, int], dict[int, int]]:
    today = ist_date(now_ns)
    every: dict[int, int] = {}
    today_only: dict[int, int] = {}
    for fill in fills:
        token = fill.contract.instrument_token
        signed = fill.side.sign * fill.quantity
        every[token] = every.get(token, 0) + signed
        if ist_date(fill.ts_ns) >= today:
            today_only[token] = today_only.get(token, 0) + signed
    return every, today_only


def _our_positions(fills: list[Fill], orders: OrderJournal) -> list[RestoredPosition]:
    """Open positions our fills imply, each with the strategy whose entry opened it ("" when not known). Fills of
    hand-placed orders are left out: those positions are counted, never managed."""
    owners = orders.strategy_of_intents()
    book = PositionBook()
    owner_of: dict[int, str] = {}
    opened: dict[int, int] = {}
    for fill in fills:
        if fill.fill_id.startswith(OUTSIDE_FILL_PREFIXES):
            continue
        token = fill.contract.instrument_token
        before = book.quantity(token)
        book.apply(fill.contract, fill.side, fill.quantity, fill.price)
        if before == 0 or (before > 0) != (book.quantity(token) > 0):
            owner_of[token] = owners.get(fill.intent_id, "") if fill.purpose is IntentPurpose.ENTRY else ""
            opened[token] = fill.ts_ns
    return [RestoredPosition(contract=p.contract, quantity=p.quantity, average_price=p.average_price,
                             strategy_id=owner_of.get(token, ""), opened_ns=opened.get(token, 0))
            for token, p in book.positions.items() if p.quantity]


def _closing_fills(journaled: list[Fill], decided: Reconciliation, now_ns: int) -> list[Fill]:
    """Positions the broker closed before today close in the books too: an expired one at 0 (its settlement price
    is not in today's books; 0 is the worst case for a long), one squared off at its average price (its closing
    price is not either, so that close's realized P&L is unknown). Journaled once: the ids are per day."""
    closed = decided.closed_before_today
    if not closed:
        return []
    book = PositionBook()
    for fill in journaled:
        if fill.contract.instrument_token in closed:
            book.apply(fill.contract, fill.side, fill.quantity, fill.price)
    today = ist_date(now_ns)
    fills = []
    for token, position in book.positions.items():
        if not position.quantity:
            continue
        price = 0 if position.contract.expiry < today else position.average_price
        fills.append(Fill(ts_ns=now_ns, fill_id=f"CLOSED{token}D{today.isoformat()}", intent_id="", order_id="",
                          contract=position.contract, side=Side.SELL if position.quantity > 0 else Side.BUY,
                          quantity=abs(position.quantity), price=price, expected_price=price, charges=0,
                          purpose=IntentPurpose.EXIT))
    return fills


def _outside_fills(decided: Reconciliation, book: BrokerBook, instruments: InstrumentMaster,
                   now_ns: int) -> list[Fill]:
    """Trades of orders we did not place, and positions held outside the daemon since before today, as fills for
    the books (counted in P&L and the risk limits). Journaled once: the ids come from the broker's trade ids."""
    fills = []
    for trade, orphan in decided.outside_trades:
        contract = _contract(instruments, trade.instrument_token, trade.tradingsymbol)
        if contract is None:
            continue
        charges = option_charges(exchange=contract.exchange, side=trade.side, quantity=trade.quantity,
                                 price=trade.price, trade_date=ist_date(now_ns))
        fills.append(Fill(ts_ns=now_ns, fill_id=outside_fill_id(trade, orphan=orphan), intent_id="",
                          order_id=trade.order_id, contract=contract, side=trade.side, quantity=trade.quantity,
                          price=trade.price, expected_price=trade.price, charges=charges.total))
    rows = {p.instrument_token: p for p in book.positions}
    day = ist_date(now_ns).isoformat()
    for token, quantity in decided.carried.items():
        row = rows[token]
        contract = _contract(instruments, token, row.tradingsymbol)
        if contract is None:
            continue
        fills.append(Fill(ts_ns=now_ns, fill_id=f"CARRY{token}D{day}", intent_id="", order_id="", contract=contract,
                          side=Side.BUY if quantity > 0 else Side.SELL, quantity=abs(quantity),
                          price=row.average_price, expected_price=row.average_price, charges=0))
    return fills


def _contract(instruments: InstrumentMaster, token: int, tradingsymbol: str) -> OptionContract | None:
    contract = instruments.by_token(token)
    if isinstance(contract, OptionContract):
        return contract
    log.error("outside_position_unknown_instrument", instrument_token=token, tradingsymbol=tradingsymbol,
              why="not an option in today's instrument dump for the configured underlyings: not counted in the books")
    return None


def restore_from_gate(result: GateResult, portfolio: PortfolioActor, risk: RiskGateActor, execution: ExecutionActor, *,
                      broker: Broker, now_ns: int, replay_windows: bool) -> None:
    """Wiring, before any actor runs: the books, the adopted orders and the trading state from the gate's result."""
    manager = risk.manager
    rebuild_book(manager, result.fills, replay=replay_windows)
    portfolio.restore(result.fills, day_start=manager.day_start)  # the day's P&L goes on from the saved day start
    risk.seen_fills(result.fills)
    for sent_ns in result.recent_sends:  # orders sent just before a crash still count against the rate limit
        execution.limiter.record(sent_ns)
        manager.note_order_sent(sent_ns)
    for request, order_id, filled, value in result.adopted:
        execution.adopt_open(request, order_id)
        broker.adopt(request, order_id, filled, value)
        manager.note_approved(request.intent, filled)
        log.warning("order_adopted", intent_id=request.intent.intent_id, tag=request.tag, order_id=order_id,
                    tradingsymbol=request.intent.contract.tradingsymbol, filled=filled,
                    quantity=request.intent.quantity, why="placed before the restart and still working at the broker")
    _report(result)
    positions = {p.contract.tradingsymbol: p.quantity for p in portfolio.book.open_positions()}
    for request, order_id, filled, value in result.pending:
        # The broker could not say: its reports are tied to the intent, and execution looks it up by tag once the
        # broker answers; it is never re-sent.
        execution.park_unresolved(request)
        broker.adopt(request, order_id, filled, value)
    if result.halt_reason:
        if manager.state is TradingState.HALTED:
            log.error("reconciliation_failed_already_halted", reason=result.halt_reason,
                      halted_because=manager.state_reason, positions=positions)
        else:
            manager.halt(result.halt_reason, now_ns)
            log.error("reconciliation_failed_halted", reason=result.halt_reason, positions=positions,
                      how_to_clear="check the broker's order book and positions against the reason; the daemon "
                                   "places nothing until an operator resumes it (a halt because the broker could "
                                   "not be read clears at a later start whose books agree)")
        return
    if manager.state is TradingState.HALTED and manager.state_reason.startswith(_SELF_CLEARING):
        manager.resume(now_ns)
        log.warning("reconciliation_halt_cleared", why="the broker answers again and its books agree with the journal")
    log.info("reconciliation_passed", positions=positions, adopted_orders=len(result.adopted),
             outside_positions=_outside_positions(result.fills), fills=len(result.fills), elapsed_ms=result.elapsed_ms)


def _outside_positions(fills: list[Fill]) -> int:
    """How many contracts hold units placed outside the daemon (counted in the books, never managed)."""
    held: dict[int, int] = {}
    for fill in fills:
        if fill.fill_id.startswith(OUTSIDE_FILL_PREFIXES):
            token = fill.contract.instrument_token
            held[token] = held.get(token, 0) + fill.side.sign * fill.quantity
    return sum(1 for quantity in held.values() if quantity)


def _report(result: GateResult) -> None:
    decided = result.reconciliation
    if decided is None:
        return
    orphans = set(decided.orphan_tags)
    for order in decided.outside_orders:
        if order.status.is_terminal and not order.filled_quantity:
            continue  # an outside order that never traded changes nothing
        if order.tag in orphans:
            log.warning("own_order_not_in_journal", order_id=order.order_id, tag=order.tag,
                        tradingsymbol=order.tradingsymbol, quantity=order.quantity, filled=order.filled_quantity,
                        status=order.status.value, policy="ours (our tag) but the journal does not know it (a lost "
                        "journal file?): its position goes to the adopted-position keeper")
            continue
        log.warning("outside_order", order_id=order.order_id, tag=order.tag, tradingsymbol=order.tradingsymbol,
                    side=order.side.value if order.side else "", quantity=order.quantity,
                    filled=order.filled_quantity, status=order.status.value,
                    policy="placed outside this daemon: counted in the books and risk limits, never closed by it")
    for token, quantity in decided.outside_quantity.items():
        if any(trade.instrument_token == token and orphan for trade, orphan in decided.outside_trades):
            continue  # ours with no known owner: the keeper's "position_adopted" line says it
        log.warning("outside_position_adopted", instrument_token=token, quantity=quantity,
                    policy="counted in the books and risk limits; the daemon never closes it on its own")
    for token, quantity in decided.closed_before_today.items():
        log.warning("position_closed_outside", instrument_token=token, journal_quantity=quantity,
                    why="the broker no longer holds it and reports no trade today: expired, or squared off (MIS)",
                    booked="closed in the books at 0 if expired, else at its average price: the price it closed "
                           "at is not in today's books")
    for token, quantity in decided.carried.items():
        log.warning("outside_position_carried", instrument_token=token, quantity=quantity,
                    policy="held since before today, placed outside the daemon: counted, never closed by it")
    for update in decided.ended:
        log.info("intent_ended_while_down", intent_id=update.intent_id, order_id=update.order_id,
                 status=update.status.value, reason=update.reason)
    for fill in decided.missed_fills:
        log.warning("missed_fill_booked", fill_id=fill.fill_id, intent_id=fill.intent_id, quantity=fill.quantity,
                    tradingsymbol=fill.contract.tradingsymbol)


STALE_APPROVAL_REASON = "the daemon restarted: a stale signal is never sent late"


def expire_stale_approvals(orders: OrderJournal, now_ns: int) -> list[str]:
    """At start: semi-live entries an earlier run left PENDING end EXPIRED (their strategies' restore already ends
    the intents, which are not open at the broker); each one is logged. Returns their intent ids."""
    expired = orders.expire_stale_approvals(now_ns, STALE_APPROVAL_REASON)
    for intent_id in expired:
        log.warning("approval_expired", intent_id=intent_id, status="EXPIRED", reason=STALE_APPROVAL_REASON,
                    event_ts_ns=now_ns)
    return expired
