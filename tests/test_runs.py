"""Run folders on disk (trader/runs/store.py) and round trips (trader/report/trades.py)."""

from __future__ import annotations

import json
import re
import time as wall
from dataclasses import asdict, replace
from datetime import date, time
from pathlib import Path

import pytest

from trader.book import PositionBook
from trader.events import Side
from trader.market.calendar import ist_ns
from trader.report.trades import _contract, round_trips
from trader.runs.codec import RunFormatError, read_table, write_table
from trader.runs.model import (
    EQUITY,
    EVENTS,
    FILLS,
    MANIFEST,
    ORDERS,
    SIGNALS,
    SUMMARY,
    TRADES,
    DataSource,
    EquityRow,
    FillRow,
    OrderRow,
    RunManifest,
    SignalRow,
    StrategyRun,
    TradeRow,
)
from trader.runs.store import (
    RunNotFound,
    RunWriter,
    StatusRow,
    find_run,
    list_runs,
    load_run,
    new_run_id,
)

T0 = ist_ns(date(2026, 11, 20), time(9, 15))
S = 1_000_000_000
CAPITAL = 10_000_000


def manifest(run_id: str = "20261120-091500-backtest-abcdef", **overrides: object) -> RunManifest:
    base = RunManifest(run_id=run_id, mode="backtest", status="running", initial_capital=CAPITAL, started_ns=T0,
                       wall_started_ns=1, venue="synthetic", fill_model="paper",
                       strategies=(StrategyRun("ema", "ema_crossover_enhanced", {"fast": 9, "slow": 21}),),
                       underlyings=("NIFTY",), data=DataSource("ticks", path="/d/ticks.parquet"),
                       settings={"mode": "backtest", "sim": {"seed": 7}}, code_version="0.1.0")
    return replace(base, **overrides)  # type: ignore[arg-type]


def signal(n: int) -> SignalRow:
    return SignalRow(ts_ns=T0 + n * S, signal_id=f"S{n}", strategy_id="ema", underlying="NIFTY",
                     direction="BULLISH", confidence=0.75, reason="ema cross ✓", tick_id=n)


def order(intent: str, n: int, side: Side, *, signal_id: str = "", reason: str = "entry",
          purpose: str = "ENTRY", token: int = 11) -> OrderRow:
    return OrderRow(ts_ns=T0 + n * S, intent_id=intent, strategy_id="ema", signal_id=signal_id, purpose=purpose,
                    instrument_token=token, tradingsymbol=f"NIFTY26N{token}CE", exchange="NFO", side=side,
                    quantity=75, order_type="MARKET", expected_price=10_000, limit_price=0, stop_loss_price=7_000,
                    reason=reason)


def fill(fid: str, intent: str, n: int, side: Side, qty: int, price: int, charges: int = 2_000,
         token: int = 11) -> FillRow:
    return FillRow(ts_ns=T0 + n * S, fill_id=fid, intent_id=intent, order_id=f"O-{intent}", strategy_id="ema",
                   purpose="ENTRY" if side is Side.BUY else "EXIT", instrument_token=token,
                   tradingsymbol=f"NIFTY26N{token}CE", exchange="NFO", side=side, quantity=qty, price=price,
                   expected_price=price - 5, charges=charges, order_type="MARKET")


def equity(n: int, value: int) -> EquityRow:
    return EquityRow(ts_ns=T0 + n * 60 * S, equity=value, realized=value - CAPITAL, unrealized=0, charges=10,
                     day_pnl=value - CAPITAL)


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = wall.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert wall.monotonic() < deadline, "condition not met in time"
        wall.sleep(0.01)


def sample_rows() -> tuple[list[SignalRow], list[OrderRow], list[FillRow], list[EquityRow]]:
    signals = [signal(1), signal(50)]
    orders = [order("I1", 1, Side.BUY, signal_id="S1"), order("I2", 30, Side.SELL, reason="target", purpose="EXIT"),
              order("I3", 50, Side.BUY, signal_id="S50")]
    fills = [fill("F1", "I1", 2, Side.BUY, 75, 10_000), fill("F2", "I2", 31, Side.SELL, 75, 12_000)]
    curve = [equity(0, CAPITAL), equity(1, CAPITAL + 100_000)]
    return signals, orders, fills, curve


