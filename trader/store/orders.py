"""The order journal: our intents, written before they are sent, and everything the broker said about them.

Write-ahead: ``record_intent`` commits an approved intent with its tag before the order leaves; ``record_sent``
adds the broker's order id once it answers. ``record_update`` keeps every order update and ends the intent at its
first terminal one; ``record_fill`` keeps each fill once (a repeated fill id is a no-op and says so). A restart
reads back the intents that never ended, and every fill, to rebuild what it holds (``trader/reconcile.py``).

Semi-live approvals (``record_approval``): one row per entry that waited for an operator, PENDING until it is decided
once (APPROVED, REJECTED, EXPIRED; a decision is never overwritten). ``expire_stale_approvals`` ends, at start,
those an earlier run left pending: a stale signal is never sent late.

Kite postbacks carry no trade id; a fill's id is ``<order_id>F<cumulative filled quantity>``, which the same report
always yields again, so a repeated postback, a resync or a restart can never book it twice.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import orjson

from trader.approvals import Approval
from trader.events import ApprovalStatus, Fill, OrderRequest, OrderStatus, OrderUpdate
from trader.store.codec import fill_from_dict, fill_to_dict, intent_from_dict, intent_to_dict
from trader.store.journal import Journal, JournalError

WRITTEN = "written"  # committed, maybe not sent
SENT = "sent"  # the broker answered with an order id
TERMINAL = "terminal"


@dataclass(frozen=True, slots=True)
class JournaledIntent:
    request: OrderRequest
    order_id: str
    status: str
    terminal_status: str = ""
    reason: str = ""  # why it ended, as its terminal update said


class OrderJournal:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @property
    def path(self) -> str:
        return str(self.journal.path)

    # -- writes -----------------------------------------------------------------------------------------------
    def record_intent(self, request: OrderRequest, ts_ns: int) -> bool:
        """Commit an intent before its order is sent; False if this tag was journaled already."""
        intent = request.intent
        document = orjson.dumps(intent_to_dict(intent))

        def insert(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT OR IGNORE INTO intents (intent_id, tag, ts_ns, strategy_id, purpose, instrument_token, side, "
                "quantity, document, status, updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (intent.intent_id, request.tag, intent.ts_ns, intent.strategy_id, intent.purpose.value,
                 intent.contract.instrument_token, intent.side.value, intent.quantity, document, WRITTEN, ts_ns))
            return cursor.rowcount == 1

        return bool(self.journal.write(insert))

    def record_sent(self, tag: str, order_id: str, ts_ns: int) -> None:
        self.journal.write(lambda db: db.execute(
            "UPDATE intents SET order_id = ?, status = CASE status WHEN ? THEN ? ELSE status END, updated_ns = ? "
            "WHERE tag = ?", (order_id, WRITTEN, SENT, ts_ns, tag)))

    def record_update(self, update: OrderUpdate) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO order_events (intent_id, order_id, status, filled, average_price, reason, ts_ns) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (update.intent_id, update.order_id, update.status.value, update.filled_quantity,
                        update.average_price, update.reason, update.ts_ns))
            if update.order_id:
                db.execute("UPDATE intents SET order_id = ?, status = CASE status WHEN ? THEN ? ELSE status END "
                           "WHERE intent_id = ? AND order_id = ''", (update.order_id, WRITTEN, SENT, update.intent_id))
            if update.status.is_terminal:
                db.execute("UPDATE intents SET status = ?, terminal_status = ?, reason = ?, updated_ns = ? "
                           "WHERE intent_id = ? AND status != ?",
                           (TERMINAL, update.status.value, update.reason, update.ts_ns, update.intent_id, TERMINAL))

        self.journal.write(write)

    def record_fill(self, fill: Fill) -> bool:
        """Keep a fill; False when its id was journaled already (a repeat, booked nowhere a second time)."""
        document = orjson.dumps(fill_to_dict(fill))

        def insert(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT OR IGNORE INTO fills (fill_id, intent_id, order_id, instrument_token, side, quantity, price, "
                "expected_price, charges, purpose, ts_ns, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (fill.fill_id, fill.intent_id, fill.order_id, fill.contract.instrument_token, fill.side.value,
                 fill.quantity, fill.price, fill.expected_price, fill.charges, fill.purpose.value, fill.ts_ns,
                 document))
            return cursor.rowcount == 1

        return bool(self.journal.write(insert))

    def record_approval(self, approval: Approval) -> None:
        """Keep a semi-live entry's state: inserted PENDING, then its decision, once (a decided row never changes:
        a repeat or a late write after a restart's expiry is a no-op)."""
        intent = approval.intent
        document = orjson.dumps(intent_to_dict(intent))
        self.journal.write(lambda db: db.execute(
            "INSERT INTO approvals (intent_id, signal_id, strategy_id, status, document, created_ns, expires_ns, "
            "decided_ns, decided_by, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(intent_id) DO UPDATE SET status = excluded.status, document = excluded.document, "
            "decided_ns = excluded.decided_ns, decided_by = excluded.decided_by, reason = excluded.reason "
            "WHERE approvals.status = ?",
            (intent.intent_id, intent.signal_id, intent.strategy_id, approval.status.value, document,
             approval.created_ns, approval.expires_ns, approval.decided_ns, approval.by, approval.reason,
             ApprovalStatus.PENDING.value)))

    def expire_stale_approvals(self, now_ns: int, reason: str) -> list[str]:
        """At start: every approval still PENDING (an earlier run's) becomes EXPIRED; their intent ids."""
        pending = ApprovalStatus.PENDING.value

        def expire(db: sqlite3.Connection) -> list[str]:
            ids = [row[0] for row in db.execute(
                "SELECT intent_id FROM approvals WHERE status = ? ORDER BY created_ns, rowid", (pending,))]
            db.execute("UPDATE approvals SET status = ?, decided_ns = ?, reason = ? WHERE status = ?",
                       (ApprovalStatus.EXPIRED.value, now_ns, reason, pending))
            return ids

        return list(self.journal.write(expire))

    # -- reads ------------------------------------------------------------------------------------------------
    def _intents(self, where: str, parameters: tuple[object, ...] = ()) -> list[JournaledIntent]:
        rows = self.journal.read(
            f"SELECT tag, document, order_id, status, terminal_status, reason FROM intents {where} "
            "ORDER BY ts_ns, rowid", parameters)
        found = []
        for tag, document, order_id, status, terminal_status, reason in rows:
            try:
                intent = intent_from_dict(orjson.loads(document), f"intent {tag}")
            except (orjson.JSONDecodeError, ValueError) as exc:
                raise JournalError(f"the journal {self.path} holds an unreadable intent ({exc}): move the file aside "
                                   "and restart; the broker's books are the truth for today") from exc
            found.append(JournaledIntent(OrderRequest(ts_ns=intent.ts_ns, intent=intent, tag=tag), order_id, status,
                                         terminal_status, reason))
        return found

    def open_intents(self) -> list[JournaledIntent]:
        """Intents without a terminal state: written (maybe sent) or sent and not yet ended."""
        return self._intents("WHERE status != ?", (TERMINAL,))

    def intents_since(self, since_ns: int) -> list[JournaledIntent]:
        """Every intent written at or after ``since_ns`` (e.g. today's), ended or not, oldest first."""
        return self._intents("WHERE ts_ns >= ?", (since_ns,))

    def intents_by_tag(self, tags: list[str]) -> dict[str, JournaledIntent]:
        if not tags:
            return {}
        marks = ",".join("?" * len(tags))
        return {j.request.tag: j for j in self._intents(f"WHERE tag IN ({marks})", tuple(tags))}

    def fills(self) -> list[Fill]:
        """Every journaled fill, in the order they happened."""
        found = []
        for fill_id, document in self.journal.read("SELECT fill_id, document FROM fills ORDER BY ts_ns, rowid"):
            try:
                found.append(fill_from_dict(orjson.loads(document), f"fill {fill_id}"))
            except (orjson.JSONDecodeError, ValueError) as exc:
                raise JournalError(f"the journal {self.path} holds an unreadable fill ({exc}): move the file aside "
                                   "and restart; the broker's books are the truth for today") from exc
        return found

    def filled_by_order(self) -> dict[str, tuple[int, int]]:
        """Order id → (units filled, Σ price × units) as journaled."""
        rows = self.journal.read("SELECT order_id, SUM(quantity), SUM(quantity * price) FROM fills GROUP BY order_id")
        return {order_id: (int(units), int(value)) for order_id, units, value in rows}

    def sent_since(self, since_ns: int) -> list[int]:
        """When the intents of the last moments were sent (their write-ahead time): the order-rate window that a
        restart must not forget."""
        return [int(ts) for (ts,) in self.journal.read(
            "SELECT ts_ns FROM intents WHERE ts_ns >= ? ORDER BY ts_ns", (since_ns,))]

    def strategy_of_intents(self) -> dict[str, str]:
        return {intent_id: strategy_id for intent_id, strategy_id
                in self.journal.read("SELECT intent_id, strategy_id FROM intents")}

    def approvals(self) -> list[tuple[str, ApprovalStatus, str]]:
        """Every journaled approval as (intent id, status, reason), oldest first."""
        return [(intent_id, ApprovalStatus(status), reason) for intent_id, status, reason in self.journal.read(
            "SELECT intent_id, status, reason FROM approvals ORDER BY created_ns, rowid")]

    def terminal_status(self, intent_id: str) -> OrderStatus | None:
        rows = self.journal.read("SELECT terminal_status FROM intents WHERE intent_id = ?", (intent_id,))
        return OrderStatus(rows[0][0]) if rows and rows[0][0] else None
