"""Issue #8, found by fault injection (item 9): an invalid state document inside a valid database is a message.

It used to end ``trader run`` with a ``JournalError`` (or ``OverflowError``) traceback. Now every path that reads a
saved state at start (the risk manager's, the built-in market's) exits with code 2 and one line naming the file and
the fix.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from trader.cli import main
from trader.risk.config import RiskConfig
from trader.risk.core import RiskManager
from trader.store.journal import Journal

pytestmark = pytest.mark.usefixtures("quiet_logs")

GOOD_RISK = RiskManager(RiskConfig(), now_ns=lambda: 1_790_000_000_000_000_000).to_state()


def journal_with(data_dir: Path, name: str, document: bytes) -> Path:
    """A valid paper journal whose state row ``name`` holds ``document`` as written (bytes, not re-encoded)."""
    path = data_dir / "paper.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO state (name, document, updated_ns) VALUES (?, ?, 0)", (name, document))
    db.close()  # the daemon takes its journal for itself
    return path


def run_paper(data_dir: Path, env: pytest.MonkeyPatch, *, start: bool = True) -> int:
    env.setenv("TRADER_DATA_DIR", str(data_dir))
    # If start-up wrongly went on, one unpaced simulated day ends the run instead of the test hanging. Without
    # --start the built-in market reads where the last paper run stopped (the paper_market state).
    return main(["run", "--mode", "paper", "--speed", "0", "--days", "1",
                 *(["--start", "2026-11-20T09:15"] if start else [])])


@pytest.mark.parametrize(("name", "document"), [
    ("risk", b"not json at all"),
    ("risk", b"[1, 2, 3]"),
    ("risk", orjson.dumps({**GOOD_RISK, "initial_capital": "a lot"})),
    ("risk", orjson.dumps({**GOOD_RISK, "windows": {"daily": None}})),
    ("risk", orjson.dumps({**GOOD_RISK, "day": "9999-12-31"})),  # valid, but the next day does not exist
    ("risk", orjson.dumps({**GOOD_RISK, "version": 99})),
    ("paper_market", b"\xff\xfe garbage"),
    ("paper_market", b'"a string"'),
], ids=["risk-not-json", "risk-not-object", "risk-wrong-type", "risk-window-missing", "risk-day-9999",
        "risk-version", "paper-market-not-json", "paper-market-not-object"])
def test_an_invalid_state_document_exits_2_with_a_message_naming_the_file_and_the_fix(
        clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
        document: bytes) -> None:
    path = journal_with(tmp_path, name, document)
    code = run_paper(tmp_path, clean_env, start=name != "paper_market")
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert str(path) in lines[0] and repr(name) in lines[0]
    assert "move" in lines[0] and "aside" in lines[0]  # the fix


def test_a_journal_error_found_while_running_is_a_message_too(
        clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trader.app import App  # noqa: PLC0415
    from trader.store.journal import JournalError  # noqa: PLC0415

    async def failing_run(self: App, *, install_signal_handlers: bool = True) -> None:
        raise JournalError(f"cannot write the journal {tmp_path / 'paper.sqlite3'}: disk I/O error; free space")

    clean_env.setattr(App, "run", failing_run)
    code = run_paper(tmp_path, clean_env)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"journal error: cannot write the journal {tmp_path / 'paper.sqlite3'}: "
                                        "disk I/O error; free space"]