def write_sample(runs_dir: Path) -> tuple[RunWriter, list[object]]:
    writer = RunWriter(runs_dir, manifest(), flush_seconds=0.05)
    assert writer.start()
    signals, orders, fills, curve = sample_rows()
    rows: list[object] = [signals[0], orders[0],
                          StatusRow(T0 + 1 * S, "I1", "O-I1", "OPEN"), fills[0],
                          StatusRow(T0 + 2 * S, "I1", "O-I1", "COMPLETE", 75, 10_000), curve[0],
                          orders[1], fills[1], StatusRow(T0 + 31 * S, "I2", "O-I2", "COMPLETE", 75, 12_000),
                          StatusRow(T0 + 32 * S, "I2", "O-I2", "OPEN"),  # after a terminal status: ignored
                          signals[1], orders[2],
                          StatusRow(T0 + 50 * S, "I3", "", "REJECTED", check="max_open_positions",
                                    reason="too many positions"), curve[1]]
    for row in rows:
        writer.append(row)  # type: ignore[arg-type]
    return writer, rows


# --- ids and finding runs ---------------------------------------------------------------------------------------


def test_run_id_is_the_ist_event_time_the_mode_and_a_suffix() -> None:
    run_id = new_run_id("paper", T0 + 7 * S)
    assert re.fullmatch(r"20261120-091507-paper-[0-9a-f]{6}", run_id)
    assert new_run_id("paper", T0) != new_run_id("paper", T0)


