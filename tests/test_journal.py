"""The SQLite journal keeps state documents across a reopen (a daemon restart)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from trader.store.journal import Journal, JournalError


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
