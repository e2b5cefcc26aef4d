"""The commands on run folders (data_dir/runs, trader/runs/): ``trader report RUN`` (one run's summary and HTML page)
and ``trader compare RUN_A RUN_B`` (the reality check). ``trader report`` without RUN stays the running daemon's
report (trader/control/commands.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trader.config import ConfigError, load_settings

EXIT_CONFIG = 2


def add_run_commands(sub: Any) -> None:
    """RUN and its flags on the existing ``report`` parser, and the ``compare`` parser."""
    _add_run_report(sub.choices["report"])
    compare = sub.add_parser("compare", help="the reality check: run B (paper, live) against run A (its backtest), "
                             "in the terminal and as an HTML page")
    compare.add_argument("run_a", metavar="RUN_A", help="a run id (under the runs directory) or a run folder")
    compare.add_argument("run_b", metavar="RUN_B", help="a run id or a run folder")
    compare.add_argument("--out", type=Path, metavar="DIR", help="where the HTML page goes (default: RUN_B's folder)")
    compare.add_argument("--tolerance-s", type=float, default=300.0, metavar="N",
                         help="trades and signals match within N seconds of event time (default 300)")
    compare.add_argument("--reference", choices=("a", "b"), default="a",
                         help="the run the other is judged against (default a: A is the backtest)")
    compare.add_argument("--runs-dir", type=Path, metavar="DIR", help="default: [runs] dir of the settings")
    compare.add_argument("--config", type=Path, help="TOML file whose settings locate the runs")


def _add_run_report(report: argparse.ArgumentParser) -> None:
    """``trader report`` is the running daemon's report so far (an operator command); ``trader report RUN`` is a
    finished (or crashed) run's report from its run folder: a summary here and one HTML file (docs/report.md)."""
    report.description = ("without RUN: the running daemon's performance report so far; with RUN: print a run's "
                          "summary and write its report, one HTML file that opens without network (docs/report.md)")
    report.add_argument("run", nargs="?", metavar="RUN",
                        help="a run id under the runs directory, or the path of a run folder")
    group = report.add_argument_group("a run's report (with RUN)")
    group.add_argument("--runs-dir", type=Path, help="where the run folders are (default: data_dir/runs of --config)")
    group.add_argument("--out", type=Path, help="directory for report.html and charts/ (default: the run folder)")
    group.add_argument("--png", action="store_true",
                       help="also write each chart as PNG (needs the png extra and Chrome/Chromium)")
    group.add_argument("--no-color", action="store_true", help="no colours in the terminal summary")


def report_main(args: argparse.Namespace) -> int:
    """``trader report RUN``: the summary on the terminal, the HTML page (and PNGs) beside the run or in --out."""
    from trader.report.command import report_command  # noqa: PLC0415 - plotly only for the report
    from trader.report.png import PngExportError  # noqa: PLC0415
    from trader.report.terminal import make_console  # noqa: PLC0415
    from trader.runs.store import find_run, load_run  # noqa: PLC0415

    if args.json:
        print("report: --json is the running daemon's report (`trader report --json`, no RUN); a run's figures "
              "are in its summary.json", file=sys.stderr)
        return EXIT_CONFIG
    runs_dir = args.runs_dir
    if runs_dir is None:
        try:
            runs_dir = load_settings({}, args.config).runs_dir
        except ConfigError as exc:
            for line in exc.lines:
                print(line, file=sys.stderr)
            return EXIT_CONFIG
    try:
        folder = find_run(args.run, runs_dir)
        run = load_run(folder)
    except (OSError, ValueError) as exc:  # no such run, or a folder that is not one
        print(f"report: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        report_command(run, args.out or folder, png=args.png, console=make_console(no_color=args.no_color))
    except PngExportError as exc:  # the HTML is written; the message says what to install
        print(f"report: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:  # --out is a file, or a folder that cannot be made or written
        print(f"report: cannot write the report to {args.out or folder}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def compare_main(args: argparse.Namespace) -> int:
    """``trader compare``: read both run folders, print the comparison, write the HTML page."""
    from trader.report.compare_terminal import show_and_write  # noqa: PLC0415 - rich only for this command
    from trader.runs.store import find_run, load_run  # noqa: PLC0415 - pyarrow for this command only

    try:
        runs_dir = args.runs_dir if args.runs_dir is not None else load_settings({}, args.config).runs_dir
        paths = [find_run(name, runs_dir) for name in (args.run_a, args.run_b)]
        runs = [load_run(path) for path in paths]
        show_and_write(runs[0], runs[1], out_dir=args.out if args.out is not None else paths[1],
                       tolerance_s=args.tolerance_s, reference=args.reference)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except (OSError, ValueError) as exc:  # a run that cannot be found or read, a bad tolerance
        print(f"compare: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0