def test_find_run_by_id_prefix_latest_and_path(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(RunNotFound, match="holds no run folders"):
        find_run("latest", runs)
    for n, run_id in enumerate(["20261120-091500-backtest-aaaaaa", "20261119-091500-paper-bbbbbb",
                                "20261120-091500-backtest-aaaabb"]):
        folder = runs / run_id
        folder.mkdir(parents=True)
        (folder / MANIFEST).write_text(json.dumps({"run_id": run_id, "wall_started_ns": 100 + n}))
    (runs / "not-a-run").mkdir()
    assert [p.name for p in list_runs(runs)] == ["20261120-091500-backtest-aaaaaa", "20261119-091500-paper-bbbbbb",
                                                 "20261120-091500-backtest-aaaabb"]
    assert find_run("latest", runs).name == "20261120-091500-backtest-aaaabb"  # started last, not sorted by name
    assert find_run("20261119", runs).name == "20261119-091500-paper-bbbbbb"
    assert find_run("20261120-091500-backtest-aaaaaa", runs).name == "20261120-091500-backtest-aaaaaa"
    assert find_run(str(runs / "20261119-091500-paper-bbbbbb"), runs) == runs / "20261119-091500-paper-bbbbbb"
    with pytest.raises(RunNotFound, match="matches 2 runs"):
        find_run("20261120-091500-backtest-aaaa", runs)
    with pytest.raises(RunNotFound, match=r"no run 'nope'.*latest"):
        find_run("nope", runs)


# --- write and read back ----------------------------------------------------------------------------------------


def test_every_table_round_trips_through_parquet(tmp_path: Path) -> None:
    writer, _rows = write_sample(tmp_path / "runs")
    assert json.loads((writer.run_dir / MANIFEST).read_text())["status"] == "running"
    final = equity(2, CAPITAL + 150_000)
    written = writer.close(ended_ns=T0 + 3600 * S, wall_ended_ns=5, final=final, stop_reason="end of data")
    assert written is not None and writer.failed is None and writer.dropped == 0
    for name in (MANIFEST, EVENTS, SUMMARY, SIGNALS, ORDERS, FILLS, EQUITY, TRADES):
        assert (writer.run_dir / name).is_file(), name
    assert not list(writer.run_dir.glob(".*.tmp"))
    run = load_run(writer.run_dir)
    assert run.complete and run.bad_lines == 0
    signals, orders, fills, curve = sample_rows()
    assert run.signals == tuple(signals)
    assert run.fills == tuple(fills)
    assert run.equity == (*curve, final)
    assert run.final_equity == (final.ts_ns, final.equity)
    by_id = {o.intent_id: o for o in run.orders}
    assert [o.intent_id for o in run.orders] == ["I1", "I2", "I3"]
    assert by_id["I1"] == replace(orders[0], order_id="O-I1", status="COMPLETE", status_ts_ns=T0 + 2 * S,
                                  filled_quantity=75, average_price=10_000)
    assert by_id["I2"].status == "COMPLETE"  # the OPEN after COMPLETE did not undo it
    assert by_id["I3"].status == "REJECTED" and by_id["I3"].check == "max_open_positions"
    assert by_id["I3"].order_id == "" and by_id["I3"].status_reason == "too many positions"
    assert run.trades == (TradeRow(strategy_id="ema", signal_id="S1", instrument_token=11,
                                   tradingsymbol="NIFTY26N11CE", direction="long", quantity=75, entry_ns=T0 + 2 * S,
                                   exit_ns=T0 + 31 * S, entry_price=10_000, exit_price=12_000, gross=150_000,
                                   charges=4_000, net=146_000, exit_reason="target", entry_intent_id="I1",
                                   exit_intent_id="I2"),)
    assert run.manifest == replace(manifest(), status="complete", ended_ns=T0 + 3600 * S, wall_ended_ns=5,
                                   stop_reason="end of data")
    assert run == written  # what close() returned is what a reader gets
    summary = json.loads((writer.run_dir / SUMMARY).read_text())
    assert summary["trades"] == 1 and summary["trades_net"] == 146_000
    assert summary["final_equity"] == CAPITAL + 150_000 and summary["net_pnl"] == 150_000
    assert summary["metrics"]["trades"]["net_pnl"] == 146_000
    assert summary["metrics"]["drawdown"]["max_drawdown"] == 0
    assert {i["name"] for i in summary["checklist"]["items"]} >= {"trades", "drawdown", "sharpe", "profit_factor"}
    assert summary["checklist"]["passed"] is False


def test_an_empty_run_writes_empty_tables(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, manifest())
    assert writer.start()
    assert writer.close(ended_ns=T0, wall_ended_ns=2) is not None
    run = load_run(writer.run_dir)
    assert run.complete
    assert not (run.signals or run.orders or run.fills or run.equity or run.trades)
    assert run.final_equity is None
    assert json.loads((writer.run_dir / SUMMARY).read_text())["final_equity"] is None


def test_rows_are_flushed_within_a_second_without_close(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, manifest(), flush_rows=10_000, flush_seconds=0.2)
    assert writer.start()
    writer.append(signal(1))
    events = writer.run_dir / EVENTS
    wait_for(lambda: events.read_bytes().count(b"\n") == 1, timeout=3)
    for n in range(25):
        writer.append(signal(n))
    writer.flush_rows = 5  # a full batch wakes the writer at once
    writer.append(signal(99))
    wait_for(lambda: events.read_bytes().count(b"\n") == 27, timeout=3)
    assert writer.close(ended_ns=T0, wall_ended_ns=2) is not None


def test_a_crashed_run_is_rebuilt_from_its_events_and_a_cut_line_is_counted(tmp_path: Path) -> None:
    writer, _rows = write_sample(tmp_path)
    events = writer.run_dir / EVENTS
    wait_for(lambda: events.read_bytes().count(b"\n") == 14)
    # The process dies mid-write: the last line is cut short; the tables were never written.
    with open(events, "ab") as handle:
        handle.write(b'{"kind":"fill","ts_ns":1795')
    run = load_run(writer.run_dir)
    assert not run.complete and run.bad_lines == 1
    signals, _orders, fills, curve = sample_rows()
    assert run.signals == tuple(signals) and run.fills == tuple(fills) and run.equity == tuple(curve)
    assert [o.status for o in run.orders] == ["COMPLETE", "COMPLETE", "REJECTED"]
    assert len(run.trades) == 1 and run.trades[0].net == 146_000
    assert run.manifest.status == "running"
    writer._closing = True  # let the thread go (the "crashed" process would have taken it along)
    writer._wake.set()


def test_tables_of_a_run_still_marked_running_are_not_trusted(tmp_path: Path) -> None:
    """A crash between writing the tables and run.json: the reader rebuilds from events.jsonl."""
    writer, _ = write_sample(tmp_path)
    assert writer.close(ended_ns=T0, wall_ended_ns=2) is not None
    (writer.run_dir / MANIFEST).write_text(json.dumps({**json.loads((writer.run_dir / MANIFEST).read_text()),
                                                       "status": "running"}))
    (writer.run_dir / FILLS).write_bytes(b"PAR1 half a table")
    run = load_run(writer.run_dir)
    assert not run.complete and len(run.fills) == 2


def test_a_damaged_table_of_a_finished_run_names_the_file(tmp_path: Path) -> None:
    writer, _ = write_sample(tmp_path)
    assert writer.close(ended_ns=T0, wall_ended_ns=2) is not None
    (writer.run_dir / ORDERS).write_bytes(b"not parquet")
    with pytest.raises(RunFormatError, match=r"orders\.parquet: not a readable Parquet table"):
        load_run(writer.run_dir)
    write_table(writer.run_dir / ORDERS, SignalRow, [signal(1)])  # the wrong table
    with pytest.raises(RunFormatError, match=r"orders\.parquet: column\(s\) intent_id"):
        read_table(writer.run_dir / ORDERS, OrderRow)


@pytest.mark.parametrize(("document", "message"), [
    ("{not json", r"run\.json: not valid JSON"),
    ("[1, 2]", r"run\.json: expected a JSON object"),
    ('{"run_id": "x", "mode": "backtest", "status": "running", "initial_capital": 1}',
     r"run\.json: field 'started_ns' is missing"),
    ('{"run_id": "x", "mode": "backtest", "status": "running", "initial_capital": "1e7", "started_ns": 1}',
     r"run\.json: field 'initial_capital' must be int, got '1e7'"),
    ('{"run_id": "x", "mode": "sim", "status": "running", "initial_capital": 1, "started_ns": 1}',
     r"run\.json: field 'mode' must be backtest, paper or live"),
    ('{"run_id": "x", "mode": "paper", "status": "done", "initial_capital": 1, "started_ns": 1}',
     r"run\.json: field 'status' must be running, complete or failed"),
    ('{"run_id": "x", "mode": "paper", "status": "running", "initial_capital": 1, "started_ns": 1, '
     '"strategies": [{"strategy_id": "a", "colour": "red"}]}', r"run\.json: field 'strategies'"),
    ('{"run_id": "x", "mode": "paper", "status": "running", "initial_capital": 1, "started_ns": 1, '
     '"format_version": 9}', r"run\.json: field 'format_version' is 9.*upgrade"),
])
def test_a_malformed_manifest_names_the_file_and_the_field(tmp_path: Path, document: str, message: str) -> None:
    (tmp_path / MANIFEST).write_text(document)
    with pytest.raises(RunFormatError, match=message):
        load_run(tmp_path)


def test_a_folder_without_a_manifest_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunFormatError, match=r"run\.json: not found"):
        load_run(tmp_path)


