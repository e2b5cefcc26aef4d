"""Run folders on disk (the shape: ``trader/runs/model.py``): the writer a running App records through, and the reader
the report, ``trader compare`` and ``trader runs`` use.

Writing. ``RunWriter.start`` creates ``<runs dir>/<run id>/`` and writes ``run.json`` (status "running").
``RunWriter.append`` only queues a row (O(1), on the event loop); a writer thread appends the queued rows to
``events.jsonl`` as JSON lines at least every ``flush_seconds`` of wall time, or as soon as ``flush_rows`` are
waiting, so a crash (even ``kill -9``) loses at most the last unflushed batch. The queue is bounded
(``max_pending``): rows beyond it are dropped and counted (the disk cannot keep up, or it failed). ``RunWriter.close``
drains the thread and then builds the Parquet tables and ``summary.json`` from ``events.jsonl`` (the same path a
reader takes for a crashed run), and rewrites ``run.json`` with the final status last. Every whole-file write is
atomic (a temporary file, then ``os.replace``): a reader sees the old file or the new one, never half of one.

A write that fails is reported once through ``on_error`` and the writer stops writing; it never raises into the
caller's event loop (a run folder is a record, not a gate on trading).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from trader.events import OrderStatus
from trader.market.calendar import IST
from trader.report.checklist import evaluate_run
from trader.report.metrics import jsonable, run_metrics
from trader.report.trades import round_trips
from trader.runs.codec import (
    RunFormatError,
    manifest_dict,
    manifest_from,
    read_table,
    row_dict,
    row_from,
    write_json,
    write_table,
)
from trader.runs.model import (
    EQUITY,
    EVENTS,
    FILLS,
    FORMAT_VERSION,
    MANIFEST,
    ORDERS,
    SIGNALS,
    SUMMARY,
    TRADES,
    EquityRow,
    FillRow,
    OrderRow,
    RunData,
    RunManifest,
    RunStatus,
    SignalRow,
    TradeRow,
)

_NS_PER_SECOND = 1_000_000_000
LATEST = "latest"


class RunNotFound(ValueError):
    """``find_run`` found no run (or several) by that name."""


@dataclass(frozen=True, slots=True)
class StatusRow:
    """An ``OrderUpdate`` as events.jsonl keeps it; the reader folds them into ``OrderRow``s (last status wins, a
    terminal one is final)."""

    ts_ns: int
    intent_id: str
    order_id: str
    status: str
    filled_quantity: int = 0
    average_price: int = 0
    check: str = ""
    reason: str = ""


Row = SignalRow | OrderRow | StatusRow | FillRow | EquityRow
_KINDS: dict[type[Any], str] = {SignalRow: "signal", OrderRow: "order", StatusRow: "status", FillRow: "fill",
                                EquityRow: "equity"}
_ROW_TYPES: dict[str, type[Any]] = {kind: cls for cls, kind in _KINDS.items()}
_TERMINAL = frozenset(s.value for s in OrderStatus if s.is_terminal)


# --- ids and names ------------------------------------------------------------------------------------------------


def new_run_id(mode: str, started_ns: int) -> str:
    """``YYYYMMDD-HHMMSS-<mode>-<6 hex>``: the IST event time of the start and a suffix from ``os.urandom`` (an id,
    never a random source of results)."""
    stamp = datetime.fromtimestamp(started_ns // _NS_PER_SECOND, tz=IST).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{mode}-{os.urandom(3).hex()}"


def _started_key(run_dir: Path) -> tuple[int, str]:
    try:
        document = json.loads((run_dir / MANIFEST).read_text())
        wall = int(document.get("wall_started_ns", 0)) if isinstance(document, dict) else 0
    except (OSError, ValueError, TypeError, OverflowError):  # (int(1e999): a hostile run.json orders as unknown)
        wall = 0
    if not wall:
        with contextlib.suppress(OSError):
            wall = (run_dir / MANIFEST).stat().st_mtime_ns
    return wall, run_dir.name


def list_runs(runs_dir: Path) -> list[Path]:
    """The run folders under ``runs_dir`` (those with a run.json), oldest start (wall time) first."""
    if not runs_dir.is_dir():
        return []
    runs = [path for path in runs_dir.iterdir() if path.is_dir() and (path / MANIFEST).is_file()]
    return sorted(runs, key=_started_key)


def find_run(name_or_path: str | Path, runs_dir: Path) -> Path:
    """A run folder by path, by run id, by a unique prefix of one, or ``"latest"`` (the last started, by wall time)."""
    text = str(name_or_path)
    path = Path(text)
    if (path / MANIFEST).is_file():
        return path
    runs = list_runs(runs_dir)
    if not runs:
        raise RunNotFound(f"no run {text!r}: {runs_dir} holds no run folders (a backtest, paper or live run writes "
                          "one there)")
    if text == LATEST:
        return runs[-1]
    exact = [run for run in runs if run.name == text]
    if exact:
        return exact[0]
    matches = [run for run in runs if run.name.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(run.name for run in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise RunNotFound(f"{text!r} matches {len(matches)} runs in {runs_dir} ({shown}); give more of the id")
    recent = ", ".join(run.name for run in runs[-3:])
    raise RunNotFound(f"no run {text!r} in {runs_dir} (nor a run folder at that path); recent runs: {recent}; "
                      "or use 'latest'")


# --- events.jsonl -> tables -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Events:
    """events.jsonl read back: the rows by kind (orders folded with their status updates), and how many lines could
    not be read (a truncated last line after a crash)."""

    signals: list[SignalRow] = dataclasses.field(default_factory=list)
    orders: list[OrderRow] = dataclasses.field(default_factory=list)
    fills: list[FillRow] = dataclasses.field(default_factory=list)
    equity: list[EquityRow] = dataclasses.field(default_factory=list)
    bad_lines: int = 0


def _fold_status(order: OrderRow, status: StatusRow) -> OrderRow:
    if order.status in _TERMINAL:
        return order  # a terminal status is final
    return dataclasses.replace(order, order_id=status.order_id or order.order_id, status=status.status,
                               status_ts_ns=status.ts_ns, filled_quantity=status.filled_quantity,
                               average_price=status.average_price, check=status.check, status_reason=status.reason)


def _lines(path: Path) -> Iterator[bytes]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with handle:
        yield from handle


def read_events(path: Path) -> Events:
    events = Events()
    orders: dict[str, OrderRow] = {}
    early: dict[str, list[StatusRow]] = {}
    for line in _lines(path):
        try:
            data = orjson.loads(line)
            cls = _ROW_TYPES[data["kind"]]
            row = row_from(cls, data)
        except (ValueError, KeyError, TypeError):
            events.bad_lines += 1  # a line cut short by a crash, or damaged
            continue
        if cls is SignalRow:
            events.signals.append(row)
        elif cls is OrderRow:
            seen = orders.get(row.intent_id)
            if seen is not None and seen.status:  # the same intent again (re-priced): keep what became of it
                row = dataclasses.replace(row, order_id=seen.order_id, status=seen.status,
                                          status_ts_ns=seen.status_ts_ns, filled_quantity=seen.filled_quantity,
                                          average_price=seen.average_price, check=seen.check,
                                          status_reason=seen.status_reason)
            for status in early.pop(row.intent_id, []):
                row = _fold_status(row, status)
            orders[row.intent_id] = row
        elif cls is StatusRow:
            known = orders.get(row.intent_id)
            if known is None:
                early.setdefault(row.intent_id, []).append(row)  # an intent recorded after its update (or never)
            else:
                orders[row.intent_id] = _fold_status(known, row)
        elif cls is FillRow:
            events.fills.append(row)
        else:
            events.equity.append(row)
    events.orders = list(orders.values())
    return events


# --- the writer -----------------------------------------------------------------------------------------------------


ErrorReporter = Callable[[str, BaseException], None]


def _ignore(what: str, error: BaseException) -> None:
    del what, error


class RunWriter:
    def __init__(self, runs_dir: Path, manifest: RunManifest, *, flush_rows: int = 512,
                 flush_seconds: float = 1.0, max_pending: int = 200_000, on_error: ErrorReporter = _ignore) -> None:
        self.manifest = manifest
        self.run_dir = runs_dir / manifest.run_id
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self._on_error = on_error
        self._pending: deque[Row] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._handle: Any = None
        self.failed: BaseException | None = None
        self._reported: set[str] = set()
        self.dropped = 0
        self.written = 0
        self.flushes = 0

    # -- start ------------------------------------------------------------------------------------------------
    def start(self) -> bool:
        """Create the folder, write run.json and start the writer thread; False (reported) if that failed."""
        try:
            self.run_dir.parent.mkdir(parents=True, exist_ok=True)
            self.run_dir.mkdir()
            write_json(self.run_dir / MANIFEST, manifest_dict(self.manifest))
            self._handle = open(self.run_dir / EVENTS, "ab")  # noqa: SIM115 - closed by the thread
        except OSError as exc:
            self._fail("start", exc)
            return False
        self._thread = threading.Thread(target=self._loop, name=f"run-writer-{self.manifest.run_id}", daemon=True)
        self._thread.start()
        return True

    def _fail(self, what: str, error: BaseException, *, stop: bool = True) -> None:
        """Report a failure (once per kind); ``stop``: write nothing more (an I/O error), else drop one row."""
        if stop and self.failed is None:
            self.failed = error
        if what not in self._reported:
            self._reported.add(what)
            with contextlib.suppress(Exception):  # a reporter that fails must not stop the writer's caller either
                self._on_error(what, error)

    # -- the hot path (event loop) --------------------------------------------------------------------------------
    def append(self, row: Row) -> None:
        """Queue one row; never blocks, never raises."""
        if self.failed is not None or self._closing or self._thread is None:
            self.dropped += 1
            return
        pending = self._pending
        if len(pending) >= self.max_pending:
            self.dropped += 1
            return
        pending.append(row)
        if len(pending) >= self.flush_rows:
            self._wake.set()

    # -- the writer thread ------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closing
            self._flush()
            if closing:
                break
        handle, self._handle = self._handle, None
        with contextlib.suppress(OSError):
            handle.close()

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        lines: list[bytes] = []
        while pending:
            row = pending.popleft()
            try:
                lines.append(orjson.dumps({"kind": _KINDS[type(row)], **row_dict(row)},
                                          option=orjson.OPT_APPEND_NEWLINE))
            except (TypeError, KeyError) as exc:  # orjson.JSONEncodeError is a TypeError
                self.dropped += 1
                self._fail("encode", exc, stop=False)
        if self.failed is not None:
            self.dropped += len(lines)
            return
        try:
            self._handle.write(b"".join(lines))
            self._handle.flush()  # to the OS: a kill -9 of this process loses nothing already flushed
        except OSError as exc:
            self.dropped += len(lines)
            self._fail("events", exc)
            return
        self.written += len(lines)
        self.flushes += 1

    # -- stop ----------------------------------------------------------------------------------------------------
    def close(self, *, ended_ns: int, wall_ended_ns: int, final: EquityRow | None = None, stop_reason: str = "",
              status: RunStatus = "complete") -> RunData | None:
        """Flush the queue, build the tables and summary.json, rewrite run.json (``status``). Blocking: call it off
        the event loop (``asyncio.to_thread``). Returns the run as written, or None if writing failed (reported)."""
        if self._thread is None:
            return None
        if final is not None:
            self.append(final)
        self._closing = True
        self._wake.set()
        self._thread.join()
        self._thread = None
        if self.failed is not None:  # events.jsonl stopped mid-run: say so in run.json if the disk lets us
            failed = dataclasses.replace(self.manifest, status="failed", ended_ns=ended_ns,
                                         wall_ended_ns=wall_ended_ns,
                                         stop_reason=_incomplete(stop_reason, f"writing events.jsonl failed "
                                                                              f"({self.failed})"))
            with contextlib.suppress(OSError):
                write_json(self.run_dir / MANIFEST, manifest_dict(failed))
            return None
        if self.dropped:  # rows missing from the record: it must not say "complete"
            status = "failed"
            stop_reason = _incomplete(stop_reason, f"{self.dropped} rows not recorded (the writer's queue was full "
                                                   "or a row could not be encoded)")
        manifest = dataclasses.replace(self.manifest, status=status, ended_ns=ended_ns,
                                       wall_ended_ns=wall_ended_ns, stop_reason=stop_reason)
        try:
            return finish_run(self.run_dir, manifest)
        except Exception as exc:  # a record: whatever went wrong is reported, never raised into the stop
            self._fail("tables", exc)
            return None


def _incomplete(stop_reason: str, what: str) -> str:
    return f"{stop_reason}; run record incomplete: {what}" if stop_reason else f"run record incomplete: {what}"


def finish_run(run_dir: Path, manifest: RunManifest) -> RunData:
    """Build a run's tables and summary from its events.jsonl, then write run.json (``manifest``) last."""
    events = read_events(run_dir / EVENTS)
    trades = round_trips(events.fills, events.orders)
    data = RunData(manifest=manifest, signals=tuple(events.signals), orders=tuple(events.orders),
                   fills=tuple(events.fills), equity=tuple(events.equity), trades=tuple(trades), complete=True,
                   bad_lines=events.bad_lines)
    write_table(run_dir / SIGNALS, SignalRow, data.signals)
    write_table(run_dir / ORDERS, OrderRow, data.orders)
    write_table(run_dir / FILLS, FillRow, data.fills)
    write_table(run_dir / EQUITY, EquityRow, data.equity)
    write_table(run_dir / TRADES, TradeRow, data.trades)
    write_json(run_dir / SUMMARY, summary_document(data))
    write_json(run_dir / MANIFEST, manifest_dict(manifest))
    return data


