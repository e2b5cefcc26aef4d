"""Command line: ``trader run`` (the daemon), ``trader check-config`` and ``trader tail`` (trader/tail.py); the
operator's commands on a running daemon (``trader status|order|halt|...``) are in trader/control/commands.py.

Exit codes: 0 success, 2 bad configuration or arguments (argparse uses 2 as well) or a start-up problem the message
explains (an unreachable broker, a saved state that cannot be used), 1 unexpected failure; the operator commands
also use 1 for refused and 3 for a daemon not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from trader import __version__
from trader.config import MAX_SPEED, ConfigError, Settings, load_settings, masked_dump
from trader.control.commands import add_control_commands
from trader.logging import configure_logging, get_logger, on_output_closed
from trader.market.calendar import IST
from trader.report.cli import add_run_commands, compare_main, report_main
from trader.store.journal import JournalError
from trader.sweep_runner import add_sweep_command, sweep_main
from trader.tail import add_tail_command, tail_main

if TYPE_CHECKING:
    from trader.adapters.replay.sources import ReplayConfig

EXIT_CONFIG = 2


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file (see configs/paper.toml); env and flags override it")
    parser.add_argument("--mode", help="backtest | paper | live (env TRADER_MODE; default paper)")
    parser.add_argument("--venue", help="kite | fyers: the live broker for market data and orders (env TRADER_VENUE; "
                        "default kite)")
    parser.add_argument("--symbols", nargs="+", help="underlyings, e.g. NSE:NIFTY50-INDEX (comma or space separated)")
    parser.add_argument("--strategies", nargs="+", help="strategy names, e.g. ema_crossover_enhanced")
    parser.add_argument("--capital", type=float, help="initial capital in rupees")
    parser.add_argument("--max-daily-loss", type=float, help="daily loss limit as a fraction of capital (0.02 = 2%%)")
    parser.add_argument("--confidence-cutoff", type=float, help="minimum signal confidence (0-100) to trade")
    parser.add_argument("--auto-execution", action=argparse.BooleanOptionalAction, default=None,
                        help="place orders from signals (default: on in paper/backtest, off in live)")
    parser.add_argument("--speed", type=float, help="built-in market speed, x real time (0 = as fast as possible)")
    parser.add_argument("--seed", type=int, help="built-in market random seed")
    parser.add_argument("--days", type=int, help="built-in market sessions to run (0 = until stopped)")
    parser.add_argument("--start", help="built-in market start, ISO date-time (IST unless a zone is given)")
    parser.add_argument("--log-level", help="DEBUG | INFO | WARNING | ERROR")
    parser.add_argument("--log-format", choices=("auto", "json", "human"),
                        help="console log: JSON lines, human lines, or auto = human on a terminal, JSON otherwise "
                             "(env TRADER_LOG_FORMAT; default auto)")
    parser.add_argument("--calendar-file", type=Path, help="TOML file extending the shipped NSE calendar "
                        "(next year's holidays; format: trader/market/data/nse_calendar.toml)")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Only the flags actually given, shaped like the settings, so env and file fill in the rest."""
    flat: dict[str, Any] = {
        "mode": args.mode,
        "venue": args.venue,
        "symbols": _join(args.symbols),
        "strategies": _join(args.strategies),
        "auto_execution": args.auto_execution,
        "log_level": args.log_level.upper() if args.log_level else None,
        "log_format": args.log_format,
        "calendar_file": args.calendar_file,
    }
    nested: dict[str, dict[str, Any]] = {
        "risk": {"initial_capital": args.capital, "max_daily_loss_pct": args.max_daily_loss},
        "strategy": {"confidence_cutoff": args.confidence_cutoff},
        "sim": {"speed": args.speed, "seed": args.seed, "days": args.days, "start": args.start},
    }
    if getattr(args, "data", None) is not None:  # a replay ends with its data: the built-in market's --days is moot
        nested["sim"]["days"] = args.days if args.days is not None else 1
        flat["mode"] = args.mode or "backtest"
    if getattr(args, "command", None) == "backtest":  # always backtest mode; the built-in market: 1 day or --days
        if args.mode not in (None, "backtest"):
            raise ConfigError([f"--mode {args.mode}: trader backtest runs in backtest mode only (use trader run)"])
        flat["mode"] = "backtest"
        nested["sim"]["days"] = args.days if args.days is not None else 1
    result = {k: v for k, v in flat.items() if v is not None}
    for section, values in nested.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            result[section] = given
    return result