def test_a_write_failure_is_reported_once_and_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs directory should be")
    reported: list[str] = []
    writer = RunWriter(blocker, manifest(), on_error=lambda what, error: reported.append(what))
    assert not writer.start()
    writer.append(signal(1))
    assert writer.close(ended_ns=T0, wall_ended_ns=1) is None
    assert reported == ["start"] and writer.dropped == 1


def test_a_failing_disk_mid_run_stops_the_record_not_the_caller(tmp_path: Path) -> None:
    reported: list[str] = []
    writer = RunWriter(tmp_path, manifest(), flush_seconds=0.05, on_error=lambda what, error: reported.append(what))
    assert writer.start()

    class Broken:
        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None: ...

        def close(self) -> None: ...

    writer._handle = Broken()
    for n in range(3):
        writer.append(signal(n))
    wait_for(lambda: writer.failed is not None)
    writer.append(signal(4))  # dropped, silently
    assert writer.close(ended_ns=T0, wall_ended_ns=1) is None
    assert reported == ["events"] and writer.dropped == 4


def test_a_row_that_cannot_be_encoded_is_dropped_alone(tmp_path: Path) -> None:
    reported: list[str] = []
    writer = RunWriter(tmp_path, manifest(), on_error=lambda what, error: reported.append(what))
    assert writer.start()
    writer.append(signal(1))
    writer.append(replace(signal(2), reason=object()))  # type: ignore[arg-type]
    writer.append(replace(signal(3), reason=object()))  # type: ignore[arg-type]
    writer.append(signal(4))
    run = writer.close(ended_ns=T0, wall_ended_ns=1)
    assert run is not None and [s.signal_id for s in run.signals] == ["S1", "S4"]
    assert reported == ["encode"] and writer.dropped == 2 and writer.failed is None


def test_the_queue_is_bounded(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, manifest(), flush_rows=10**9, flush_seconds=60, max_pending=5)
    assert writer.start()
    for n in range(8):
        writer.append(signal(n))
    assert writer.dropped == 3
    run = writer.close(ended_ns=T0, wall_ended_ns=1)
    assert run is not None and len(run.signals) == 5


