"""``trader healthcheck``: ``GET /healthz`` on the daemon of these settings, for Docker's ``HEALTHCHECK`` (the slim
image has no curl) and for scripts.

The URL is found as the operator commands find it (``--url``, else ``control.host`` / ``control.port`` of the same
settings ``trader run`` reads); ``/healthz`` needs no token, so none is read. Exit codes: 0 healthy, 1 unhealthy
(the failing checks are printed), 2 a usage or settings problem, 3 the daemon not reachable. ``--json`` prints the
daemon's health document (or the error) as is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trader.control.client import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    ClientError,
    ControlClient,
    Unreachable,
)
from trader.control.commands import UsageError, _check_url, _print_json, settings_url

DEFAULT_TIMEOUT_S = 5.0
EXIT_UNHEALTHY = EXIT_REFUSED  # 1: what Docker's HEALTHCHECK reads as unhealthy


def add_healthcheck_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "is the running daemon healthy? GET /healthz: exit 0 healthy, 1 unhealthy, 3 not reachable"
    parser = sub.add_parser("healthcheck", help=text, description=text)
    parser.add_argument("--url", help="control API base URL, e.g. http://127.0.0.1:8780 (default: from "
                        "control.host / control.port)")
    parser.add_argument("--config", type=Path, help="the daemon's TOML file, read as `trader run` "
                        "reads it")
    parser.add_argument("--json", action="store_true", help="print the daemon's health document")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"give up after this long (default {DEFAULT_TIMEOUT_S:g}; exit 3)")
    parser.set_defaults(control=run)


def resolve_url(args: argparse.Namespace) -> str:
    if args.url is not None:
        return _check_url(args.url)
    from trader.config import ConfigError, load_settings  # noqa: PLC0415 - settings only when no --url

    try:
        settings = load_settings({}, args.config)
    except ConfigError as exc:
        raise UsageError("\n".join(exc.lines)) from None
    return settings_url(settings.control.host, settings.control.port)


def _show(document: dict[str, Any]) -> None:
    checks = document.get("checks")
    if not isinstance(checks, dict):
        return
    for name, check in checks.items():
        if isinstance(check, dict):
            mark = "ok  " if check.get("ok") else "FAIL"
            print(f"  {mark} {name}: {check.get('detail', '')}")


def run(args: argparse.Namespace) -> int:
    try:
        if not 0 < args.timeout <= 300:
            raise UsageError(f"--timeout {args.timeout:g}: give 0-300 seconds")
        url = resolve_url(args)
    except UsageError as exc:
        for line in str(exc).splitlines():
            print(f"trader healthcheck: {line}", file=sys.stderr)
        if args.json:
            _print_json({"error": {"code": "usage", "message": str(exc)}})
        return EXIT_USAGE
    client = ControlClient(url, "", token_source="(no token: /healthz is open)")
    try:
        answer = client.get("/healthz", timeout_s=args.timeout)  # bounded in all (client.py)
    except ClientError as exc:
        document = exc.document
        if exc.status == 503 and isinstance(document, dict) and "checks" in document:
            if args.json:
                _print_json(document)
            else:
                failing = [str(name) for name in document.get("failing", [])]
                print(f"unhealthy ({url}): failing {', '.join(failing) or '?'}")
                _show(document)
            return EXIT_UNHEALTHY
        print(f"trader healthcheck: {exc.message}", file=sys.stderr)
        if args.json:
            _print_json(exc.as_document())
        return exc.exit_code if isinstance(exc, Unreachable) else EXIT_UNHEALTHY
    document = answer.document
    if document.get("ok") is not True:  # a 200 that does not say ok: not our daemon's answer
        print(f"trader healthcheck: {url}/healthz answered without \"ok\": true: is another program listening?",
              file=sys.stderr)
        if args.json:
            _print_json(document)
        return EXIT_UNHEALTHY
    if args.json:
        _print_json(document)
    else:
        print(f"healthy ({url})")
        _show(document)
    return EXIT_OK
