"""SQLite (WAL) journal under the data dir: what the daemon must not forget across a restart, or a kill -9.

One file per mode (``paper.sqlite3``, ``live.sqlite3``) holds:
- named JSON state documents (the risk manager's windows and breaches, each strategy's holdings with their stops,
  the paper broker's book, the paper market's time), in ``state``;
- the order journal (``trader/store/orders.py``): every intent written *before* its order is sent, every broker
  order id, order update and fill;
- the semi-live approvals (version 3): each entry that waited for an operator, and how it ended.

The schema is versioned (``PRAGMA user_version``) and migrated forward in one transaction at open; a file written by
a newer version, or one that is not a usable SQLite database, is refused with a message that names the file and
says what to do. Nothing is ever silently reinterpreted. A write that fails (read-only or full disk) raises
``JournalWriteError``: the caller halts entries, because a daemon must never trade with a journal it cannot write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = 3

# Version N's statements turn a version N-1 file into a version N file. Version 1 (the first release) had only the
# state table and never set user_version, so a file at user_version 0 with a state table is version 1.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("""CREATE TABLE IF NOT EXISTS state (
            name TEXT PRIMARY KEY,
            document BLOB NOT NULL,
            updated_ns INTEGER NOT NULL)""",),
    2: ("""CREATE TABLE intents (
            intent_id TEXT PRIMARY KEY,
            tag TEXT NOT NULL UNIQUE,
            ts_ns INTEGER NOT NULL,
            strategy_id TEXT NOT NULL,
            purpose TEXT NOT NULL,
            instrument_token INTEGER NOT NULL,
            side TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            document BLOB NOT NULL,
            order_id TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            terminal_status TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '',
            updated_ns INTEGER NOT NULL)""",
        "CREATE INDEX intents_open ON intents (status) WHERE status != 'terminal'",
        "CREATE INDEX intents_order ON intents (order_id)",
        """CREATE TABLE order_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            intent_id TEXT NOT NULL,
            order_id TEXT NOT NULL,
            status TEXT NOT NULL,
            filled INTEGER NOT NULL,
            average_price INTEGER NOT NULL,
            reason TEXT NOT NULL,
            ts_ns INTEGER NOT NULL)""",
        """CREATE TABLE fills (
            fill_id TEXT PRIMARY KEY,
            intent_id TEXT NOT NULL,
            order_id TEXT NOT NULL,
            instrument_token INTEGER NOT NULL,
            side TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            price INTEGER NOT NULL,
            expected_price INTEGER NOT NULL,
            charges INTEGER NOT NULL,
            purpose TEXT NOT NULL,
            ts_ns INTEGER NOT NULL,
            document BLOB NOT NULL)""",
        "CREATE INDEX fills_order ON fills (order_id)"),
    3: ("""CREATE TABLE approvals (
            intent_id TEXT PRIMARY KEY,
            signal_id TEXT NOT NULL,
            strategy_id TEXT NOT NULL,
            status TEXT NOT NULL,
            document BLOB NOT NULL,
            created_ns INTEGER NOT NULL,
            expires_ns INTEGER NOT NULL,
            decided_ns INTEGER NOT NULL DEFAULT 0,
            decided_by TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX approvals_pending ON approvals (status) WHERE status = 'PENDING'"),
}


class JournalError(Exception):
    """The journal cannot be opened or read; the message says which file and why, and what to do."""


class JournalWriteError(JournalError):
    """A write failed (read-only or full disk, I/O error): entries must halt, the message names the file."""


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}; check data_dir (TRADER_DATA_DIR) "
                               "points to a writable directory") from exc
        try:
            # One writer, this daemon: the exclusive lock also keeps the WAL index in the process's own memory
            # instead of a memory-mapped -shm file, so a data dir that turns read-only under it (remounted after
            # disk errors) fails a write with an error the daemon handles, not a SIGBUS that kills it.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a power cut may lose the last commits but never corrupts the file; a kill -9
            # loses nothing that was committed.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._check_integrity()
            self._migrate()
            self._probe_write()
        except JournalError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise JournalError(self._unusable(exc)) from exc

    def _unusable(self, exc: BaseException, *, writing: bool = False) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return (f"the journal {self.path} is in use by another process ({text}): one daemon per data dir; stop "
                    "the other trader (or close the tool that has the file open) and start again")
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return (f"the journal {self.path} cannot be written ({text}): make data_dir (TRADER_DATA_DIR) "
                    "writable by the daemon's user")
        if "full" in text:
            return (f"the journal {self.path} cannot be written ({text}): the disk is full or was made read-only; "
                    "free space or make it writable, then restart")
        if writing or "I/O" in text:
            return (f"the journal {self.path} cannot be written ({text}): the disk failed or was made read-only; "
                    "check it and keep the file (it holds the order journal)")
        return (f"the journal {self.path} is not a usable SQLite database ({text}): move it aside and restart; the "
                "broker's order and trade books are the truth for today's positions, and the daemon rebuilds them "
                "at start")

    def _check_integrity(self) -> None:
        row = self._db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise JournalError(f"the journal {self.path} is damaged (integrity check: {row[0] if row else '?'}): "
                               "move it aside and restart; the broker's books are the truth for today's positions")

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version == 0 and self._has_table("state"):
            version = 1
        if version > SCHEMA_VERSION:
            raise JournalError(f"the journal {self.path} was written by a newer trader (schema version {version}; "
                               f"this one reads up to {SCHEMA_VERSION}): upgrade trader, or move the file aside "
                               "to start a fresh journal")
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _has_table(self, name: str) -> bool:
        row = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    def _probe_write(self) -> None:
        """A journal that cannot be written must stop the start, not the first order."""
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def write(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run one write (a statement or a few, in one transaction); a failure leaves as ``JournalWriteError``."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = action(self._db)
                self._db.execute("COMMIT")
            finally:
                if self._db.in_transaction:  # the action or the commit failed: nothing of it stays
                    self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise JournalWriteError(self._unusable(exc, writing=True)) from exc
        return result

    def read(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from exc

    def save_state(self, name: str, document: dict[str, Any], ts_ns: int) -> None:
        payload = orjson.dumps(document)
        self.write(lambda db: db.execute(
            "INSERT INTO state (name, document, updated_ns) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET document = excluded.document, updated_ns = excluded.updated_ns",
            (name, payload, ts_ns)))

    def load_state(self, name: str) -> dict[str, Any] | None:
        rows = self.read("SELECT document FROM state WHERE name = ?", (name,))
        if not rows:
            return None
        try:
            document = orjson.loads(rows[0][0])
        except orjson.JSONDecodeError as exc:
            raise JournalError(f"state {name!r} in {self.path} is not valid JSON ({exc}): move the file aside to "
                               "start fresh") from exc
        if not isinstance(document, dict):
            raise JournalError(f"state {name!r} in {self.path} is not a JSON object: move the file aside to start "
                               "fresh")
        return document

    def close(self) -> None:
        self._db.close()
