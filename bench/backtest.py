"""Backtest benchmark, run by ``make bench`` as ``.venv/bin/python bench/backtest.py [--quick] [--json] [--verbose]``.

One run builds one synthetic NIFTY day as a Parquet file in the replay schema (docs/data.md) with its Kite instrument
dump (seeded; outside every timing): the index ticks once a second from 09:15 to 15:30 IST (22,500 ticks) and 40
options (20 strikes × CE/PE around the money, Black-Scholes premiums on the 0.05-rupee grid, a quoted book, volume and
OI) tick with it: 922,500 rows. ``--quick`` keeps the first 30 minutes (73,800 rows).

Each engine then runs in a subprocess of its own, so its peak RSS (``VmHWM`` of that process) is its own, and
its ticks/s are ticks per CPU second of that process (``time.process_time``, all its threads): on a shared machine
wall time measures the neighbours' load as much as the engine (the wall-clock figures are printed beside, and kept in
the JSON):

* ``ours``: ``trader.app.App(settings, replay=ReplayConfig(...))`` in backtest mode with the EMA crossover (the default
  strategy; ₹10 lakh of capital so the risk budget lets it trade), as ``trader run --data`` runs it; timed from the
  App's construction (which reads the file's first row) to the run's result: reading, checking and decoding the file,
  the bus, the six actors, the paper broker. ticks/s = the feed's ``ticks_in`` ÷ that time.
* baseline for ours: ``ReplayMarket.stream()`` over the same file alone (read, check, decode, batch, clock), no actors;
  and for RSS an interpreter that imported the same modules and ran nothing.
* ``nautilus`` (NautilusTrader, when installed: the optional ``bench`` extra): the same rows as nautilus data (the index
  as ``TradeTick``s, each option row as one ``QuoteTick`` of its bid and ask, or a ``TradeTick`` when its book is
  empty), 41 ``Equity`` instruments on one cash venue in INR, and an EMA(9)/EMA(21) crossover on internally aggregated
  1-minute bars of the index that buys the nearest-the-money CE (PE) on a bullish (bearish) cross and sells it on the
  opposite cross. Its ticks/s counts ``engine.run()`` alone: the Parquet → nautilus objects conversion is timed
  apart and NOT counted (the comparison favours the peer).
* ``backtrader`` (when installed): the same rows as 41 data feeds (one bar per row: open = high = low = close = last),
  the index resampled to 1-minute bars, ``bt.ind.EMA(9)``/``EMA(21)`` with ``CrossOver``, the same entries and exits
  as market orders. Its ticks/s counts ``cerebro.run()`` alone (feeds from Python lists; the conversion not counted).

What is comparable: the same rows, the same order, one event per row, an EMA(9)/EMA(21) crossover on 1-minute index
bars trading ATM options, every engine in one process on one core. What is not: ours also runs the risk gate (limits,
margins, charges), a confidence score with confirmation bars, stop-loss/target/time exits, per-tick validation of the
data with file/row/field errors, the ledger and the metrics actors; the peers' strategies are the plain crossover.

Standard output: one line per figure with its baseline measured in the same run and the ratio (``bench/benchlib.py``):
ours against reading the file alone; ours' peak RSS against the idle interpreter; then, per peer installed, ours
against the peer (ticks/s and peak RSS: the targets are ≥ 2× NautilusTrader's ticks/s and < 200 MB). Context, the
peers' versions and the detail go to standard error. ``--child ENGINE --data DIR`` is the internal per-engine entry.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as wall_time
from pathlib import Path
from typing import Any

from benchlib import Figure, emit, note
from peers import Stopwatch

# numpy, scipy and pyarrow are imported where they are used: an engine's process imports only what that engine runs,
# so its peak RSS is its own.

SEED = 20_261_127
DAY = date(2026, 11, 27)  # a Friday, a normal NSE session
EXPIRY = date(2026, 12, 1)  # the next Tuesday: NIFTY's weekly expiry
OPEN = wall_time(9, 15)
FULL_SECONDS = 22_500  # 09:15 → 15:30
QUICK_SECONDS = 1_800  # 09:15 → 09:45: 30 one-minute bars, enough for EMA(21) to cross
SPOT_TOKEN = 256_265
SPOT_PAISE = 2_600_000
STRIKE_STEP = 50
STRIKES_EACH_SIDE = 10  # 20 strikes × CE/PE = 40 options
LOT = 65
VOLATILITY = 0.13  # the premiums' implied volatility (annual)
SPOT_VOLATILITY = 0.16  # the index's realised volatility in the random walk (annual)
RATE = 0.065
CAPITAL_RUPEES = 1_000_000.0
ENGINES = ("ours", "ours-read", "idle", "nautilus", "backtrader")
PEERS = {"nautilus": ("nautilus_trader", "NautilusTrader"), "backtrader": ("backtrader", "backtrader")}
KITE_HEADER = ("instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
               "instrument_type,segment,exchange")
TARGET_RATIO_NAUTILUS = 2.0
TARGET_RSS_MB = 200.0


# -- the day ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Option:
    token: int
    symbol: str
    strike: int  # rupees
    kind: str  # "CE" | "PE"


def options() -> list[Option]:
    atm = SPOT_PAISE // 100
    out = []
    for i, strike in enumerate(range(atm - STRIKE_STEP * STRIKES_EACH_SIDE, atm + STRIKE_STEP * STRIKES_EACH_SIDE,
                                     STRIKE_STEP)):
        for j, kind in enumerate(("CE", "PE")):
            token = (50_000 + 2 * i + j) << 8 | 2  # NFO segment, as Kite's tokens are made
            out.append(Option(token, f"NIFTY{EXPIRY:%y}{EXPIRY.strftime('%b').upper()}{strike}{kind}", strike, kind))
    return out


def dump_text(contracts: Sequence[Option]) -> str:
    rows = [KITE_HEADER]
    for o in contracts:
        rows.append(f"{o.token},{o.token >> 8},{o.symbol},NIFTY,0,{EXPIRY.isoformat()},{o.strike},0.05,{LOT},{o.kind},"
                    "NFO-OPT,NFO")
    return "\n".join(rows) + "\n"


def open_ns() -> int:
    from trader.market.calendar import ist_ns  # noqa: PLC0415 - the parent needs nothing else of trader

    return ist_ns(DAY, OPEN)


def build_day(out: Path, seconds: int) -> int:
    """Writes ``out/ticks.parquet`` and ``out/instruments.csv``; returns the number of rows."""
    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    from scipy.special import ndtr  # noqa: PLC0415

    rng = np.random.default_rng(SEED)
    contracts = options()
    start = open_ns()
    # One timestamp a second (with µs jitter inside the second): the index row, then the 40 options' rows.
    ts = start + np.arange(seconds, dtype=np.int64) * 1_000_000_000 + rng.integers(0, 1_000_000, seconds) * 1_000
    step_sd = SPOT_VOLATILITY / math.sqrt(252 * 22_500)
    spot = SPOT_PAISE * np.exp(np.cumsum(rng.normal(0.0, step_sd, seconds)))
    spot_paise = (np.round(spot / 5) * 5).astype(np.int64)  # the index's 0.05 grid
    expiry_close = datetime(EXPIRY.year, EXPIRY.month, EXPIRY.day, 15, 30)
    years = ((expiry_close - datetime(DAY.year, DAY.month, DAY.day, 9, 15)).total_seconds()
             - np.arange(seconds)) / (365 * 86_400)
    s = spot / 100
    sd = VOLATILITY * np.sqrt(years)
    n = len(contracts) + 1
    rows = seconds * n
    cols: dict[str, Any] = {
        "ts": np.repeat(ts, n),
        "instrument_token": np.tile(np.array([SPOT_TOKEN, *(o.token for o in contracts)], dtype=np.int64), seconds),
        "last_price": np.zeros(rows, dtype=np.int64),
        "bid": np.zeros(rows, dtype=np.int64),
        "ask": np.zeros(rows, dtype=np.int64),
        "bid_qty": np.zeros(rows, dtype=np.int64),
        "ask_qty": np.zeros(rows, dtype=np.int64),
        "volume": np.zeros(rows, dtype=np.int64),
        "oi": np.zeros(rows, dtype=np.int64),
    }
    cols["last_price"][0::n] = spot_paise
    for k, o in enumerate(contracts, start=1):
        d1 = (np.log(s / o.strike) + (RATE + VOLATILITY ** 2 / 2) * years) / sd
        d2 = d1 - sd
        discount = o.strike * np.exp(-RATE * years)
        premium = s * ndtr(d1) - discount * ndtr(d2) if o.kind == "CE" else discount * ndtr(-d2) - s * ndtr(-d1)
        last = np.maximum(np.round(premium * 20) * 5, 5).astype(np.int64)  # paise on the 5-paise grid, ≥ 0.05
        half = 5 * rng.integers(1, 4, seconds)
        bid = last - half
        cols["last_price"][k::n] = last
        cols["bid"][k::n] = np.where(bid > 0, bid, 0)
        cols["ask"][k::n] = last + half
        cols["bid_qty"][k::n] = LOT * rng.integers(1, 40, seconds)
        cols["ask_qty"][k::n] = LOT * rng.integers(1, 40, seconds)
        cols["volume"][k::n] = np.cumsum(LOT * rng.integers(0, 20, seconds))
        cols["oi"][k::n] = LOT * rng.integers(50_000, 60_000, seconds)
    rupees = {name: pa.array(cols[name] / 100, type=pa.float64()) for name in ("last_price", "bid", "ask")}
    table = pa.table({
        "ts": pa.array(cols["ts"], type=pa.int64()).cast(pa.timestamp("ns", tz="Asia/Kolkata")),
        "instrument_token": pa.array(cols["instrument_token"]),
        "last_price": rupees["last_price"],
        # an empty book side is null (no quote), as a recorder writes it
        "bid": pa.array(cols["bid"] / 100, mask=cols["bid"] == 0, type=pa.float64()),
        "ask": pa.array(cols["ask"] / 100, mask=cols["ask"] == 0, type=pa.float64()),
        **{name: pa.array(cols[name]) for name in ("bid_qty", "ask_qty", "volume", "oi")},
    })
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "ticks.parquet", row_group_size=65_536)
    (out / "instruments.csv").write_text(dump_text(contracts))
    return rows


# -- the engines, each in its own process -----------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (reset by exec), not ``ru_maxrss``, which Linux carries over from the parent
    through fork and exec (a child of the parent that built the day would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux (elsewhere: an upper bound)


def _quiet_logs() -> None:
    from trader.logging import configure_logging  # noqa: PLC0415

    configure_logging("WARNING", io.StringIO())


def child_ours(data: Path, state: Path) -> dict[str, Any]:
    from trader.adapters.replay.sources import ReplayConfig  # noqa: PLC0415 - the child imports what it runs
    from trader.app import App  # noqa: PLC0415
    from trader.config import load_settings  # noqa: PLC0415

    _quiet_logs()
    settings = load_settings({"mode": "backtest", "data_dir": str(state), "sim": {"days": 1},
                              "risk": {"initial_capital": CAPITAL_RUPEES}})

    async def run() -> tuple[dict[str, float], dict[str, int]]:
        watch = Stopwatch()
        app = App(settings, replay=ReplayConfig(data=data))
        result = await app.run(install_signal_handlers=False)
        return watch.read(), result.counters

    times, counters = _run_loop(run())
    return {"ticks": counters["ticks_in"], **times, "signals": counters["signals"],
            "orders": counters["orders"], "fills": counters["fills"], "invalid": counters["ticks_invalid"],
            "version": importlib.metadata.version("trader")}


def child_ours_read(data: Path) -> dict[str, Any]:
    from trader.adapters.replay.market import ReplayMarket  # noqa: PLC0415
    from trader.adapters.replay.sources import ReplayConfig, first_tick_ns  # noqa: PLC0415
    from trader.clock import SimClock  # noqa: PLC0415
    from trader.market.calendar import MarketCalendar  # noqa: PLC0415
    from trader.market.instrument_master import InstrumentMaster  # noqa: PLC0415

    _quiet_logs()

    async def run() -> tuple[dict[str, float], int]:
        watch = Stopwatch()
        config = ReplayConfig(data=data)
        market = ReplayMarket(SimClock(first_tick_ns(config)), MarketCalendar(), config)
        await market.start(InstrumentMaster())
        ticks = 0
        async for batch in market.stream():
            ticks += len(batch)
        if market.failure is not None:
            raise market.failure
        return watch.read(), ticks

    times, ticks = _run_loop(run())
    return {"ticks": ticks, **times, "version": importlib.metadata.version("trader")}


def child_idle() -> dict[str, Any]:
    """The RSS floor: the interpreter with the modules ``ours`` imports, nothing run."""
    import trader.adapters.replay.market  # noqa: PLC0415
    import trader.app  # noqa: PLC0415, F401

    return {"ticks": 0, "seconds": 0.0, "cpu_seconds": 0.0, "version": importlib.metadata.version("trader")}


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _read_rows(data: Path) -> dict[str, list[Any]]:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    table = pq.read_table(data / "ticks.parquet")
    return {
        "ts": table.column("ts").cast(pa.int64()).to_pylist(),
        "token": table.column("instrument_token").to_pylist(),
        "last": table.column("last_price").to_pylist(),
        "bid": table.column("bid").fill_null(0.0).to_pylist(),
        "ask": table.column("ask").fill_null(0.0).to_pylist(),
        "bid_qty": table.column("bid_qty").to_pylist(),
        "ask_qty": table.column("ask_qty").to_pylist(),
    }


def child_nautilus(data: Path) -> dict[str, Any]:
    from peers import run_nautilus  # noqa: PLC0415 - imported only when the peer is installed

    return run_nautilus(data, _read_rows(data), options(), SPOT_TOKEN, LOT, CAPITAL_RUPEES)


def child_backtrader(data: Path) -> dict[str, Any]:
    from peers import run_backtrader  # noqa: PLC0415

    return run_backtrader(data, _read_rows(data), options(), SPOT_TOKEN, LOT, CAPITAL_RUPEES)


def child_main(engine: str, data: Path, profile: bool) -> int:
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    with tempfile.TemporaryDirectory(prefix="bench-backtest-state-") as state:
        if engine == "ours":
            result = child_ours(data, Path(state))
        elif engine == "ours-read":
            result = child_ours_read(data)
        elif engine == "idle":
            result = child_idle()
        elif engine == "nautilus":
            result = child_nautilus(data)
        else:
            result = child_backtrader(data)
    if profiler is not None:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        note(out.getvalue())
    result.update(engine=engine, max_rss_mb=peak_rss_mb())
    print(json.dumps(result), flush=True)
    return 0


@dataclass(frozen=True, slots=True)
class EngineRun:
    engine: str
    version: str
    ticks: int
    seconds: float
    cpu_seconds: float
    max_rss_mb: float
    detail: dict[str, Any]

    @property
    def per_second(self) -> float:
        """Ticks per CPU second of the engine's process: on a shared machine wall time measures the neighbours."""
        return self.ticks / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def per_wall_second(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else 0.0


def run_engine(engine: str, data: Path, *, profile: bool = False) -> EngineRun:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", engine, "--data", str(data)]
    if profile:
        command.append("--profile")
    proc = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", check=False,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"bench/backtest.py: engine {engine} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    if profile or proc.stderr.strip():
        note(proc.stderr.rstrip())
    result = json.loads(proc.stdout.splitlines()[-1])
    return EngineRun(engine, str(result.pop("version")), int(result.pop("ticks")), float(result.pop("seconds")),
                     float(result.pop("cpu_seconds")), float(result.pop("max_rss_mb")), result)


def installed_peers() -> list[str]:
    return [engine for engine, (module, _) in PEERS.items() if importlib.util.find_spec(module) is not None]


def figures(ours: EngineRun, read: EngineRun, idle: EngineRun, peers: Sequence[EngineRun]) -> list[Figure]:
    rows = [
        Figure("ours, replayed day through App backtest (EMA crossover)", ours.per_second, "ticks/s",
               "reading + checking the same file alone (ReplayMarket.stream)", read.per_second),
        Figure("ours, peak RSS of the backtest process", ours.max_rss_mb, "MB",
               "the same interpreter with trader imported, idle", idle.max_rss_mb),
    ]
    for peer in peers:
        name = f"{PEERS[peer.engine][1]} {peer.version}"
        rows.append(Figure(f"ours vs {PEERS[peer.engine][1]}, ticks/s on the same day", ours.per_second, "ticks/s",
                           f"{name} (run alone, loading not counted)", peer.per_second))
        rows.append(Figure(f"ours vs {PEERS[peer.engine][1]}, peak RSS", ours.max_rss_mb, "MB", name,
                           peer.max_rss_mb))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the first 30 minutes of the day (73,800 rows)")
    parser.add_argument("--json", action="store_true", help="then print the results as one JSON object (last line)")
    parser.add_argument("--verbose", action="store_true", help="detail on standard error")
    parser.add_argument("--profile", action="store_true", help="cProfile each engine's process (top 25 by tottime)")
    parser.add_argument("--no-peers", action="store_true", help="ours only, even when the peers are installed")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the day here (kept), not in a temp dir")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.data is None:
            parser.error("--child needs --data")
        return child_main(args.child, args.data, args.profile)

    seconds = QUICK_SECONDS if args.quick else FULL_SECONDS
    note(f"bench/backtest.py — {'quick' if args.quick else 'full'} run; Python {platform.python_version()} on "
         f"{platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        data = args.keep or Path(tmp) / "day"
        t0 = time.perf_counter()
        rows = build_day(data, seconds)
        size_mb = (data / "ticks.parquet").stat().st_size / 1e6
        note(f"built {rows:,} rows ({seconds:,} index ticks, {len(options())} options) for {DAY} in "
             f"{time.perf_counter() - t0:.1f} s: {data / 'ticks.parquet'} ({size_mb:.1f} MB)")
        peers = [] if args.no_peers else installed_peers()
        missing = [PEERS[p][1] for p in PEERS if p not in peers]
        if missing and not args.no_peers:
            note(f"not installed (pip install -e '.[bench]'): {', '.join(missing)}")
        runs: dict[str, EngineRun] = {}
        for engine in ("idle", "ours-read", "ours", *peers):
            run = runs[engine] = run_engine(engine, data, profile=args.profile)
            note(f"  {engine:<10} {run.version:<10} {run.ticks:>9,} ticks in {run.cpu_seconds:7.2f} CPU s = "
                 f"{run.per_second:>9,.0f} ticks/s ({run.seconds:.2f} s wall = {run.per_wall_second:,.0f}/s), "
                 f"peak RSS {run.max_rss_mb:6.1f} MB"
                 + (f"  {run.detail}" if args.verbose and run.detail else ""))
    ours = runs["ours"]
    if ours.ticks != rows:
        raise SystemExit(f"bench/backtest.py: ours replayed {ours.ticks:,} of {rows:,} rows: {ours.detail}")
    for peer in peers:
        if runs[peer].ticks != rows:
            raise SystemExit(f"bench/backtest.py: {peer} saw {runs[peer].ticks:,} of {rows:,} rows")
    rows_out = figures(ours, runs["ours-read"], runs["idle"], [runs[p] for p in peers])
    if "nautilus" in runs:
        ratio = ours.per_second / runs["nautilus"].per_second
        note(f"target ≥ {TARGET_RATIO_NAUTILUS:g}x NautilusTrader's ticks/s: {ratio:.2f}x "
             f"({'met' if ratio >= TARGET_RATIO_NAUTILUS else 'NOT met'})")
    note(f"target peak RSS < {TARGET_RSS_MB:g} MB: {ours.max_rss_mb:.0f} MB "
         f"({'met' if ours.max_rss_mb < TARGET_RSS_MB else 'NOT met'})")
    results = {
        "python": platform.python_version(),
        "rows": rows,
        "day": DAY.isoformat(),
        "engines": {name: {"version": r.version, "ticks": r.ticks, "seconds": round(r.seconds, 4),
                           "cpu_seconds": round(r.cpu_seconds, 4),
                           "ticks_per_s": round(r.per_second, 1), "max_rss_mb": round(r.max_rss_mb, 1), **r.detail}
                    for name, r in runs.items()},
    }
    emit(rows_out, results if args.json else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
