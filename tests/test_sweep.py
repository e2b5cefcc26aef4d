"""trader sweep: the grid, the checks before anything runs, the ranking, and real sweeps on the process pool and on
a local Ray instance (each job a short backtest of the built-in market)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from trader import cli
from trader.sweep import (
    JobResult,
    SweepError,
    expand,
    load_grid_file,
    merge_params,
    parse_grid_option,
    parse_value,
    rank,
)
from trader.sweep_runner import local_pool, plan, ray_cluster, run_job, run_sweep

EMA = "strategy.ema_crossover_enhanced"
# Two sessions of the built-in market, fast: enough for the EMA crossover to trade.
BASE: dict[str, Any] = {"sim": {"days": 2, "start": "2026-11-19T09:00:00", "seed": 7, "chain_interval_ms": 5_000},
                        "risk": {"max_risk_per_trade_pct": 0.03}, "log_level": "WARNING"}


def test_values_are_toml_scalars_and_bare_words_are_text() -> None:
    assert parse_value("5") == 5 and parse_value(" 0.02 ") == 0.02 and parse_value("true") is True
    assert parse_value('"09:30"') == "09:30" and parse_value("09:30:00").isoformat() == "09:30:00"
    assert parse_value("ema_crossover_enhanced") == "ema_crossover_enhanced"
    with pytest.raises(SweepError, match="empty value"):
        parse_value(" ")


def test_a_grid_option_is_a_path_and_its_values() -> None:
    assert parse_grid_option(f"{EMA}.fast=5,8,13") == (f"{EMA}.fast", [5, 8, 13])
    for bad, words in (("fast", "expected PATH=V1,V2"), ("Strategy.x=1", "not a settings path"),
                       ("a..b=1", "not a settings path"), ("a.b=1,,2", "empty value")):
        with pytest.raises(SweepError, match=words):
            parse_grid_option(bad)


def test_expand_is_every_combination_then_the_explicit_sets_without_duplicates() -> None:
    sets = expand({"a.x": [1, 2], "b.y": ["p", "q"]}, [{"a.x": 9}, {"a.x": 1, "b.y": "p"}])
    assert sets == [{"a.x": 1, "b.y": "p"}, {"a.x": 1, "b.y": "q"}, {"a.x": 2, "b.y": "p"}, {"a.x": 2, "b.y": "q"},
                    {"a.x": 9}]
    assert expand({}) == []


def test_merge_params_sets_dotted_paths_inside_a_copy() -> None:
    base = {"strategy": {"lots": 2}, "sim": {"days": 1}}
    merged = merge_params(base, {f"{EMA}.fast": 5, "strategy.lots": 3})
    assert merged == {"strategy": {"lots": 3, "ema_crossover_enhanced": {"fast": 5}}, "sim": {"days": 1}}
    assert base == {"strategy": {"lots": 2}, "sim": {"days": 1}}


def test_a_grid_file_has_a_grid_and_explicit_runs(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text('[grid.strategy.ema_crossover_enhanced]\nfast = [5, 8]\n[grid]\n"risk.max_risk_per_trade_pct" = '
                    '[0.02]\n[[runs]]\nstrategy.ema_crossover_enhanced.slow = 34\n')
    grid, runs = load_grid_file(path)
    assert grid == {f"{EMA}.fast": [5, 8], "risk.max_risk_per_trade_pct": [0.02]}
    assert runs == [{f"{EMA}.slow": 34}]
    for text, words in (("[grid]\nx = 5\n", "non-empty list"), ("[grids]\n", "unknown table"),
                        ("[grid\n", "not valid TOML"), ("runs = 3\n", "must be")):
        path.write_text(text)
        with pytest.raises(SweepError, match=words):
            load_grid_file(path)
    with pytest.raises(SweepError, match="cannot be read"):
        load_grid_file(tmp_path / "missing.toml")


def result(index: int, **metrics: float | int | None) -> JobResult:
    return JobResult(index, {"p": index}, dict(metrics))


def test_rank_orders_by_the_metric_with_failures_and_undefined_last() -> None:
    results = [result(0, net_pnl=100, max_drawdown_pct=0.05), result(1, net_pnl=300, max_drawdown_pct=0.2),
               JobResult(2, {}, error="boom"), result(3, net_pnl=None, max_drawdown_pct=None),
               result(4, net_pnl=300, max_drawdown_pct=0.01), result(5, sharpe=math.nan)]
    assert [r.index for r in rank(results, "net_pnl")] == [1, 4, 0, 2, 3, 5]  # ties in job order
    assert [r.index for r in rank(results, "max_drawdown_pct")] == [4, 0, 1, 2, 3, 5]  # lower is better
    assert [r.index for r in rank([result(0, profit_factor=math.inf), result(1, profit_factor=2.0)],
                                  "profit_factor")] == [0, 1]
    with pytest.raises(SweepError, match="choose one of"):
        rank(results, "cagr")


def test_every_parameter_set_is_checked_before_anything_runs(tmp_path: Path) -> None:
    sets = [{f"{EMA}.fast": 5}, {f"{EMA}.fsat": 5}, {f"{EMA}.fast": -1}]
    with pytest.raises(SweepError) as caught:
        plan(BASE, sets, tmp_path)
    lines = str(caught.value).splitlines()
    assert any(line.startswith("parameter set #2 (strategy.ema_crossover_enhanced.fsat=5)") and "unknown parameter"
               in line for line in lines)
    assert any(line.startswith("parameter set #3") and "strategy.ema_crossover_enhanced.fast" in line
               for line in lines)
    assert not any("#1" in line for line in lines)
    assert not list(tmp_path.iterdir())  # nothing ran, nothing was written
    with pytest.raises(SweepError, match="nothing to sweep"):
        plan(BASE, [], tmp_path)


def two_jobs(out: Path) -> list[Any]:
    return plan(BASE, expand({f"{EMA}.fast": [5, 8]}), out)


def two_orb_jobs(out: Path) -> list[Any]:
    """The opening-range breakout, the other built-in: a sweep is not shaped around one strategy."""
    orb = {**BASE, "strategies": "opening_range_breakout"}
    return plan(orb, expand({"strategy.opening_range_breakout.target_r": [1.5, 3.0]}), out)


def test_a_job_is_a_pure_function_of_its_settings(tmp_path: Path) -> None:
    job = two_jobs(tmp_path / "a")[0]
    first = run_job(job)
    again = run_job(job.__class__(**{**{f: getattr(job, f) for f in job.__slots__}, "data_dir": str(tmp_path / "b")}))
    assert first.error == "" and first.metrics == again.metrics
    assert isinstance(first.metrics["trades"], int) and first.metrics["trades"] > 0
    assert (tmp_path / "a" / "job-001" / "log.jsonl").is_file()


def test_a_failing_job_is_a_result_not_the_end_of_the_sweep(tmp_path: Path) -> None:
    job = two_jobs(tmp_path)[0]
    broken = job.__class__(**{**{f: getattr(job, f) for f in job.__slots__}, "data": str(tmp_path / "nowhere")})
    failed = run_job(broken)
    assert failed.metrics == {} and "nowhere" in failed.error


def test_a_sweep_of_two_parameter_sets_on_the_process_pool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    code = cli.main(["sweep", "--days", "2", "--start", "2026-11-19T09:00:00", "--seed", "7", "--log-level", "WARNING",
                     "--grid", f"{EMA}.fast=5,8", "--workers", "2", "--out", str(out), "--rank-by", "net_pnl",
                     "--no-progress", "--config", str(config_file(tmp_path))])
    printed = capsys.readouterr().out
    assert code == 0, printed
    document = orjson.loads((out / "results.json").read_bytes())
    rows = document["results"]
    assert document["rank_by"] == "net_pnl" and [r["rank"] for r in rows] == [1, 2]
    assert sorted(r["params"][f"{EMA}.fast"] for r in rows) == [5, 8]
    assert rows[0]["metrics"]["net_pnl"] >= rows[1]["metrics"]["net_pnl"]
    assert all(r["error"] == "" and r["metrics"]["trades"] > 0 for r in rows)
    # Each job alone gives the same figures as in the pool: the jobs share nothing.
    alone = run_job(plan(BASE, [{f"{EMA}.fast": rows[0]["params"][f"{EMA}.fast"]}], tmp_path / "alone")[0])
    assert alone.metrics == {k: v for k, v in rows[0]["metrics"].items()}
    with (out / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [row[f"{EMA}.fast"] for row in table] == [str(r["params"][f"{EMA}.fast"]) for r in rows]
    assert "sweep ranked by net_pnl" in printed and "results.csv" in printed
    # Every job left a run folder, and `trader report` works on any of them.
    best = Path(rows[0]["run_dir"])
    assert best.is_relative_to(out / f"job-{rows[0]['index'] + 1:03d}") and (best / "run.json").is_file()
    assert cli.main(["report", str(best), "--out", str(tmp_path / "report"), "--no-color"]) == 0
    assert (tmp_path / "report" / "report.html").is_file()


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sweep-base.toml"
    path.write_text('[sim]\nchain_interval_ms = 5000\n[risk]\nmax_risk_per_trade_pct = 0.03\n')
    return path


def test_bad_sweep_arguments_exit_2_naming_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sweep", "--grid", f"{EMA}.fast=5"]) == 2  # the built-in market needs a bounded run
    assert "--days" in capsys.readouterr().err
    for argv, words in ((["--grid", "fast"], "expected PATH=V1,V2"),
                        (["--grid", f"{EMA}.fsat=1,2"], "unknown parameter"),
                        (["--workers", "-1", "--grid", f"{EMA}.fast=5"], "--workers -1"),
                        ([], "nothing to sweep")):
        assert cli.main(["sweep", "--days", "1", "--out", str(tmp_path / "x"), *argv]) == 2
        assert words in capsys.readouterr().err


def test_the_local_pool_and_ray_give_the_same_results(tmp_path: Path) -> None:
    """A local Ray instance (Ray is in the test extra; ``--ray local`` starts one) runs the same jobs to the same
    figures as the process pool."""
    jobs = two_orb_jobs(tmp_path / "pool")
    pooled = sorted(run_sweep(jobs, local_pool(2)), key=lambda r: r.index)
    jobs_ray = two_orb_jobs(tmp_path / "ray")
    rayed = sorted(run_sweep(jobs_ray, ray_cluster("local")), key=lambda r: r.index)
    assert [r.error for r in rayed] == ["", ""] and all(int(r.metrics["trades"] or 0) > 0 for r in rayed)
    assert [r.metrics for r in rayed] == [r.metrics for r in pooled]


# --- review (issue #11): what a sweep must refuse, and what its results files must not do -----------------------


def test_results_csv_cells_cannot_become_spreadsheet_formulas(tmp_path: Path) -> None:
    """A text cell starting with = + - @ (or a tab / carriage return) is a formula to Excel and LibreOffice: it is
    written with a leading apostrophe; numbers (a negative P&L) stay numbers."""
    from trader.sweep_runner import write_results  # noqa: PLC0415

    hostile = JobResult(0, {"strategy.x.label": "=HYPERLINK(\"http://x\",\"y\")", "strategy.x.n": -3},
                        {"net_pnl": -500, "sharpe": -0.25}, run_dir="@SUM(1+1)", error="+cmd|' /C calc'!A0")
    write_results(tmp_path, [hostile], "net_pnl")
    with (tmp_path / "results.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["strategy.x.label"] == "'=HYPERLINK(\"http://x\",\"y\")"
    assert row["run_dir"] == "'@SUM(1+1)" and row["error"] == "'+cmd|' /C calc'!A0"
    assert row["strategy.x.n"] == "-3" and row["net_pnl"] == "-500" and row["sharpe"] == "-0.25"


def test_an_infinite_profit_factor_is_inf_in_both_results_files(tmp_path: Path) -> None:
    """orjson writes inf as null, which reads as "undefined": results.json must say "inf" as results.csv does (and
    as summary.json, trader.report.metrics.jsonable)."""
    from trader.sweep_runner import write_results  # noqa: PLC0415

    write_results(tmp_path, [result(0, profit_factor=math.inf, sharpe=None)], "profit_factor")
    metrics = orjson.loads((tmp_path / "results.json").read_bytes())["results"][0]["metrics"]
    assert metrics["profit_factor"] == "inf" and metrics["sharpe"] is None
    with (tmp_path / "results.csv").open(newline="") as handle:
        assert next(csv.DictReader(handle))["profit_factor"] == "inf"


@pytest.mark.parametrize("path", ["mode", "live_confirm", "data_dir", "runs.dir", "kite.api_secret",
                                  "kite.access_token", "kite_api_root", "control.host", "alerts.webhook_url"])
def test_a_grid_cannot_set_the_mode_credentials_or_where_things_are_written(tmp_path: Path, path: str) -> None:
    """A sweep only ever backtests into its own folder: a grid path that would pick paper/live, carry a credential
    into results.csv, or move the data or the run folders elsewhere is refused before anything runs."""
    with pytest.raises(SweepError, match="cannot be swept"):
        parse_grid_option(f"{path}=1,2")
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text(f"[[runs]]\n{path} = \"x\"\n")
    with pytest.raises(SweepError, match="cannot be swept"):
        load_grid_file(grid_file)
    with pytest.raises(SweepError, match="cannot be swept"):
        plan(BASE, [{path: "x"}], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_jobs_run_folder_stays_in_its_own_folder_whatever_the_config_says(tmp_path: Path) -> None:
    """[runs] dir of the base config would put every job's run folder in one shared place, outside the sweep."""
    config = tmp_path / "base.toml"
    elsewhere = tmp_path / "elsewhere"
    config.write_text(f'[sim]\nchain_interval_ms = 5000\n[runs]\ndir = "{elsewhere}"\n')
    base = {**BASE, "sim": {**BASE["sim"], "days": 1}}
    job = plan(base, [{f"{EMA}.fast": 5}], tmp_path / "out", config_file=config)[0]
    done = run_job(job)
    assert done.error == "" and Path(done.run_dir).is_relative_to(tmp_path / "out" / "job-001")
    assert not elsewhere.exists()


