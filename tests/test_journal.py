"""The SQLite journal keeps state documents across a reopen (a daemon restart)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from trader.approvals import Approval
from trader.events import ApprovalStatus, IntentPurpose, OrderIntent, OrderType, Side
from trader.market.instruments import OptionContract
from trader.store.journal import _MIGRATIONS, SCHEMA_VERSION, Journal, JournalError
from trader.store.orders import OrderJournal


def test_state_survives_a_reopen_and_is_replaced_not_duplicated(tmp_path: Path) -> None:
    path = tmp_path / "data" / "journal.sqlite3"
    journal = Journal(path)
    assert journal.load_state("risk") is None
    journal.save_state("risk", {"state": "REDUCING_ONLY", "day_pnl": -2500}, ts_ns=1)
    journal.save_state("risk", {"state": "REDUCING_ONLY", "day_pnl": -3000}, ts_ns=2)
    journal.close()
    reopened = Journal(path)
    assert reopened.load_state("risk") == {"state": "REDUCING_ONLY", "day_pnl": -3000}
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # one daemon owns its journal while it runs
        sqlite3.connect(path, timeout=0.1).execute("SELECT COUNT(*) FROM state").fetchone()
    reopened.close()
    rows = sqlite3.connect(path).execute("SELECT COUNT(*), MAX(updated_ns) FROM state").fetchone()
    assert rows == (1, 2)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unusable_location_and_corrupt_documents_are_clear_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalError, match="TRADER_DATA_DIR"):
        Journal(blocker / "journal.sqlite3")
    journal = Journal(tmp_path / "j.sqlite3")
    journal._db.execute("INSERT INTO state VALUES ('risk', 'not json', 0)")
    with pytest.raises(JournalError, match="not valid JSON"):
        journal.load_state("risk")


def version_2_file(path: Path) -> sqlite3.Connection:
    """A journal as a version 2 daemon left it (the state and order tables, no approvals)."""
    db = sqlite3.connect(path)
    for step in (1, 2):
        for statement in _MIGRATIONS[step]:
            db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    return db


def test_a_migrated_journal_keeps_each_approval_once_decided(tmp_path: Path) -> None:
    path = tmp_path / "live.sqlite3"
    version_2_file(path).close()
    journal = Journal(path)
    assert journal.schema_version == SCHEMA_VERSION == 3
    orders = OrderJournal(journal)
    contract = OptionContract.parse("NIFTY26DEC26000CE", instrument_token=101)
    intent = OrderIntent(ts_ns=5, intent_id="I1", strategy_id="ema", contract=contract, side=Side.BUY, quantity=65,
                         order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY, expected_price=10_000,
                         signal_id="S1")
    orders.record_approval(Approval(intent=intent, status=ApprovalStatus.PENDING, created_ns=5, expires_ns=65))
    assert orders.approvals() == [("I1", ApprovalStatus.PENDING, "")]
    orders.record_approval(Approval(intent=intent, status=ApprovalStatus.REJECTED, created_ns=5, expires_ns=65,
                                    decided_ns=7, by="cli", reason="no"))
    orders.record_approval(Approval(intent=intent, status=ApprovalStatus.EXPIRED, created_ns=5, expires_ns=65,
                                    decided_ns=65, reason="late"))  # a decision is never overwritten
    assert orders.approvals() == [("I1", ApprovalStatus.REJECTED, "no")]
    assert journal.read("SELECT signal_id, strategy_id, decided_ns, decided_by FROM approvals") == [
        ("S1", "ema", 7, "cli")]
    journal.close()


def test_a_version_2_journal_with_orders_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "live.sqlite3"
    db = version_2_file(path)
    db.execute("INSERT INTO intents (intent_id, tag, ts_ns, strategy_id, purpose, instrument_token, side, quantity, "
               "document, status, updated_ns) VALUES ('I9', 'I9', 1, 'ema', 'ENTRY', 101, 'BUY', 65, '{}', "
               "'terminal', 1)")
    db.execute("INSERT INTO state VALUES ('risk', '{\"halted\": false}', 1)")
    db.commit()
    db.close()
    journal = Journal(path)
    assert journal.schema_version == 3
    assert journal.read("SELECT intent_id, status FROM intents") == [("I9", "terminal")]
    assert journal.load_state("risk") == {"halted": False}
    assert journal.read("SELECT COUNT(*) FROM approvals") == [(0,)]
    journal.close()