def _join(values: list[str] | None) -> str | None:
    return ",".join(values) if values else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trader", description="Options-trading daemon for NSE/BSE index options")
    parser.add_argument("--version", action="version", version=f"trader {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon (paper mode on the built-in market by default)")
    _settings_flags(run)
    _replay_flags(run)
    backtest = sub.add_parser("backtest", help="a backtest on your tick/candle files (--data) or the built-in market "
                              "(--days N), with a progress bar and a summary (docs/data.md)")
    _settings_flags(backtest)
    _replay_flags(backtest)
    backtest.add_argument("--no-progress", dest="progress", action="store_false",
                          help="no progress bar (there is none anyway when stderr is not a terminal)")
    check = sub.add_parser("check-config", help="print the effective configuration, secrets masked")
    _settings_flags(check)
    sim = sub.add_parser("sim", help="run the Kite-compatible exchange simulator (REST + WebSocket) on 127.0.0.1")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8765, help="REST port; the WebSocket uses port+1 (default 8765)")
    sim.add_argument("--api-key", default="sim_api_key", help="API key clients must use (default sim_api_key)")
    sim.add_argument("--api-secret", default="sim_api_secret",
                     help="API secret for the login checksum (default sim_api_secret; local use only)")
    sim.add_argument("--speed", type=float, default=1.0, help="session speed, x real time (default 1)")
    sim.add_argument("--seed", type=int, default=7, help="random seed of the simulated market")
    sim.add_argument("--follow-calendar", action="store_true",
                     help="follow the real NSE calendar and hours instead of a session open from the start")
    sim.add_argument("--start", metavar="DATETIME",
                     help="simulated start, ISO date-time, IST unless a zone is given (e.g. 2027-01-05T09:15); "
                          "default: the open of the current or next session")
    sim.add_argument("--log-level", default="INFO")
    sim.add_argument("--venue", choices=("kite", "fyers"), default="kite",
                     help="the wire face on --port: kite (default) or fyers (Fyers API v3 REST, symbol master and "
                          "order socket; the Kite face then runs on free ports)")
    sim.add_argument("--app-id", default="SIMAPP-100", help="--venue fyers: the app id clients must use")
    sim.add_argument("--secret-key", default="sim_fyers_secret",
                     help="--venue fyers: the app secret behind appIdHash (default sim_fyers_secret; local use only)")
    faults = sim.add_argument_group("fault knobs (all off by default)")
    faults.add_argument("--error-rate", type=float, default=0.0, metavar="SHARE",
                        help="share of authenticated requests answered 500/502/503 before they are handled")
    faults.add_argument("--timeout-after-accept", type=float, default=0.0, metavar="SHARE",
                        help="share of order placements accepted whose answer is then lost (see --timeout-mode)")
    faults.add_argument("--timeout-mode", choices=("delay", "drop"), default="delay",
                        help="a lost answer comes --timeout-delay seconds late (delay) or never (drop)")
    faults.add_argument("--timeout-delay", type=float, default=30.0, metavar="SECONDS")
    faults.add_argument("--rate-limit-rate", type=float, default=0.0, metavar="SHARE",
                        help="share of authenticated requests answered 429")
    faults.add_argument("--ws-drop-every", type=float, default=0.0, metavar="SIM_SECONDS",
                        help="drop every WebSocket connection this often, in simulated seconds (0 = never)")
    login = sub.add_parser("login", help="exchange the day's Kite request token (or, with TRADER_VENUE=fyers, the "
                           "Fyers auth code) for an access token (stored 0600)")
    _settings_flags(login)
    login.add_argument("--request-token", help="the request_token (Fyers: the auth_code), or the whole redirect URL; "
                       "asked for if absent")
    new = sub.add_parser("new-strategy", help="write a package to start your own strategy from (its tests pass as "
                         "written; see docs/strategies.md)")
    new.add_argument("name", help="the strategy's name: lower-case letters, digits and _ (e.g. my_breakout)")
    new.add_argument("--dir", type=Path, default=Path("."), help="where the package's directory goes (default: .)")
    runs = sub.add_parser("runs", help="list the run folders (data_dir/runs): id, mode, status, trades, net P&L")
    _settings_flags(runs)
    add_sweep_command(sub, _settings_flags)  # trader sweep: trader/sweep.py, trader/sweep_runner.py
    add_tail_command(sub)  # trader tail: the JSON log as human lines (trader/tail.py)
    add_control_commands(sub)  # status, positions, orders, ..., halt, resume: trader/control/commands.py
    add_run_commands(sub)  # trader report RUN, trader compare RUN_A RUN_B: trader/report/cli.py
    return parser


