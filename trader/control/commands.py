"""The operator's commands on a running daemon's control API: ``trader status|positions|orders|signals|risk|report|
order|cancel|approve|reject|flatten|halt|resume|reset-daily`` (``trader healthcheck``: healthcheck.py).

``add_control_commands`` registers them on ``trader``'s subparsers; each sets ``control`` to ``run``, which
``trader.cli.main`` calls. The URL comes from ``settings.control`` (host, port) unless ``--url``; the token from
``--token-file``, else ``control.token`` (config file or TRADER_CONTROL__TOKEN), else ``<data_dir>/control_token``
— the same settings loading as ``trader run``, so on the daemon's machine ``trader status`` just works.
Human output is rich tables (``trader.control.render``, imported only here so ``trader run`` does not load rich);
``--json`` prints the API's JSON document as is. Exit codes: 0 ok, 1 refused / not found / token refused,
2 usage or a bad request, 3 the daemon not reachable.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from trader.control.client import (
    DEFAULT_TIMEOUT_S,
    EXIT_USAGE,
    Answer,
    ClientError,
    ControlClient,
)

TOKEN_ENV = "TRADER_CONTROL__TOKEN"
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
_ORDER_WAIT_MARGIN_S = 10.0  # an act waits for its outcome on the bus up to order_wait_seconds, then answers
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it
_MAX_ORDER_WAIT_S = 60.0  # ControlSettings.order_wait_seconds' upper bound


class UsageError(Exception):
    """A problem with the command line or the settings it read (exit 2)."""


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None


Builder = Callable[[argparse.Namespace], Call]


def _ref(value: str) -> str:
    return quote(value.strip(), safe="")


def _given(**fields: Any) -> dict[str, Any] | None:
    body = {key: value for key, value in fields.items() if value is not None}
    return body or None


def _order_call(args: argparse.Namespace) -> Call:
    order_type = args.type
    price = args.price
    if args.limit is not None:
        if args.price is not None or order_type not in (None, "LIMIT"):
            raise UsageError("--limit P is short for --type LIMIT --price P: give one of them")
        order_type, price = "LIMIT", args.limit
    instrument = " ".join(word.strip() for word in args.instrument if word.strip())
    if not instrument:
        raise UsageError("name the instrument, e.g. `trader order BUY NIFTY ATM CE --lots 1`")
    body: dict[str, Any] = {"side": args.side, "instrument": instrument}
    body.update(_given(lots=args.lots, quantity=args.quantity, expiry=args.expiry, order_type=order_type,
                       price=price, trigger_price=args.trigger, market_protection=args.protection,
                       reason=args.reason, request_id=args.request_id) or {})
    if args.confirm:
        body["confirm"] = True
    if args.dry_run:
        body["dry_run"] = True
    return Call("POST", "/orders", body)


READS = ("status", "positions", "orders", "signals", "risk", "report")
BUILDERS: dict[str, Builder] = {
    "status": lambda args: Call("GET", "/status"),
    "positions": lambda args: Call("GET", "/positions"),
    "orders": lambda args: Call("GET", "/orders"),
    "signals": lambda args: Call("GET", "/signals"),
    "risk": lambda args: Call("GET", "/risk"),
    "report": lambda args: Call("GET", "/report"),
    "order": _order_call,
    "cancel": lambda args: Call("POST", f"/orders/{_ref(args.ref)}/cancel"),
    "approve": lambda args: Call("POST", f"/signals/{_ref(args.ref)}/approve"),
    "reject": lambda args: Call("POST", f"/signals/{_ref(args.ref)}/reject", _given(reason=args.reason)),
    "flatten": lambda args: Call("POST", "/flatten", _given(
        underlying=args.underlying.strip().upper() if args.underlying else None)),
    "halt": lambda args: Call("POST", "/halt", _given(reason=args.reason)),
    "resume": lambda args: Call("POST", "/resume"),
    "reset-daily": lambda args: Call("POST", "/reset-daily"),
}


# -- argparse ---------------------------------------------------------------------------------------------------------
def _upper(value: str) -> str:
    return value.strip().upper()


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: must be 1 or more")
    return number


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{value!r} is not a finite number")
    return number


def _common_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection (default: the daemon of these settings, on this machine)")
    group.add_argument("--url", help="control API base URL, e.g. http://127.0.0.1:8780 (default: from "
                       "control.host / control.port)")
    group.add_argument("--token-file", type=Path, metavar="PATH",
                       help="file holding the bearer token (default: control.token / TRADER_CONTROL__TOKEN, else "
                            "<data_dir>/control_token)")
    group.add_argument("--config", type=Path, help="the daemon's TOML file, read as `trader run` reads it")
    group.add_argument("--json", action="store_true", help="print the API's JSON answer (one document)")
    return common


def add_control_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the operator commands on ``trader``'s subparsers (each sets ``control=run``)."""
    common = [_common_flags()]

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text, parents=common)
        parser.set_defaults(control=run)
        return parser

    add("status", "the running daemon: mode, trading state and why, risk level, feed age, loop lag, counts")
    add("positions", "open positions with P&L in rupees")
    add("orders", "today's orders (newest first): intent, tag, status, fills, slippage")
    add("signals", "recent signals and the entries waiting for approval (semi-live)")
    add("risk", "risk metrics: P&L by day/week/month, drawdown, margin, limits and how much of each is used")
    add("report", "the performance report so far")

    order = add("order", "place a manual order; it goes through the risk gate like any other")
    order.add_argument("side", type=_upper, choices=("BUY", "SELL"), metavar="SIDE", help="BUY or SELL")
    order.add_argument("instrument", nargs="+", metavar="INSTRUMENT",
                       help="as a trader says it: NIFTY ATM CE, NIFTY ATM+2 PE, NIFTY OTM1 CE, NIFTY 26000 CE, "
                            "or a tradingsymbol (NIFTY25DEC26000CE)")
    size = order.add_mutually_exclusive_group(required=True)
    size.add_argument("--lots", type=_positive_int, help="number of lots")
    size.add_argument("--quantity", type=_positive_int, help="units (a multiple of the lot size)")
    order.add_argument("--expiry", metavar="YYYY-MM-DD", help="default: the nearest listed expiry")
    order.add_argument("--type", type=_upper, choices=ORDER_TYPES, metavar="TYPE",
                       help="MARKET (default), LIMIT, SL or SL-M")
    order.add_argument("--price", type=_number, metavar="RUPEES", help="limit price (LIMIT, SL)")
    order.add_argument("--limit", type=_number, metavar="RUPEES", help="short for --type LIMIT --price RUPEES")
    order.add_argument("--trigger", type=_number, metavar="RUPEES", help="trigger price (SL, SL-M)")
    order.add_argument("--protection", type=_number, metavar="PCT",
                       help="market protection: -1 (auto) or a percentage in (0, 100]")
    order.add_argument("--confirm", action="store_true", help="required in live mode: yes, send real money")
    order.add_argument("--dry-run", action="store_true", help="resolve the instrument and answer; place nothing")
    order.add_argument("--reason", help="a note kept with the order (up to 200 characters)")
    order.add_argument("--request-id", metavar="ID", help="your idempotency key (1-40 of A-Z a-z 0-9 - _): the same "
                       "command again with the same ID answers with the first order instead of placing another")

    cancel = add("cancel", "cancel an open order")
    cancel.add_argument("ref", metavar="ID", help="the broker's order id, or our intent id / tag")
    approve = add("approve", "approve a pending entry: it goes through the risk gate at the current price")
    approve.add_argument("ref", metavar="ID", help="the pending intent id or its signal id (see `trader signals`)")
    reject = add("reject", "reject a pending entry")
    reject.add_argument("ref", metavar="ID", help="the pending intent id or its signal id (see `trader signals`)")
    reject.add_argument("--reason", help="why (kept in the journal)")
    flatten = add("flatten", "close every open position, or those of one underlying")
    flatten.add_argument("underlying", nargs="?", metavar="UNDERLYING", help="e.g. NIFTY; default: all")
    halt = add("halt", "stop trading: no new orders until `trader resume`")
    halt.add_argument("--reason", help="why (shown in `trader status`)")
    add("resume", "trade again after a halt")
    add("reset-daily", "clear a breached day: the daily limits let trading resume")

    from trader.control.healthcheck import add_healthcheck_command  # noqa: PLC0415 - it imports this module

    add_healthcheck_command(sub)  # no token: GET /healthz is open (Docker's HEALTHCHECK)