def test_out_must_be_a_new_or_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An --out that already holds files (an earlier sweep, a home directory) would mix old job folders and run
    folders with the new ones and overwrite results: refused, exit 2, nothing written."""
    out = tmp_path / "old-sweep"
    (out / "job-001").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    code = cli.main(["sweep", "--days", "1", "--grid", f"{EMA}.fast=5", "--out", str(out), "--no-progress"])
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["job-001", "notes.txt"]


def test_a_worker_that_dies_fails_its_own_job_only(tmp_path: Path) -> None:
    """A job whose process dies (killed, out of memory, a crash in native code) breaks a ProcessPoolExecutor, which
    then fails every job still queued or running: one bad parameter set must not fail the rest of the sweep."""
    crashy = {**BASE, "strategies": "sweep_crash_plugin:CrashOnTwoLots", "sim": {**BASE["sim"], "days": 1},
              "risk": {**BASE["risk"], "max_lots_per_trade": 3}}
    jobs = plan(crashy, expand({"strategy.lots": [1, 2, 3]}), tmp_path)
    results = sorted(run_sweep(jobs, local_pool(1)), key=lambda r: r.index)
    assert [r.index for r in results] == [0, 1, 2]
    assert results[0].error == "" and results[2].error == "", [r.error for r in results]
    assert "worker failed" in results[1].error and results[1].metrics == {}


def test_a_ray_address_that_cannot_be_reached_exits_2_at_once(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """ray.init on an address where no Ray listens retried for minutes (a sweep that seemed to hang) before any job
    ran: the address is checked first (a local closed port answers at once)."""
    for address, words in (("127.0.0.1:1", "cannot reach Ray at 127.0.0.1:1"), ("ray://127.0.0.1:1", "cannot reach"),
                           ("nohost", "HOST:PORT")):
        code = cli.main(["sweep", "--days", "1", "--grid", f"{EMA}.fast=5", "--ray", address,
                         "--out", str(tmp_path / "o"), "--no-progress"])
        assert code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_results_table_shows_errors_and_values_as_written() -> None:
    """A job's error (an exception's words, a data file's name) or a text parameter holding [...] was read as rich
    markup: "[/bold]" crashed the sweep after every job had run, "[bold]x[/bold]" showed as x."""
    from rich.console import Console  # noqa: PLC0415

    from trader.sweep_runner import results_table  # noqa: PLC0415

    console = Console(width=300, color_system=None, record=True)
    ranked = [JobResult(0, {"strategy.x.label": "[bold]x[/bold]"}, {"net_pnl": 5, "trades": 1}),
              JobResult(1, {"strategy.x.label": "y"}, error="ReplayDataError: /data/[/bold]ticks.csv row 3")]
    console.print(results_table(ranked, "net_pnl"))
    text = console.export_text()
    assert "[bold]x[/bold]" in text and "failed: ReplayDataError: /data/[/bold]ticks.csv row 3" in text