def summary_document(run: RunData) -> dict[str, Any]:
    """summary.json: the metrics (``run_metrics`` as ``jsonable``) and the go-live checklist of a run."""
    curve = [(row.ts_ns, row.equity) for row in run.equity]
    metrics = run_metrics(net_pnls=[t.net for t in run.trades], equity_curve=curve,
                          fills=[f.record() for f in run.fills], initial_capital=run.manifest.initial_capital,
                          final_equity=run.final_equity)
    checklist = evaluate_run(metrics)
    final = run.final_equity
    return {"run_id": run.manifest.run_id, "format_version": FORMAT_VERSION,
            "trades": len(run.trades), "trades_net": sum(t.net for t in run.trades),
            "net_pnl": final[1] - run.manifest.initial_capital if final is not None else None,
            "final_equity": final[1] if final is not None else None, "metrics": jsonable(metrics),
            "checklist": {"passed": checklist.passed, "items": jsonable(checklist.items)}}


# --- the reader -----------------------------------------------------------------------------------------------------


def read_manifest(run_dir: Path) -> RunManifest:
    path = run_dir / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RunFormatError(f"{path}: not found: {run_dir} is not a run folder") from None
    except OSError as exc:
        raise RunFormatError(f"{path}: cannot be read ({exc})") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise RunFormatError(f"{path}: not valid JSON ({exc})") from None
    return manifest_from(document, path)


_TABLES: tuple[tuple[str, type[Any]], ...] = ((SIGNALS, SignalRow), (ORDERS, OrderRow), (FILLS, FillRow),
                                              (EQUITY, EquityRow), (TRADES, TradeRow))


def load_run(path: Path) -> RunData:
    """A run folder read whole: the Parquet tables of a run that stopped cleanly (``complete=True``); otherwise
    (it is still running, or crashed) the rows rebuilt from events.jsonl, with the lines that could not be read
    counted in ``bad_lines`` (``complete=False``)."""
    manifest = read_manifest(path)
    if manifest.status != "running" and all((path / name).is_file() for name, _ in _TABLES):
        signals, orders, fills, equity, trades = (read_table(path / name, cls) for name, cls in _TABLES)
        return RunData(manifest=manifest, signals=signals, orders=orders, fills=fills, equity=equity, trades=trades,
                       complete=True)
    events = read_events(path / EVENTS)
    return RunData(manifest=manifest, signals=tuple(events.signals), orders=tuple(events.orders),
                   fills=tuple(events.fills), equity=tuple(events.equity),
                   trades=tuple(round_trips(events.fills, events.orders)), complete=False,
                   bad_lines=events.bad_lines)
