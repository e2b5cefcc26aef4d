"""Running a sweep's jobs (trader/sweep.py has the grid and the ranking): one backtest per job in a worker process
(a local process pool, or Ray tasks with ``--ray``), the results table, and the ``trader sweep`` command."""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from trader.config import ConfigError, load_settings
from trader.market.calendar import IST
from trader.money import format_inr
from trader.report.metrics import jsonable
from trader.sweep import (
    METRICS,
    JobResult,
    SweepError,
    SweepJob,
    expand,
    load_grid_file,
    merge_params,
    parse_grid_option,
    rank,
    refuse_path,
)

EXIT_CONFIG = 2
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"


def run_job(job: SweepJob) -> JobResult:
    """One backtest, start to end, in this process: the job's settings (base + its parameters, mode backtest, its
    own data_dir), the built-in market or the replayed data, then the run's metrics. Never raises: a failure is the
    result's ``error``, so one bad job does not end the sweep."""
    try:
        return _run(job)
    except ConfigError as exc:
        return JobResult(job.index, job.params, error="; ".join(exc.lines))
    except Exception as exc:  # a worker must answer, whatever happened
        return JobResult(job.index, job.params, error=f"{type(exc).__name__}: {exc}")


def _run(job: SweepJob) -> JobResult:
    from trader.backtest import run_backtest  # noqa: PLC0415 - in the worker
    from trader.logging import configure_logging  # noqa: PLC0415
    from trader.report.metrics import run_metrics  # noqa: PLC0415

    data_dir = Path(job.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # The job's run folder under its own data_dir, whatever [runs] dir the base config or the environment says.
    overrides = merge_params(job.overrides, {"mode": "backtest", "data_dir": str(data_dir),
                                             "runs.dir": str(data_dir / "runs")})
    settings = load_settings(overrides, Path(job.config_file) if job.config_file else None)
    with (data_dir / "log.jsonl").open("w", encoding="utf-8") as log:
        configure_logging(settings.log_level, log, "json")
        replay = None
        if job.data is not None:
            from trader.adapters.replay.sources import ReplayConfig  # noqa: PLC0415 - pyarrow only when replaying

            replay = ReplayConfig(data=Path(job.data), instruments=tuple(Path(p) for p in job.instruments),
                                  from_date=date.fromisoformat(job.from_date) if job.from_date else None,
                                  to_date=date.fromisoformat(job.to_date) if job.to_date else None)
        outcome = run_backtest(settings, replay, progress=False)  # the same run as `trader backtest`
    metrics = run_metrics(net_pnls=outcome.trade_pnls, equity_curve=outcome.equity_curve, fills=(),
                          initial_capital=outcome.initial_capital, final_equity=outcome.final_equity)
    summary = outcome.result.summary
    values: dict[str, float | int | None] = {
        "net_pnl": metrics.trades.net_pnl, "sharpe": metrics.sharpe, "sortino": metrics.sortino,
        "profit_factor": metrics.trades.profit_factor, "win_rate": metrics.trades.win_rate,
        "trades": metrics.trades.trades, "max_drawdown_pct": metrics.drawdown.max_drawdown_pct,
        "charges": summary.charges, "fills": summary.fills,
    }
    return JobResult(job.index, job.params, values, str(outcome.run_dir) if outcome.run_dir else "")


# -- executors ------------------------------------------------------------------------------------------------
Runner = Callable[[Sequence[SweepJob]], Iterator[JobResult]]


SHARED_TRIES = 2
"""A job in a pool that broke this many times runs alone next, so the job whose process dies is told apart from the
jobs that only shared its pool."""


def local_pool(workers: int) -> Runner:
    """Jobs on a pool of ``workers`` fresh processes (spawned: nothing of this process's state leaks into them).

    A worker that dies (killed, out of memory, a crash in native code) breaks the whole ``ProcessPoolExecutor``: every
    job still queued or running in it fails with it. Those jobs run again in a fresh pool; one that was in
    ``SHARED_TRIES`` broken pools then runs alone, and fails ("worker failed") only if its own process dies."""

    def run(jobs: Sequence[SweepJob]) -> Iterator[JobResult]:
        context = multiprocessing.get_context("spawn")
        breaks: dict[int, int] = {}
        queue = list(jobs)
        while queue:
            shared = [job for job in queue if breaks.get(job.index, 0) < SHARED_TRIES]
            batches = ([(shared, workers)] if shared else []) + [([job], 1) for job in queue if job not in shared]
            queue = []
            for batch, size in batches:
                with concurrent.futures.ProcessPoolExecutor(max_workers=size, mp_context=context) as pool:
                    futures = {pool.submit(run_job, job): job for job in batch}
                    for future in concurrent.futures.as_completed(futures):
                        job = futures[future]
                        try:
                            yield future.result()
                        except concurrent.futures.BrokenExecutor as exc:  # BrokenProcessPool
                            if len(batch) > 1 or breaks.get(job.index, 0) < SHARED_TRIES:
                                breaks[job.index] = breaks.get(job.index, 0) + 1
                                queue.append(job)  # maybe only beside the job that died: again
                            else:  # alone, and its own process died
                                yield JobResult(job.index, job.params,
                                                error=f"worker failed: {type(exc).__name__}: {exc}")
                        except Exception as exc:  # the job could not be sent or its result not read back
                            yield JobResult(job.index, job.params, error=f"worker failed: {type(exc).__name__}: {exc}")

    return run


RAY_CONNECT_TIMEOUT_S = 5.0


def check_ray_address(address: str) -> None:
    """``SweepError`` unless ``address`` is "local", "auto" or a ``[ray://]HOST:PORT`` that accepts a TCP connection:
    ``ray.init`` on an address where nothing listens retries for minutes, a sweep that seems to hang."""
    if address in ("local", "auto"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SweepError(f"--ray {address!r}: give HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379 or "
                         "ray://10.0.0.5:10001), 'auto', or 'local' to start Ray here")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise SweepError(f"--ray {address}: cannot reach Ray at {address} ({exc.strerror or exc}); is the cluster "
                         "up (ray start --head) and the port open?") from None


def ray_cluster(address: str) -> Runner:
    """Jobs as Ray tasks on the cluster at ``address`` ("local" starts a Ray instance on this machine)."""
    try:
        import ray  # noqa: PLC0415 - the optional `ray` extra
    except ImportError:
        raise SweepError("--ray needs Ray: pip install 'trader[ray]' (or run without --ray for the local "
                         "process pool)") from None

    check_ray_address(address)

    def run(jobs: Sequence[SweepJob]) -> Iterator[JobResult]:
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True, log_to_driver=False,
                 include_dashboard=False)
        try:
            task = ray.remote(run_job)
            pending = {task.remote(job): job for job in jobs}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as exc:  # the task or its worker failed
                        yield JobResult(job.index, job.params, error=f"ray task failed: {type(exc).__name__}: {exc}")
        finally:
            ray.shutdown()

    return run


# -- the sweep --------------------------------------------------------------------------------------------------
def plan(base: dict[str, Any], param_sets: Sequence[dict[str, Any]], out: Path, *, config_file: Path | None = None,
         data: Path | None = None, instruments: Sequence[Path] = (), from_date: date | None = None,
         to_date: date | None = None) -> list[SweepJob]:
    """The jobs, each parameter set checked by loading its settings: any bad set stops the sweep before it runs,
    with the config error and the set that caused it."""
    if not param_sets:
        raise SweepError("nothing to sweep: give --grid PATH=V1,V2 (repeatable) or --grid-file FILE")
    problems: list[str] = []
    jobs = []
    for index, params in enumerate(param_sets):
        for path in params:
            refuse_path(path, f"parameter set #{index + 1}")
        overrides = merge_params(base, params)
        try:
            load_settings(merge_params(overrides, {"mode": "backtest"}), config_file)
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            problems += [f"parameter set #{index + 1} ({shown}): {line}" for line in exc.lines]
            continue
        jobs.append(SweepJob(
            index=index, overrides=overrides, params=params,
            config_file=str(config_file.resolve()) if config_file else None,
            data=str(data.resolve()) if data else None, instruments=tuple(str(p.resolve()) for p in instruments),
            from_date=from_date.isoformat() if from_date else None, to_date=to_date.isoformat() if to_date else None,
            data_dir=str((out / f"job-{index + 1:03d}").resolve())))
    if problems:
        raise SweepError("\n".join(problems))
    return jobs


def run_sweep(jobs: Sequence[SweepJob], runner: Runner, *, progress: bool = False,
              console: Console | None = None) -> list[JobResult]:
    results: list[JobResult] = []
    if not progress:
        results.extend(runner(jobs))
        return results
    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("sweep", total=len(jobs), failed=0)
        failed = 0
        for result in runner(jobs):
            results.append(result)
            failed += bool(result.error)
            bar.update(task, advance=1, failed=failed)
    return results


def csv_cell(value: object) -> object:
    """A results.csv cell a spreadsheet cannot run: text starting with = + - @ (or a tab or carriage return) is a
    formula to Excel and LibreOffice, so it gets a leading apostrophe; numbers are written as they are."""
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def write_results(out: Path, ranked: Sequence[JobResult], metric: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # The metrics as summary.json has them: inf as "inf" (orjson alone writes null, which reads as undefined).
    rows = [{"rank": n, **asdict(r), "metrics": jsonable(r.metrics)} for n, r in enumerate(ranked, 1)]
    tmp = out / f".{RESULTS_JSON}.tmp"
    tmp.write_bytes(orjson.dumps({"rank_by": metric, "results": rows}, option=orjson.OPT_INDENT_2))
    os.replace(tmp, out / RESULTS_JSON)
    params = sorted({p for r in ranked for p in r.params})
    names = [*METRICS, "charges", "fills"]
    tmp = out / f".{RESULTS_CSV}.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "job", *params, *names, "run_dir", "error"])
        for n, r in enumerate(ranked, 1):
            writer.writerow([csv_cell(cell) for cell in (
                n, r.index + 1, *(r.params.get(p, "") for p in params),
                *("" if r.metrics.get(m) is None else r.metrics[m] for m in names), r.run_dir, r.error)])
    os.replace(tmp, out / RESULTS_CSV)


def results_table(ranked: Sequence[JobResult], metric: str) -> Table:
    params = sorted({p for r in ranked for p in r.params})
    table = Table(title=f"sweep ranked by {metric} ({'higher' if METRICS[metric] else 'lower'} is better)")
    for column in ("#", "job", *params, "trades", "net P&L", "win rate", "PF", "Sharpe", "max DD"):
        table.add_column(column, justify="left" if column in params else "right")
    for n, r in enumerate(ranked, 1):
        shown = [Text(str(r.params.get(p, ""))) for p in params]  # Text: never read as rich markup
        if r.error:
            table.add_row(str(n), str(r.index + 1), *shown, Text(f"failed: {r.error[:80]}"), "", "", "", "", "")
            continue
        m = r.metrics
        table.add_row(str(n), str(r.index + 1), *shown, str(m.get("trades")), format_inr(int(m.get("net_pnl") or 0)),
                      _num(m.get("win_rate"), "{:.0%}"), _num(m.get("profit_factor"), "{:.2f}"),
                      _num(m.get("sharpe"), "{:.2f}"), _num(m.get("max_drawdown_pct"), "{:.2%}"))
    return table


def _num(value: float | int | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def default_out(data_dir: Path, wall_ns: int) -> Path:
    stamp = datetime.fromtimestamp(wall_ns / 1e9, tz=IST).strftime("%Y%m%d-%H%M%S")
    return data_dir / "sweeps" / f"{stamp}-{os.urandom(3).hex()}"


def add_sweep_command(sub: Any, settings_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    sweep = sub.add_parser("sweep", help="backtest a grid of strategy parameters over a period, in parallel, ranked "
                           "by a metric (trader/sweep.py)")
    settings_flags(sweep)
    grid = sweep.add_argument_group("the grid")
    grid.add_argument("--grid", action="append", default=[], metavar="PATH=V1,V2,...",
                      help="a settings path and its values, e.g. strategy.ema_crossover_enhanced.fast=5,8,13 "
                           "(repeat for more paths: every combination runs)")
    grid.add_argument("--grid-file", type=Path, metavar="TOML", help="a [grid] table and/or [[runs]] parameter sets")
    grid.add_argument("--rank-by", default="net_pnl", choices=tuple(METRICS), help="the metric ranking the runs")
    where = sweep.add_argument_group("where and how")
    where.add_argument("--data", type=Path, metavar="PATH", help="replay this tick data (else the built-in market)")
    where.add_argument("--instruments", type=Path, metavar="CSV", action="append", help="its instrument dump(s)")
    where.add_argument("--from", dest="from_date", type=date.fromisoformat, metavar="YYYY-MM-DD")
    where.add_argument("--to", dest="to_date", type=date.fromisoformat, metavar="YYYY-MM-DD")
    where.add_argument("--workers", type=int, default=0, help="local processes (default: all cores)")
    where.add_argument("--ray", metavar="ADDRESS", help="run on the Ray cluster at ADDRESS ('local' starts one "
                       "here); every worker must see --data, --config and --out at the same paths")
    where.add_argument("--out", type=Path, help="the sweep's folder (default: data_dir/sweeps/<time>-<id>)")
    where.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="a progress bar (default: on when stderr is a terminal)")


def sweep_main(args: argparse.Namespace, base: dict[str, Any]) -> int:
    """``trader sweep``: 0 when every job ran, 1 when some failed (the table says which), 2 for bad arguments."""
    console = Console(stderr=True)
    try:
        if args.workers < 0:
            raise SweepError(f"--workers {args.workers}: give 0 (all cores) or more")
        grid: dict[str, list[Any]] = {}
        explicit: list[dict[str, Any]] = []
        if args.grid_file is not None:
            grid, explicit = load_grid_file(args.grid_file)
        for option in args.grid:
            path, values = parse_grid_option(option)
            grid[path] = values
        base = {k: v for k, v in base.items() if k != "mode"}
        settings = load_settings(merge_params(base, {"mode": "backtest"}), args.config)
        out = args.out if args.out is not None else default_out(settings.data_dir, time.time_ns())
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise SweepError(f"--out {out}: not empty; give a new or empty folder (an earlier sweep's job folders "
                             "and results would be mixed with this one's)")
        jobs = plan(base, expand(grid, explicit), out, config_file=args.config, data=args.data,
                    instruments=args.instruments or (), from_date=args.from_date, to_date=args.to_date)
        runner = ray_cluster(args.ray) if args.ray else local_pool(args.workers or os.cpu_count() or 1)
    except (SweepError, ConfigError) as exc:
        lines = exc.lines if isinstance(exc, ConfigError) else str(exc).splitlines()
        for line in lines:
            print(line if line.startswith("config error") else f"sweep: {line}", file=sys.stderr)
        return EXIT_CONFIG
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    results = run_sweep(jobs, runner, progress=progress, console=console)
    ranked = rank(results, args.rank_by)
    write_results(out, ranked, args.rank_by)
    Console().print(results_table(ranked, args.rank_by))
    print(f"results: {out / RESULTS_CSV} and {out / RESULTS_JSON}; each job's data under {out}/job-NNN")
    return 1 if any(r.error for r in results) else 0