def _replay_flags(parser: argparse.ArgumentParser) -> None:
    replay = parser.add_argument_group("replay your own tick or candle files (backtest mode; docs/data.md)")
    replay.add_argument("--data", type=Path, metavar="PATH",
                        help="a tick/candle file or a directory of them (CSV, Parquet, Kite historical JSON)")
    replay.add_argument("--instruments", type=Path, metavar="CSV", action="append",
                        help="the Kite instrument dump of the period (default: instruments.csv in --data)")
    replay.add_argument("--from", dest="from_date", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="first day replayed (IST)")
    replay.add_argument("--to", dest="to_date", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="last day replayed (IST)")
    replay.add_argument("--iv", type=float, metavar="VOL", help="index-only data: the flat implied volatility its "
                        "options are modelled at (default 0.13 = 13 %%; docs/data.md)")



def _replay_config(args: argparse.Namespace) -> ReplayConfig | None:
    if getattr(args, "data", None) is None:
        return None
    from trader.adapters.replay.sources import ReplayConfig  # noqa: PLC0415 - pyarrow only when replaying

    iv = {} if args.iv is None else {"iv": args.iv}
    try:
        return ReplayConfig(data=args.data, instruments=tuple(args.instruments or ()), from_date=args.from_date,
                            to_date=args.to_date, **iv)
    except ValueError as exc:
        raise ConfigError([f"config error: {exc}"]) from None


def load(args: argparse.Namespace) -> Settings:
    return load_settings(_overrides(args), args.config)


def _run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop  # noqa: PLC0415 - Linux only (see pyproject markers)
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _login(settings: Settings, given: str | None) -> int:
    """`trader login` for the configured venue: the login URL, then the token (or the whole redirect URL) pasted."""
    from trader import login  # noqa: PLC0415 - aiohttp only when logging in

    try:
        flow = login.login_flow(settings)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    print(f"1. Open {flow.url} and log in.")
    print(f"2. {flow.redirect}; paste that {flow.prompt.split()[-1]} or the whole URL.")
    try:
        path = _run_loop(flow.exchange(given if given is not None else input(f"{flow.prompt}: ")))
    except (ValueError, EOFError) as exc:
        print(f"login failed: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        print(f"login failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"access token stored in {path} (owner-only); the daemon reads it until it expires ({flow.valid_until})")
    return 0


def _sim(args: argparse.Namespace) -> int:
    problems = []
    if not 0 <= args.port <= 65534:
        problems.append(f"--port {args.port}: must be 0-65534 (the WebSocket takes port+1)")
    if not 0 < args.speed <= MAX_SPEED:  # also refuses nan
        problems.append(f"--speed {args.speed}: must be above 0 and at most {MAX_SPEED:g}, e.g. --speed 60 for an "
                        "hour a minute")
    if not 0 <= args.seed <= 2**63 - 1:
        problems.append(f"--seed {args.seed}: must be 0 or more (and below 2**63), e.g. --seed 7")
    if args.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"--log-level {args.log_level}: use DEBUG, INFO, WARNING or ERROR")
    from trader.sim.wire import Faults  # noqa: PLC0415 - aiohttp only for the simulator

    faults = None
    try:
        if not 0 <= args.timeout_delay < 3600:
            raise ValueError(f"--timeout-delay {args.timeout_delay}: must be 0-3600 seconds")
        faults = Faults(error_rate=args.error_rate, timeout_after_accept=args.timeout_after_accept,
                        timeout_mode=args.timeout_mode, timeout_delay_s=args.timeout_delay,
                        rate_limit_rate=args.rate_limit_rate)
    except ValueError as exc:
        problems.append(str(exc))
    if not 0 <= args.ws_drop_every < 86_400:
        problems.append(f"--ws-drop-every {args.ws_drop_every}: must be 0 (never) up to a simulated day")
    start = None
    if args.start is not None:
        start, problem = _sim_start(args.start, args.follow_calendar)
        if problem:
            problems.append(problem)
    if problems:
        for line in problems:
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(args.log_level)
    from trader.sim import serve  # noqa: PLC0415

    async def until_signalled() -> None:
        task = asyncio.create_task(serve(host=args.host, port=args.port, api_key=args.api_key,
                                         api_secret=args.api_secret, speed=args.speed, seed=args.seed,
                                         start=start, follow_calendar=args.follow_calendar, faults=faults,
                                         ws_drop_every_s=args.ws_drop_every, venue=args.venue,
                                         app_id=args.app_id, secret_key=args.secret_key))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        _run_loop(until_signalled())
    except OSError as exc:
        print(f"sim failed: {exc} (is the port in use? try --port 0 for a free one)", file=sys.stderr)
        return 1
    return 0


