"""The tick recorder (issue #11): what paper and live receive, recorded to Parquet, replays as the same ticks.

Every day and price is generated here (seeded); nothing depends on today's date, and nothing sleeps: the writer
thread is waited for by joining it, a killed subprocess by reading its output.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from trader.actors.tick_recorder import TickRecorder
from trader.adapters.replay import recording
from trader.adapters.replay.market import ReplayMarket
from trader.adapters.replay.sources import ReplayConfig, tick_files
from trader.adapters.replay.tick_writer import Batch, TickWriter
from trader.app import App
from trader.bus import EventBus
from trader.clock import SimClock
from trader.config import load_settings
from trader.events import Heartbeat, Tick
from trader.logging import configure_logging
from trader.market.calendar import IST, MarketCalendar, ist_ns
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, IndexInstrument, OptionContract, OptionType

from helpers import captured_logs

CALENDAR = MarketCalendar()
DAY = date(2026, 11, 27)  # a Friday, a trading day
NEXT_DAY = date(2026, 11, 30)  # the Monday after
SPEC = FALLBACK_UNDERLYINGS["NIFTY"]
INDEX = IndexInstrument(exchange=SPEC.spot_exchange, tradingsymbol=SPEC.spot_symbol, name=SPEC.name,
                        instrument_token=SPEC.spot_token, tick_size=SPEC.tick_size_paise)
CONTRACTS = tuple(
    OptionContract(exchange="NFO", tradingsymbol=f"NIFTY26DEC{strike}{kind.value}", underlying="NIFTY",
                   expiry=date(2026, 12, 29), strike=strike * 100, option_type=kind, lot_size=75, tick_size=5,
                   instrument_token=(1_000 + i) << 8 | 2)
    for i, (strike, kind) in enumerate((s, k) for s in (25_900, 26_000, 26_100) for k in OptionType))
TOKENS = (INDEX.instrument_token, *(c.instrument_token for c in CONTRACTS))


@pytest.fixture(autouse=True)
def quiet() -> None:
    configure_logging("WARNING", io.StringIO())


def master() -> InstrumentMaster:
    instruments = InstrumentMaster()
    instruments.add_index(INDEX)
    for contract in CONTRACTS:
        instruments.add(contract)
    return instruments


def open_ns(day: date = DAY) -> int:
    return ist_ns(day, time(9, 15))


def make_ticks(count: int, *, day: date = DAY, seed: int = 3, step_ms: int = 500) -> list[Tick]:
    """``count`` ticks cycling over the instruments, in time order; prices on the 5-paise grid (the index anywhere,
    up to a crore of rupees, to test the paise), zero bid/ask now and then (no quote)."""
    rng = random.Random(seed)
    ticks = []
    start = open_ns(day)
    spacing = step_ms * 1_000_000 // len(TOKENS)  # each instrument ticks once a step
    for n in range(count):
        token = TOKENS[n % len(TOKENS)]
        ts = start + n * spacing + rng.randrange(0, 1_000)
        if token == INDEX.instrument_token:
            ticks.append(Tick(ts_ns=ts, instrument_token=token, last_price=rng.randrange(1, 10**11), exchange_ts_ns=ts))
            continue
        last = 5 * rng.randrange(1, 2_000_000)
        bid = 0 if rng.random() < 0.1 else max(last - 5 * rng.randrange(0, 5), 5)
        ask = 0 if rng.random() < 0.1 else last + 5 * rng.randrange(0, 5)
        ticks.append(Tick(ts_ns=ts, instrument_token=token, last_price=last, volume=rng.randrange(0, 10**9),
                          oi=rng.randrange(0, 10**8), bid=bid, bid_qty=rng.randrange(0, 10**6), ask=ask,
                          ask_qty=rng.randrange(0, 10**6), exchange_ts_ns=ts - rng.randrange(0, 10**9),
                          tick_id=n + 1))
    return ticks


def bare(ticks: Sequence[Tick]) -> list[tuple[int, ...]]:
    """What the replay gives back: every field but the exchange time (the replay's is the event time) and the id."""
    return [(t.ts_ns, t.instrument_token, t.last_price, t.volume, t.oi, t.bid, t.bid_qty, t.ask, t.ask_qty)
            for t in ticks]


async def replayed(data: Path, **config: object) -> tuple[list[Tick], ReplayMarket]:
    clock = SimClock(open_ns() - 3_600_000_000_000)
    market = ReplayMarket(clock, CALENDAR, ReplayConfig(data=data, **config))  # type: ignore[arg-type]
    await market.start(InstrumentMaster())
    ticks = [tick async for batch in market.stream() for tick in batch]
    if market.failure is not None:
        raise market.failure
    return ticks, market


def write_day(writer: TickWriter, ticks: Sequence[Tick], day: date = DAY, *, batch: int = 100) -> list[Path]:
    instruments = tuple(master().registered())
    paths = [writer.write(Batch(day, list(ticks[i:i + batch]), instruments if i == 0 else None))
             for i in range(0, len(ticks), batch)]
    return [path for path in paths if path is not None]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the files ------------------------------------------------------------------------------------------------


def test_the_instrument_dump_reads_back_as_the_same_master(tmp_path: Path) -> None:
    path = tmp_path / "instruments.csv"
    recording.write_dump(path, {}, master().registered())
    again = InstrumentMaster.from_kite_csv(path.read_text())
    assert again.registered() == master().registered()
    assert not list(tmp_path.glob(".*.tmp"))


async def test_recorded_ticks_replay_as_the_same_ticks_to_the_paisa(tmp_path: Path) -> None:
    ticks = make_ticks(2_000)
    writer = TickWriter(tmp_path)
    parts = write_day(writer, ticks)
    folder = tmp_path / DAY.isoformat()
    assert [p.name for p in parts] == [f"part-{n:06d}.parquet" for n in range(1, 21)]
    # The parts replay as they are (a killed run's), found with the day's dump without --instruments ...
    from_parts, _ = await replayed(folder)
    assert bare(from_parts) == bare(ticks)
    # ... and so does the compacted day; the parts are gone.
    target = recording.compact(folder)
    assert target == folder / "ticks-000001-000020.parquet"
    assert sorted(p.name for p in folder.iterdir()) == ["instruments.csv", target.name]
    from_day, market = await replayed(folder)
    assert bare(from_day) == bare(ticks) and market.ticks_read == len(ticks)
    table = pq.read_table(target)
    assert table.schema.field("ts").type.tz == "UTC"
    assert table.column("tradingsymbol").to_pylist()[:2] == [INDEX.tradingsymbol, CONTRACTS[0].tradingsymbol]
    assert table.column("exchange_ts").to_pylist()[1].value == ticks[1].exchange_ts_ns  # kept, for the record
    no_quote = [i for i, t in enumerate(ticks) if t.instrument_token != INDEX.instrument_token and t.bid == 0]
    assert no_quote and table.column("bid")[no_quote[0]].as_py() is None  # 0 = no quote, written as null


async def test_a_restart_on_the_same_day_adds_a_file_and_never_rewrites_the_first(tmp_path: Path) -> None:
    ticks = make_ticks(600)
    first = TickWriter(tmp_path)
    write_day(first, ticks[:300])
    first.close()
    folder = tmp_path / DAY.isoformat()
    done = folder / "ticks-000001-000003.parquet"
    before = digest(done)
    second = TickWriter(tmp_path)
    assert [p.name for p in write_day(second, ticks[300:])] == ["part-000004.parquet", "part-000005.parquet",
                                                               "part-000006.parquet"]
    second.close()
    assert digest(done) == before
    assert sorted(p.name for p in folder.glob("*.parquet")) == [done.name, "ticks-000004-000006.parquet"]
    assert bare((await replayed(folder))[0]) == bare(ticks)


async def test_a_restarted_session_re_sending_the_past_is_not_recorded_twice(tmp_path: Path) -> None:
    """review2: a paper daemon on the built-in market, killed (-9) and restarted on the same day, re-sends the session
    from its start; the day's folder held those times twice and the replay fed every one of them twice."""
    ticks = make_ticks(600)
    # Two instruments at the very time the killed run stopped: it had recorded only the first of them.
    ticks[300] = replace(ticks[300], ts_ns=ticks[299].ts_ns)
    killed = TickWriter(tmp_path)
    write_day(killed, ticks[:300])  # parts only: no close, no compaction (kill -9)
    restarted = TickWriter(tmp_path)
    write_day(restarted, ticks[100:])  # the session again from an earlier time
    restarted.close()
    assert restarted.ticks_already_recorded == 200
    assert bare((await replayed(tmp_path / DAY.isoformat()))[0]) == bare(ticks)


async def test_a_day_rolls_into_its_own_folder_and_the_finished_one_is_compacted(tmp_path: Path) -> None:
    friday, monday = make_ticks(200), make_ticks(200, day=NEXT_DAY, seed=4)
    writer = TickWriter(tmp_path)
    write_day(writer, friday)
    assert list((tmp_path / DAY.isoformat()).glob("part-*"))
    write_day(writer, monday, NEXT_DAY)
    assert [p.name for p in (tmp_path / DAY.isoformat()).glob("*.parquet")] == ["ticks-000001-000002.parquet"]
    assert len(list((tmp_path / NEXT_DAY.isoformat()).glob("part-*"))) == 2  # still open
    writer.close()
    # The whole recording: every day's dump found and merged, the days in order.
    assert bare((await replayed(tmp_path))[0]) == bare(friday + monday)


async def test_parts_a_compacted_file_already_holds_are_never_read_twice(tmp_path: Path) -> None:
    """Killed between the compacted file's rename and the removal of its parts: both are on disk."""
    ticks = make_ticks(300)
    writer = TickWriter(tmp_path)
    parts = write_day(writer, ticks)
    saved = {part: part.read_bytes() for part in parts}
    folder = tmp_path / DAY.isoformat()
    recording.compact(folder)
    for part, data in saved.items():
        part.write_bytes(data)
    assert [p.name for p in tick_files(folder)] == ["ticks-000001-000003.parquet"]
    assert bare((await replayed(folder))[0]) == bare(ticks)
    assert recording.recover(tmp_path) == []  # nothing new to compact: the stale parts are removed
    assert sorted(p.name for p in folder.iterdir()) == ["instruments.csv", "ticks-000001-000003.parquet"]


def test_a_later_run_listing_other_tokens_records_next_to_the_day(tmp_path: Path) -> None:
    writer = TickWriter(tmp_path)
    write_day(writer, make_ticks(100))
    writer.close()
    moved = OptionContract(exchange="NFO", tradingsymbol=CONTRACTS[0].tradingsymbol, underlying="NIFTY",
                           expiry=CONTRACTS[0].expiry, strike=CONTRACTS[0].strike, option_type=OptionType.CE,
                           lot_size=75, tick_size=5, instrument_token=9_999 << 8 | 2)
    later = TickWriter(tmp_path)
    with captured_logs() as lines:
        path = later.write(Batch(DAY, [Tick(open_ns() + 10**12, moved.instrument_token, 500)], (INDEX, moved)))
    later.close()
    assert path is not None
    assert path.parent.name == f"{DAY.isoformat()}-2"
    assert [line["event"] for line in lines] == ["recorder_day_taken"]
    again = InstrumentMaster.from_kite_csv((path.parent / "instruments.csv").read_text())
    assert again.contract(moved.tradingsymbol) == moved


def test_unsorted_parts_are_sorted_when_compacted(tmp_path: Path) -> None:
    ticks = make_ticks(300)
    writer = TickWriter(tmp_path)
    write_day(writer, ticks[150:], batch=150)
    write_day(writer, ticks[:150], batch=150)
    target = recording.compact(tmp_path / DAY.isoformat())
    assert target is not None
    assert pq.read_table(target).column("ts").cast("int64").to_pylist() == [t.ts_ns for t in ticks]


# --- the actor ----------------------------------------------------------------------------------------------


class FakeWall:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def recorder(root: Path, **options: object) -> tuple[TickRecorder, FakeWall]:
    wall = FakeWall()
    actor = TickRecorder(EventBus(), master(), root, monotonic_ns=wall, **options)  # type: ignore[arg-type]
    return actor, wall


async def test_the_last_ticks_are_written_at_stop(tmp_path: Path) -> None:
    actor, _ = recorder(tmp_path, batch_rows=1_000)
    await actor.on_start()
    ticks = make_ticks(250)
    for tick in ticks:
        actor.record(tick)
    assert actor.ticks_recorded == 0  # all still in memory: not a full batch, not old
    await actor.close()
    folder = tmp_path / DAY.isoformat()
    assert sorted(p.name for p in folder.iterdir()) == ["instruments.csv", "ticks-000001-000001.parquet"]
    assert actor.ticks_recorded == 250 and actor.ticks_dropped == 0
    assert bare((await replayed(folder))[0]) == bare(ticks)


async def test_a_batch_goes_when_full_or_old(tmp_path: Path) -> None:
    actor, wall = recorder(tmp_path, batch_rows=100, batch_seconds=5.0)
    ticks = make_ticks(130)
    for tick in ticks[:100]:
        actor.record(tick)
    assert actor.ticks_recorded == 100  # full
    for tick in ticks[100:110]:
        actor.record(tick)
    wall.ns += 4_999_999_999
    await actor.handle(Heartbeat(ts_ns=0, counters={}))
    assert actor.ticks_recorded == 100
    wall.ns += 1
    await actor.handle(Heartbeat(ts_ns=0, counters={}))  # a quiet feed: the heartbeat sends the old batch
    assert actor.ticks_recorded == 110
    actor.record(ticks[110])
    wall.ns += 5_000_000_000
    actor.record(ticks[111])  # old on a tick too
    assert actor.ticks_recorded == 112
    await actor.close()


async def test_a_heartbeat_past_midnight_compacts_the_finished_day(tmp_path: Path) -> None:
    actor, _ = recorder(tmp_path, batch_rows=100)
    await actor.on_start()
    for tick in make_ticks(250):
        actor.record(tick)
    folder = tmp_path / DAY.isoformat()
    await actor.handle(Heartbeat(ts_ns=ist_ns(DAY, time(23, 59, 59)), counters={}))
    await actor.handle(Heartbeat(ts_ns=ist_ns(NEXT_DAY, time(0, 0, 1)), counters={}))
    await asyncio.wait_for(asyncio.to_thread(actor.writer.wait_written), 60)  # compacted now, the recorder running
    assert [p.parent.name for p in actor.writer.compacted] == [DAY.isoformat()]
    assert sorted(p.name for p in folder.iterdir()) == ["instruments.csv", "ticks-000001-000003.parquet"]
    assert not (tmp_path / NEXT_DAY.isoformat()).exists()  # no ticks, no folder
    await actor.close()


async def test_a_full_queue_drops_batches_counts_them_and_never_blocks(tmp_path: Path) -> None:
    actor, _ = recorder(tmp_path, batch_rows=50, max_batches=2)
    ticks = make_ticks(290, step_ms=1_000)
    with captured_logs() as lines:
        for tick in ticks[:250]:  # the writer thread is not started: nothing drains the queue
            actor.record(tick)
    assert actor.writer._queue.qsize() == 2  # memory bounded: 2 queued batches + the one being filled
    assert (actor.batches_dropped, actor.ticks_dropped, actor.ticks_recorded) == (3, 150, 100)
    dropped = [line for line in lines if line["event"] == "recorder_batch_dropped"]
    assert len(dropped) == 3 and dropped[-1]["ticks_dropped"] == 150 and dropped[-1]["level"] == "error"
    await actor.on_start()
    for tick in ticks[250:290]:  # less than a batch: written at stop (close waits for room in the queue)
        actor.record(tick)
    await actor.close()
    got, market = await replayed(tmp_path / DAY.isoformat(), gap_ns=10_000_000_000)
    assert bare(got) == bare(ticks[:100] + ticks[250:290])
    # The hole is a gap for every instrument (the replay's gap check reports it; the dump held the listing).
    assert market.gaps.count == len(TOKENS)


# --- a crash ----------------------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_tick_recorder import recorder_child
    import io
    from trader.logging import configure_logging
    configure_logging("ERROR", io.StringIO())  # stdout carries the child's reports only

    recorder_child(Path({root!r}))
""")


MONDAY_TICKS = 5_000


def recorder_child(root: Path) -> None:
    """The killed process: Friday recorded whole and compacted, then Monday in parts until killed."""
    actor = TickRecorder(EventBus(), master(), root, batch_rows=100, monotonic_ns=lambda: 0)
    actor.writer.start()
    for tick in make_ticks(300):
        actor.record(tick)
    monday = make_ticks(MONDAY_TICKS, day=NEXT_DAY, seed=4)
    for n, tick in enumerate(monday, start=1):
        actor.record(tick)  # the first one rolls the day
        if n % 100 == 0:
            actor.writer.wait_written()  # on disk: the parent may count on it
            friday = actor.writer.compacted[0] if actor.writer.compacted else "-"
            print(f"written {actor.ticks_recorded} {friday}", flush=True)
    threading.Event().wait()  # not killed yet: wait for it


def test_a_killed_recorder_leaves_readable_parts_and_an_intact_day(tmp_path: Path) -> None:
    root = tmp_path / "ticks"
    script = CHILD.format(tests=str(Path(__file__).parent), root=str(root))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.stdout is not None
    friday_file: Path | None = None
    friday_digest = ""
    reported = []
    for _ in range(12):
        words = child.stdout.readline().split()
        assert words[0] == "written", words
        reported.append(int(words[1]))
        if friday_file is None and words[2] != "-":
            friday_file = Path(words[2])
            friday_digest = digest(friday_file)
    child.send_signal(signal.SIGKILL)  # somewhere in the next parts: maybe in the middle of writing one
    child.wait()
    reports = child.stdout.read().split("\n")  # what the child printed before it died
    child.stdout.close()
    written = max(reported + [int(line.split()[1]) for line in reports if line.startswith("written")])
    assert friday_file is not None and digest(friday_file) == friday_digest
    monday = root / NEXT_DAY.isoformat()
    parts = sorted(monday.glob("part-*.parquet"))
    on_disk = [ts for path in parts for ts in pq.read_table(path).column("ts").cast("int64").to_pylist()]
    expected = make_ticks(MONDAY_TICKS, day=NEXT_DAY, seed=4)
    assert len(parts) >= 9 and on_disk == [t.ts_ns for t in expected[:len(on_disk)]]  # whole parts, in order
    # What the child reported written is there; of what it recorded after, at most the one batch in flight is lost.
    assert len(on_disk) - (written - 300) in (0, 100)
    # The next start compacts what the killed run left; the whole recording replays.
    assert [p.parent.name for p in recording.recover(root)] == [NEXT_DAY.isoformat()]
    assert digest(friday_file) == friday_digest
    got = asyncio.run(replayed(root))[0]
    assert bare(got) == bare(make_ticks(300) + expected[:len(on_disk)])


# --- the daemon ---------------------------------------------------------------------------------------------


async def test_a_paper_day_recorded_replays_in_a_backtest_with_the_same_ticks(tmp_path: Path) -> None:
    start = datetime(2026, 11, 20, 9, 0, tzinfo=IST).isoformat()  # Fri 20 Nov 2026, a normal session
    sim = {"days": 1, "start": start, "seed": 7, "speed": 0, "tick_interval_ms": 30_000,
           "chain_interval_ms": 60_000, "strikes_each_side": 2}
    paper = App(load_settings({"mode": "paper", "data_dir": str(tmp_path / "paper"), "sim": sim,
                               # As fast as the machine goes (speed 0): on a loaded machine the writer falls behind a
                               # market that fast, so the queue is deep enough never to drop (drops: tested above).
                               "recorder": {"batch_rows": 500, "max_batches": 1_000}}))
    seen: list[Tick] = []
    paper.bus.tap(lambda event: seen.append(event) if type(event) is Tick else None)
    result = await paper.run(install_signal_handlers=False)
    assert result.counters["ticks_in"] == len(seen) > 5_000
    assert paper.tick_recorder is not None and paper.tick_recorder.ticks_dropped == 0
    day = tmp_path / "paper" / "ticks" / "paper" / "2026-11-20"
    parts = paper.tick_recorder.writer.parts_written
    assert [p.name for p in day.glob("*.parquet")] == [f"ticks-000001-{parts:06d}.parquet"]
    assert paper.tick_recorder.writer.parts_written > 10 and (day / "instruments.csv").is_file()

    backtest = App(load_settings({"mode": "backtest", "data_dir": str(tmp_path / "bt"), "sim": {"days": 1}}),
                   replay=ReplayConfig(data=day))
    assert backtest.tick_recorder is None  # off in backtest
    replayed_ticks: list[Tick] = []
    backtest.bus.tap(lambda event: replayed_ticks.append(event) if type(event) is Tick else None)
    again = await backtest.run(install_signal_handlers=False)
    assert again.counters["ticks_in"] == result.counters["ticks_in"]
    assert bare(replayed_ticks) == bare(seen)
