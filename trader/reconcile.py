"""The start-up reconciliation gate: our journal (the truth about our intents) against the broker's books (the truth
about orders, trades and positions), before any strategy or feed-driven intent can reach the broker.

``reconcile`` is the pure core: given the journal's intents and fills and one reading of the broker's book, it
decides, per order and per position,
- our open orders (tag known to the journal, not terminal at the broker): adopted and managed on;
- our orders that ended while we were down: their terminal state is journaled, and fills the broker has beyond
  what the journal holds are journaled once (the fill id is the order's cumulative quantity, so never twice);
- intents written but never sent (the broker has no order under the tag): ended as not sent, never re-sent;
- orders and positions we did not place (a hand-placed order in the broker's app): reported one line each,
  counted in the books and the risk limits, never closed by the daemon;
- anything the journal cannot explain (an order id the journal says was sent and the broker does not have, two
  orders under one tag, fills the broker does not report, a position no trade explains): the daemon starts HALTED
  with the reason, and places nothing until an operator resumes it. It never trades on a guess.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from trader.adapters.ports import BrokerBook, BrokerOrder, BrokerTrade
from trader.events import Fill, IntentPurpose, OrderRequest, OrderStatus, OrderUpdate
from trader.ids import is_own_id
from trader.market.calendar import ist_date
from trader.market.charges import option_charges
from trader.store.orders import SENT, JournaledIntent


@dataclass(slots=True)
class Reconciliation:
    adopted: list[tuple[OrderRequest, BrokerOrder]] = field(default_factory=list)  # ours, still working
    ended: list[OrderUpdate] = field(default_factory=list)  # terminal states to journal (ended while down)
    missed_fills: list[Fill] = field(default_factory=list)  # the broker has them, the journal did not
    outside_orders: list[BrokerOrder] = field(default_factory=list)  # not placed by this daemon
    outside_quantity: dict[int, int] = field(default_factory=dict)  # token → units held that are not ours
    closed_before_today: dict[int, int] = field(default_factory=dict)  # token → our units the broker no longer has
    carried: dict[int, int] = field(default_factory=dict)  # token → units held outside the daemon since before today
    outside_trades: list[tuple[BrokerTrade, bool]] = field(default_factory=list)  # (trade, orphan) not journaled
    orphan_tags: list[str] = field(default_factory=list)  # orders with our id format the journal does not know
    problems: list[str] = field(default_factory=list)  # each one halts the daemon


def reconcile(*, open_intents: Sequence[JournaledIntent], known: dict[str, JournaledIntent],
              journal_filled: dict[str, tuple[int, int]], journaled_ids: set[str], journal_positions: dict[int, int],
              journal_positions_today: dict[int, int], expiries: dict[int, date], intraday: bool, book: BrokerBook,
              now_ns: int) -> Reconciliation:
    """Decide everything from one reading. ``known`` maps each broker order's tag that the journal knows to its
    journaled intent; ``journal_filled`` is order id → (units, Σ price × units) journaled, ``journaled_ids`` every
    journaled fill id; the positions are the journal's (all fills) and the part of it from today's fills;
    ``expiries`` the expiry of each contract the journal knows; ``intraday`` says the broker squares positions off
    at the end of each day (Kite MIS)."""
    result = Reconciliation()
    orders_by_tag: dict[str, list[BrokerOrder]] = defaultdict(list)
    for order in book.orders:
        if order.tag:
            orders_by_tag[order.tag].append(order)
    trades_by_order: dict[str, list[BrokerTrade]] = defaultdict(list)
    for trade in book.trades:
        trades_by_order[trade.order_id].append(trade)

    for tag, orders in orders_by_tag.items():
        if len(orders) > 1 and (tag in known or is_own_id(tag)):
            result.problems.append(f"{len(orders)} broker orders carry our tag {tag} "
                                   f"({', '.join(o.order_id for o in orders)}): one intent must be one order")

    # Our intents that had not ended: adopt, end, or refuse to guess.
    for journaled in open_intents:
        tag = journaled.request.tag
        found = orders_by_tag.get(tag, [])
        if not found:
            if journaled.status == SENT and ist_date(journaled.request.intent.ts_ns) >= ist_date(now_ns):
                result.problems.append(f"the journal says order {journaled.order_id or '?'} (tag {tag}) was sent "
                                       "today, and the broker's order book has no order under that tag")
            else:
                reason = ("not sent: the daemon stopped before the broker had it" if journaled.status != SENT else
                          "ended on an earlier day (a DAY order); today's positions come from the broker")
                result.ended.append(OrderUpdate(ts_ns=now_ns, intent_id=journaled.request.intent.intent_id,
                                                order_id=journaled.order_id, status=OrderStatus.REJECTED
                                                if journaled.status != SENT else OrderStatus.CANCELLED,
                                                reason=reason))
            continue
        order = found[-1]
        if order.status.is_terminal:
            result.ended.append(OrderUpdate(
                ts_ns=now_ns, intent_id=journaled.request.intent.intent_id, order_id=order.order_id,
                status=order.status, filled_quantity=order.filled_quantity, average_price=order.average_price,
                reason=order.status_message or "ended while the daemon was down"))
        else:
            result.adopted.append((journaled.request, order))

    # Fills: every order of ours the broker reports, against what the journal booked.
    for order in book.orders:
        mine = known.get(order.tag)
        if mine is None:
            continue
        units, value = journal_filled.get(order.order_id, (0, 0))
        broker_units, broker_value = _broker_filled(order, trades_by_order.get(order.order_id, []))
        if broker_units < units:
            result.problems.append(f"the journal holds {units} filled units of order {order.order_id} (tag "
                                   f"{order.tag}); the broker reports {broker_units}")
        elif broker_units > units:
            result.missed_fills.append(_missed_fill(mine.request, order, broker_units - units,
                                                    broker_value - value, first=units == 0, now_ns=now_ns))

    ours = {tag for tag in orders_by_tag if tag in known}
    for order in book.orders:
        if order.tag in ours:
            continue
        if order.tag and is_own_id(order.tag):
            result.orphan_tags.append(order.tag)
        result.outside_orders.append(order)

    # Trades of orders we did not place, not journaled yet: each becomes a fill in the books (counted in P&L and
    # the risk limits), whatever the position nets to.
    own = set(result.orphan_tags)
    for order in result.outside_orders:
        for trade in trades_by_order.get(order.order_id, []):
            if outside_fill_id(trade, orphan=order.tag in own) not in journaled_ids:
                result.outside_trades.append((trade, order.tag in own))
    outside_today: dict[int, int] = defaultdict(int)
    for trade, _orphan in result.outside_trades:
        outside_today[trade.instrument_token] += trade.side.sign * trade.quantity

    # Positions: the broker's net quantity against what the journal's fills imply.
    expected = dict(journal_positions)
    for fill in result.missed_fills:
        token = fill.contract.instrument_token
        expected[token] = expected.get(token, 0) + fill.side.sign * fill.quantity
    held = {p.instrument_token: p for p in book.positions}
    today = ist_date(now_ns)
    for token in set(expected) | set(held):
        broker_units = held[token].quantity if token in held else 0
        overnight = held[token].overnight_quantity if token in held else 0
        delta = broker_units - expected.get(token, 0)
        today_outside = outside_today.get(token, 0)
        earlier = expected.get(token, 0) - journal_positions_today.get(token, 0)
        if delta == today_outside:
            if delta:
                result.outside_quantity[token] = delta
            continue
        if earlier == 0 and overnight and delta == today_outside + overnight:
            result.carried[token] = overnight  # held since before today, placed outside the daemon
            result.outside_quantity[token] = delta
            continue
        if earlier and overnight == 0 and delta == today_outside - earlier:
            expiry = expiries.get(token)
            if (expiry is not None and expiry < today) or intraday:
                # Expired, or an intraday (MIS) position the broker squared off at the end of its day.
                result.closed_before_today[token] = earlier
                if today_outside:
                    result.outside_quantity[token] = today_outside
                continue
        symbol = held[token].tradingsymbol if token in held else str(token)
        result.problems.append(f"the broker holds {broker_units} units of {symbol} ({overnight} of them since before "
                               f"today); the journal's fills explain {expected.get(token, 0)} ({earlier} from earlier "
                               f"days) and today's orders placed outside the daemon {today_outside}")
    return result


OUTSIDE_FILL_PREFIXES = ("HAND", "CARRY")  # fills of positions held outside the daemon: counted, never managed


def outside_fill_id(trade: BrokerTrade, *, orphan: bool) -> str:
    """The id of a fill booked from the broker's trade book: the same at every start and at run time."""
    return f"{'ORPHAN' if orphan else 'HAND'}{trade.order_id}T{trade.trade_id}"


def _broker_filled(order: BrokerOrder, trades: list[BrokerTrade]) -> tuple[int, int]:
    """Units and exact value filled: from the trade book when it covers the order, else from the average price."""
    units = sum(t.quantity for t in trades)
    if trades and units == order.filled_quantity:
        return units, sum(t.quantity * t.price for t in trades)
    return order.filled_quantity, order.filled_quantity * order.average_price


def _missed_fill(request: OrderRequest, order: BrokerOrder, units: int, value: int, *, first: bool,
                 now_ns: int) -> Fill:
    intent = request.intent
    price = round(value / units)
    charges = option_charges(exchange=intent.contract.exchange, side=intent.side, quantity=units, price=price,
                             trade_date=ist_date(now_ns), include_brokerage=first)
    return Fill(ts_ns=now_ns, fill_id=f"{order.order_id}F{order.filled_quantity}", intent_id=intent.intent_id,
                order_id=order.order_id, contract=intent.contract, side=intent.side, quantity=units, price=price,
                expected_price=intent.expected_price, charges=charges.total,
                purpose=intent.purpose if intent.purpose is IntentPurpose.EXIT else IntentPurpose.ENTRY)
