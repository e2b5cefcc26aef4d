"""SQLite (WAL) journal under the data dir: durable state the daemon must not forget across a restart.

For now it holds named JSON state documents (the risk manager's windows, breaches and trading state); the order
journal (intents before sending, orders, fills) will live in the same file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    name TEXT PRIMARY KEY,
    document BLOB NOT NULL,
    updated_ns INTEGER NOT NULL
)
"""


class JournalError(Exception):
    """The journal cannot be opened or read; the message says which file and why."""


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a power cut may lose the last commits but never corrupts the file.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}; check data_dir (TRADER_DATA_DIR) "
                               "points to a writable directory") from exc

    def save_state(self, name: str, document: dict[str, Any], ts_ns: int) -> None:
        self._db.execute(
            "INSERT INTO state (name, document, updated_ns) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET document = excluded.document, updated_ns = excluded.updated_ns",
            (name, orjson.dumps(document), ts_ns),
        )

    def load_state(self, name: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT document FROM state WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        try:
            document = orjson.loads(row[0])
        except orjson.JSONDecodeError as exc:
            raise JournalError(f"state {name!r} in {self.path} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise JournalError(f"state {name!r} in {self.path} is not a JSON object")
        return document

    def close(self) -> None:
        self._db.close()