# -- connection -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Target:
    url: str
    token: str
    token_source: str
    order_wait_s: float


def _check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url!r}: give the daemon's base URL, e.g. http://127.0.0.1:8780")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise UsageError(f"--url {url!r}: the port is not a number 0-65535") from None
    from trader.service_settings import is_loopback  # noqa: PLC0415 - light; only when a URL is given

    if parts.scheme == "http" and not is_loopback(parts.hostname):
        print(f"warning: {url.strip()} is plain http to another machine: the control token (which can place orders) "
              "crosses the network in clear text; use https behind a TLS proxy, or an SSH tunnel to 127.0.0.1",
              file=sys.stderr)
    return url.strip().rstrip("/")


def settings_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a daemon bound to ``host``:``port``."""
    if port == 0:
        raise UsageError("control.port is 0 (any free port), so the CLI cannot know which port the daemon took: "
                         "pass --url http://127.0.0.1:<port> from its control_api_listening log line, or set "
                         "control.port / TRADER_CONTROL__PORT")
    if host in ("0.0.0.0", ""):  # bound to every address: this machine reaches it on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _read_token_file(path: Path, flag: bool) -> tuple[str, str]:
    where = f"--token-file {path}" if flag else f"the file {path.absolute()}"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if flag:
            raise UsageError(f"--token-file {path}: no such file") from None
        return "", (f"control.token and {TOKEN_ENV} are not set and {path.absolute()} does not exist (the daemon "
                    "creates it on its first start; is its data_dir another one?)")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if flag:
            raise UsageError(f"--token-file {path}: cannot read it ({reason})") from None
        return "", f"control.token and {TOKEN_ENV} are not set and {path.absolute()} cannot be read ({reason})"
    if not token:
        if flag:
            raise UsageError(f"--token-file {path}: the file is empty")
        return "", f"control.token and {TOKEN_ENV} are not set and {path.absolute()} is empty"
    return token, where


def target(args: argparse.Namespace) -> Target:
    """URL, token (and where it came from) and the order wait, from the flags and the settings."""
    settings = None
    if args.url is None or args.token_file is None or args.config is not None:
        from trader.config import ConfigError, load_settings  # noqa: PLC0415 - only when the flags do not say it all

        try:
            settings = load_settings({}, args.config)
        except ConfigError as exc:
            raise UsageError("\n".join(exc.lines)) from None
    if args.url is not None:
        url = _check_url(args.url)
    else:
        assert settings is not None
        url = settings_url(settings.control.host, settings.control.port)
    if args.token_file is not None:
        token, source = _read_token_file(args.token_file, flag=True)
    else:
        assert settings is not None
        token = settings.control.token.get_secret_value()
        if token:
            if os.environ.get(TOKEN_ENV):
                source = f"the environment variable {TOKEN_ENV}"
            elif args.config is not None:
                source = f"control.token in {args.config}"
            else:
                source = "control.token in the settings"
        else:
            from trader.control.token import token_file  # noqa: PLC0415 - the daemon's file, named in one place

            token, source = _read_token_file(token_file(settings), flag=False)
    wait = settings.control.order_wait_seconds if settings is not None else _MAX_ORDER_WAIT_S
    return Target(url, token, source, wait)


# -- running a command ------------------------------------------------------------------------------------------------
def _fail(command: str, message: str) -> None:
    for line in message.splitlines() or [""]:
        print(f"trader {command}: {line}", file=sys.stderr)


def _print_json(document: dict[str, Any]) -> None:
    try:
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left: the exit code still tells what happened
        _quiet_stdout()


def _quiet_stdout() -> None:
    """Python's recipe for a closed pipe: point stdout at /dev/null so the flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def run(args: argparse.Namespace) -> int:
    """Carry out one operator command; the exit code (0 ok, 1 refused, 2 usage / bad request, 3 unreachable)."""
    try:
        return _run(args)
    except BrokenPipeError:  # `trader orders | head`: the reader left before the table was written
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        what = ("" if args.command in READS
                else " (the daemon may still carry it out: look with `trader status` / `trader orders`)")
        print(f"trader {args.command}: interrupted{what}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    command: str = args.command
    try:
        call = BUILDERS[command](args)
        where = target(args)
    except UsageError as exc:
        _fail(command, str(exc))
        if args.json:
            _print_json({"error": {"code": "usage", "message": str(exc)}})
        return EXIT_USAGE
    client = ControlClient(where.url, where.token, token_source=where.token_source)
    try:
        if call.method == "GET":
            answer: Answer = client.get(call.path, timeout_s=DEFAULT_TIMEOUT_S)
        else:  # an act: the daemon answers once the bus has its outcome, or after order_wait_seconds
            answer = client.post(call.path, call.body, timeout_s=where.order_wait_s + _ORDER_WAIT_MARGIN_S)
    except ClientError as exc:
        _fail(command, exc.message)
        if args.json:
            _print_json(exc.as_document())
        return exc.exit_code
    if args.json:
        _print_json(answer.document)
        return 0
    from trader.control import render  # noqa: PLC0415 - rich only for the operator commands

    render.show(command, answer, render.console())
    return 0