def test_a_record_that_dropped_rows_is_not_marked_complete(tmp_path: Path) -> None:
    """review2: rows dropped (queue full) made a run folder that said "complete" with fills missing."""
    writer = RunWriter(tmp_path, manifest(), flush_rows=10**9, flush_seconds=60, max_pending=2)
    assert writer.start()
    for n in range(4):
        writer.append(signal(n))
    run = writer.close(ended_ns=T0, wall_ended_ns=1, stop_reason="end of data")
    assert run is not None and writer.dropped == 2
    on_disk = load_run(writer.run_dir).manifest
    assert on_disk.status == "failed" and run.manifest.status == "failed"
    assert "2 rows not recorded" in on_disk.stop_reason and on_disk.stop_reason.startswith("end of data")


def test_a_record_whose_disk_failed_mid_run_does_not_stay_running(tmp_path: Path) -> None:
    """review2: after an events.jsonl write error run.json kept saying "running" for a run that had stopped."""
    writer = RunWriter(tmp_path, manifest(), flush_seconds=0.05)
    assert writer.start()

    class Broken:
        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None: ...

        def close(self) -> None: ...

    writer._handle = Broken()
    writer.append(signal(1))
    wait_for(lambda: writer.failed is not None)
    assert writer.close(ended_ns=T0 + S, wall_ended_ns=1, stop_reason="end of data") is None
    on_disk = load_run(writer.run_dir)  # the space is back: run.json says what happened
    assert on_disk.manifest.status == "failed" and on_disk.manifest.ended_ns == T0 + S
    assert "No space left" in on_disk.manifest.stop_reason and not on_disk.complete


@pytest.mark.parametrize("damage", [{"price": "12.5"}, {"price": 100.5}, {"quantity": None}, {"price": 10**30},
                                    {"side": "HOLD"}, {"ts_ns": True}, {"tradingsymbol": 7}])
def test_a_line_with_a_value_of_the_wrong_type_is_a_bad_line(tmp_path: Path, damage: dict[str, object]) -> None:
    """review2: a damaged events.jsonl value ("12.5", null, 1e30) was taken as is and crashed round_trips (or the
    report later) with a bare TypeError; it is a bad line like a cut one."""
    writer, _ = write_sample(tmp_path)
    events = writer.run_dir / EVENTS
    wait_for(lambda: events.read_bytes().count(b"\n") == 14)
    extra = {"kind": "fill", **asdict(fill("FX", "X", 9, Side.BUY, 75, 100))}
    with open(events, "ab") as handle:
        handle.write(json.dumps({**extra, **damage}).encode() + b"\n")
    run = load_run(writer.run_dir)
    assert run.bad_lines == 1 and "FX" not in {f.fill_id for f in run.fills}
    assert len(run.trades) == 1 and run.trades[0].net == 146_000
    writer._closing = True
    writer._wake.set()


def test_a_table_with_nulls_names_the_file(tmp_path: Path) -> None:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    path = tmp_path / EQUITY
    pq.write_table(pa.table({"ts_ns": [1, None], "equity": [1, 2], "realized": [0, 0], "unrealized": [0, 0],
                             "charges": [0, 0], "day_pnl": [0, 0]}), path)
    with pytest.raises(RunFormatError, match=r"equity\.parquet: field 'ts_ns' must be a 64-bit integer"):
        read_table(path, EquityRow)


@pytest.mark.parametrize("wall", ["1e999", "-Infinity", "[1]", "\"soon\""])
def test_one_hostile_run_json_does_not_break_listing_the_others(tmp_path: Path, wall: str) -> None:
    """review2: a run.json with "wall_started_ns": 1e999 made list_runs (trader runs, find_run 'latest') die with
    OverflowError."""
    good = tmp_path / "20261120-091500-backtest-aaaaaa"
    good.mkdir()
    (good / MANIFEST).write_text(json.dumps({"run_id": good.name, "wall_started_ns": 5}))
    bad = tmp_path / "20261120-091500-backtest-bbbbbb"
    bad.mkdir()
    (bad / MANIFEST).write_text(f'{{"run_id": "x", "wall_started_ns": {wall}}}')
    assert set(list_runs(tmp_path)) == {good, bad}
    assert find_run("20261120-091500-backtest-a", tmp_path) == good


# --- round trips ------------------------------------------------------------------------------------------------