def _sim_start(text: str, follow_calendar: bool) -> tuple[datetime | None, str]:
    """``trader sim --start``: an ISO date-time, IST unless it names a zone; (value, "") or (None, problem)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None, (f"--start {text!r}: not an ISO date-time; write it like 2027-01-05T09:15 (IST) or "
                      "2027-01-05T03:45+00:00")
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=IST)
    if follow_calendar:
        return None, "--start: --follow-calendar runs on the wall clock; give one of --start and --follow-calendar"
    if moment.year < 2025:
        return None, (f"--start {text}: the simulated market follows the expiry rules in force since 2025; "
                      "start in 2025 or later")
    return moment, ""


def _log_to_stderr(level: str, log_format: str) -> None:
    configure_logging(level, sys.stderr, log_format)
    get_logger("trader.cli").error("log_output_closed", logging_to="stderr",
                                   why="stdout was closed; live trading goes on, stopping would leave positions "
                                       "unmanaged")


def _new_strategy(name: str, parent: Path) -> int:
    from trader.strategies.skeleton import SkeletonError, class_name, write_skeleton  # noqa: PLC0415

    try:
        root = write_skeleton(name, parent)
    except SkeletonError as exc:
        print(f"new-strategy: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote {root}: the strategy in {root / name / 'strategy.py'}, its tests in {root / 'tests'}\n"
          f"  cd {root} && python -m pytest                 # its tests pass as written\n"
          f"  pip install -e {root}                          # registers the entry point: --strategies {name}\n"
          f"  or, without installing: PYTHONPATH={root} trader run --strategies {name}.strategy:{class_name(name)}")
    return 0


def _backtest(settings: Settings, args: argparse.Namespace) -> int:
    """``trader backtest``: trader/backtest.py; exit 0, or 2 with the message (file, row, field) on stderr."""
    configure_logging(settings.log_level, log_format=settings.log_format)
    from trader.backtest import run_backtest, summary_text, want_progress  # noqa: PLC0415 - keeps the CLI light

    try:
        outcome = run_backtest(settings, _replay_config(args), progress=want_progress(args.progress, sys.stderr))
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except JournalError as exc:
        print(f"journal error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception:
        get_logger("trader.cli").exception("backtest_failed")
        return 1
    print(summary_text(outcome), flush=True)
    return 0



def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report" and args.run is not None:  # a run folder's report, not the daemon's
        return report_main(args)
    if args.command == "compare":
        return compare_main(args)
    if getattr(args, "control", None) is not None:  # an operator command on the running daemon's control API
        return int(args.control(args))
    if args.command == "sim":
        return _sim(args)
    if args.command == "tail":
        return tail_main(args)
    if args.command == "new-strategy":
        return _new_strategy(args.name, args.dir)
    if args.command == "sweep":
        return sweep_main(args, _overrides(args))
    try:
        settings = load(args)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        sys.stdout.write(orjson.dumps(masked_dump(settings), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if args.command == "login":
        return _login(settings, args.request_token)
    if args.command == "runs":
        from trader.runs.listing import list_lines  # noqa: PLC0415 - as App below

        sys.stdout.write("".join(f"{line}\n" for line in list_lines(settings.runs_dir)))
        return 0
    if args.command == "backtest":
        return _backtest(settings, args)
    configure_logging(settings.log_level, log_format=settings.log_format)
    from trader.app import App  # noqa: PLC0415 - keeps check-config light

    try:
        app = App(settings, replay=_replay_config(args))
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except JournalError as exc:  # a journal problem not already put in words by the builders
        print(f"journal error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if settings.mode == "live":
        # Stopping would leave open positions unmanaged (and exit 0, so systemd would not restart it): go on,
        # logging to stderr.
        on_output_closed(lambda: _log_to_stderr(settings.log_level, settings.log_format))
    else:
        # Whoever read the logs went away (`trader run | jq`, then Ctrl-C or q): stop gracefully, quietly.
        on_output_closed(lambda: app.request_stop("the log's reader closed stdout"))
    try:
        _run_loop(app.run())
    except ConfigError as exc:  # found at start-up (an unreachable broker, a saved state that cannot be used)
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except JournalError as exc:  # the message names the file and the fix
        print(f"journal error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception:
        get_logger("trader.cli").exception("daemon_failed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