def test_round_trips_scale_in_partial_exit_and_flip_agree_with_the_position_book() -> None:
    orders = [order("A", 0, Side.BUY, signal_id="S1"), order("B", 1, Side.BUY, signal_id="S2"),
              order("C", 2, Side.SELL, reason="stop_loss", purpose="EXIT"),
              order("D", 3, Side.SELL, reason="flip"), order("E", 4, Side.BUY, reason="time_exit", purpose="EXIT")]
    fills = [fill("f1", "A", 0, Side.BUY, 50, 10_000, charges=1_001),
             fill("f2", "B", 1, Side.BUY, 25, 13_000, charges=999),
             fill("f2", "B", 1, Side.BUY, 25, 13_000, charges=999),  # a duplicate: booked once
             fill("f3", "C", 2, Side.SELL, 30, 9_000, charges=500),
             fill("f4", "D", 3, Side.SELL, 75, 8_000, charges=1_500),  # closes 45, opens a 30 short
             fill("f5", "E", 4, Side.BUY, 30, 7_000, charges=300),
             fill("g1", "X", 5, Side.BUY, 10, 500, charges=7, token=22)]  # a manual position, still open
    trades = round_trips(fills, orders)
    book = PositionBook()
    closed = []
    seen: set[str] = set()
    for f in fills:
        if f.fill_id in seen:
            continue
        seen.add(f.fill_id)
        c = book.apply(_contract(f), f.side, f.quantity, f.price, f.charges)
        if c is not None:
            closed.append(c)
    assert [t.net for t in trades] == [c.net for c in closed] and len(trades) == 2
    long_trade, short_trade = trades
    assert long_trade.direction == "long" and long_trade.quantity == 75
    assert long_trade.entry_price == round((50 * 10_000 + 25 * 13_000) / 75)
    assert long_trade.exit_price == round((30 * 9_000 + 45 * 8_000) / 75)
    assert long_trade.gross == 30 * 9_000 + 45 * 8_000 - (50 * 10_000 + 25 * 13_000)
    assert long_trade.charges == 1_001 + 999 + 500 + 1_500 * 45 // 75
    assert (long_trade.signal_id, long_trade.exit_reason) == ("S1", "flip")
    assert (long_trade.entry_intent_id, long_trade.exit_intent_id) == ("A", "D")
    assert (long_trade.entry_ns, long_trade.exit_ns) == (T0, T0 + 3 * S)
    assert short_trade.direction == "short" and short_trade.quantity == 30
    assert (short_trade.entry_price, short_trade.exit_price) == (8_000, 7_000)
    assert short_trade.gross == 30 * 1_000
    assert short_trade.charges == 1_500 - 1_500 * 45 // 75 + 300
    assert (short_trade.entry_intent_id, short_trade.exit_reason) == ("D", "time_exit")
    assert short_trade.signal_id == ""  # the flip's intent carried no signal
    assert sum(t.net for t in trades) == book.realized - book.charges + 7  # the open manual buy's charges aside


# --- trader runs ------------------------------------------------------------------------------------------------


def test_trader_runs_lists_finished_and_crashed_runs(tmp_path: Path, clean_env: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from trader.cli import main  # noqa: PLC0415

    clean_env.setenv("TRADER_DATA_DIR", str(tmp_path))
    assert main(["runs"]) == 0
    assert "no runs in" in capsys.readouterr().out
    runs = tmp_path / "runs"
    done, _ = write_sample(runs)
    assert done.close(ended_ns=T0, wall_ended_ns=2, final=equity(2, CAPITAL + 150_000)) is not None
    crashed = RunWriter(runs, manifest("20261121-091500-paper-123456", mode="paper", wall_started_ns=9),
                        flush_seconds=0.05)
    assert crashed.start()
    crashed.append(equity(0, CAPITAL - 2_550))
    wait_for(lambda: (crashed.run_dir / EVENTS).read_bytes().count(b"\n") == 1)
    crashed._closing = True
    crashed._wake.set()
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RUN", "MODE", "STATUS", "STRATEGIES", "TRADES", "NET", "P&L", "(INR)"]
    assert lines[1].split() == ["20261120-091500-backtest-abcdef", "backtest", "complete", "ema", "1", "1,500.00"]
    assert lines[2].split() == ["20261121-091500-paper-123456", "paper", "running?", "ema", "0", "-25.50"]
