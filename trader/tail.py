"""``trader tail [FILE|-]``: the daemon's JSON log as one human line per event (trader/logview.py formats them).

It reads standard input when no file (or ``-``) is given, so ``trader run | trader tail`` and
``journalctl -u trader -o cat | trader tail`` work; a file otherwise, and with ``--follow`` it keeps reading a file
that grows (starting over when the file is truncated, reopening it when it is rotated, i.e. replaced by a new file
of the same name). Filters: ``--orders`` (intents, approvals, orders, fills, closed trades), ``--risk`` (risk level
and state, halts, limits, flattens, the kill switch, commands, refusals), both together = either; ``--since``
(``10m``, ``2h``, ``30s``, ``1d`` back from now; ``09:30`` = the latest 09:30 IST; an ISO date or date-time, IST
unless it names a zone); ``--level WARNING`` (that level and above). ``--json`` prints the kept lines as they are
(JSON), for ``jq``.

A line that is not a log event (not JSON, not an object, no ``event`` or time) is printed as it is (dimmed: a
traceback, a message on the same stream) and counted; the count is said on stderr at the end. Exit code 0 at the
end of the input (or Ctrl-C while following), 2 for bad arguments or a file that cannot be read. A reader that
goes away (``trader tail | head``) ends it quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, TextIO

from trader.logview import (
    LEVELS,
    LineFormatter,
    color_wanted,
    event_time_ns,
    format_raw,
    level_of,
    parse_line,
    safe_text,
)
from trader.market.calendar import IST, utc_ns

EXIT_USAGE = 2
NS_PER_SECOND = 1_000_000_000
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_POLL_S = 0.2  # how often a followed file that has not grown is looked at again


def add_tail_command(sub: Any) -> None:
    """``trader tail`` on the CLI's sub-command parsers."""
    tail = sub.add_parser("tail", help="show the daemon's JSON log (a file or stdin) as human lines, filtered",
                          description="Show the daemon's JSON log as one human line per event: time in IST, level, "
                                      "event, key fields, money in rupees.")
    tail.add_argument("file", nargs="?", default="-", help="the log file; stdin when absent or '-'")
    tail.add_argument("-f", "--follow", action="store_true",
                      help="keep reading the file as it grows (survives truncation and rotation); Ctrl-C stops")
    tail.add_argument("--orders", action="store_true", help="only intents, approvals, orders, fills, closed trades")
    tail.add_argument("--risk", action="store_true",
                      help="only risk events: risk state and level, halts, limits, flattens, kill switch, commands")
    tail.add_argument("--since", metavar="WHEN",
                      help="only lines from then on: 10m, 2h, 30s, 1d (ago), 09:30 (IST, the latest), or an ISO "
                           "date/date-time (IST unless a zone is given)")
    tail.add_argument("--level", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                      help="only lines at this level and above")
    tail.add_argument("--json", action="store_true", help="print the kept lines as they are (JSON), e.g. for jq")
    tail.add_argument("--dates", action="store_true", help="the IST date on every line, not only when it changes")
    tail.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                      help="colours by level (default: on a terminal, unless NO_COLOR is set)")


def parse_since(text: str, now_ns: int) -> int:
    """``--since`` → an instant in ns UTC; ``ValueError`` (saying what is accepted) for anything else.

    ``10m`` / ``2h`` / ``30s`` / ``1d``: that long before ``now_ns``. ``09:30`` (or ``09:30:15``): that IST time on
    ``now_ns``'s IST day, or the day before if it is still to come. An ISO date (its 00:00) or date-time: IST unless
    it names a zone."""
    given = text.strip()
    span = _SPAN.fullmatch(given)
    if span:
        try:
            return now_ns - int(float(span.group(1)) * _UNIT_SECONDS[span.group(2)] * NS_PER_SECOND)
        except OverflowError:  # 10^400 seconds: inf
            raise ValueError(f"--since {text[:40]}…: a span too long to count back") from None
    clock = _CLOCK.fullmatch(given)
    if clock:
        hour, minute, second = int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"--since {text}: not a time of day (HH:MM or HH:MM:SS, IST)")
        now = datetime.fromtimestamp(now_ns // NS_PER_SECOND, tz=IST)
        moment = now.replace(hour=hour, minute=minute, second=second, microsecond=0)
        if utc_ns(moment) > now_ns:
            moment -= timedelta(days=1)  # 23:00 asked at 01:00: last night's
        return utc_ns(moment)
    try:
        moment = datetime.fromisoformat(given)
    except ValueError:
        raise ValueError(f"--since {text!r}: write a span (10m, 2h, 30s, 1d), an IST time of day (09:30) or an ISO "
                         "date-time (2026-11-20T09:30, IST unless a zone is given)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)
    return utc_ns(moment)


_ORDER_WORDS = frozenset({"order", "orders", "fill", "fills", "intent", "intents", "approval", "approve", "trade"})
_RISK_WORDS = frozenset({"risk", "halt", "halted", "limit", "limits", "flatten", "kill", "breach", "command",
                         "reconciliation", "entries"})


def is_order_event(name: str) -> bool:
    """Orders and their life: intents, approvals, orders, fills, closed trades."""
    return bool(_ORDER_WORDS.intersection(name.split("_")))


def is_risk_event(event: Mapping[str, Any]) -> bool:
    """The risk side: risk level and state changes, halts, limits and breaches, flattens, the kill switch,
    operator commands, the reconciliation gate, and intents the risk gate refused."""
    name = str(event.get("event", ""))
    if name == "intent_rejected" or _RISK_WORDS.intersection(name.split("_")):
        return True
    reason = event.get("reason")
    return isinstance(reason, str) and "kill-switch" in reason


@dataclass(frozen=True)
class TailFilter:
    """Which events ``trader tail`` keeps."""

    orders: bool = False
    risk: bool = False
    since_ns: int | None = None
    min_level: int = 0

    def keeps(self, event: Mapping[str, Any]) -> bool:
        if self.min_level and LEVELS.get(level_of(event), 0) < self.min_level:
            return False
        if self.since_ns is not None:
            ts_ns = event_time_ns(event)
            if ts_ns is None or ts_ns < self.since_ns:
                return False
        if self.orders or self.risk:
            return (self.orders and is_order_event(str(event["event"]))) or (self.risk and is_risk_event(event))
        return True


class Tail:
    """Input lines in, output lines out: formats the kept events, shows the malformed lines raw and counts them."""

    def __init__(self, out: TextIO, keep: TailFilter, *, json_out: bool = False, color: bool = False,
                 dates: bool = False, errors: TextIO | None = None) -> None:
        self.out = out
        self.errors = errors if errors is not None else out
        self.keep = keep
        self.json_out = json_out
        self.color = color
        self.formatter = LineFormatter(color=color, dates=dates)
        self.events = 0
        self.shown = 0
        self.malformed = 0

    def line(self, raw: bytes | str) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = text.rstrip("\r\n")
        if not text.strip():
            return
        event = parse_line(text)
        if event is None:
            self.malformed += 1
            if self.json_out:  # the output stays JSON lines; what is not one goes to stderr
                self.errors.write(safe_text(text) + "\n")
            else:
                self.out.write(format_raw(text, color=self.color) + "\n")
            return
        self.events += 1
        if not self.keep.keeps(event):
            return
        self.shown += 1
        self.out.write((text if self.json_out else self.formatter.format(event)) + "\n")


def read_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The lines of a stream as they come (a pipe's lines one by one, not when the pipe closes)."""
    while True:
        raw = stream.readline()
        if not raw:
            return
        yield raw


def follow_lines(path: Path, handle: IO[bytes], *, stop: Callable[[], bool] = lambda: False,
                 poll_s: float = _POLL_S, idle: Callable[[], None] = lambda: None) -> Iterator[bytes]:
    """The lines of ``path`` (open as ``handle``, which it closes) from its start, then those appended to it,
    until ``stop()``.

    A file that shrinks (truncated: ``> file``, copytruncate rotation) is read again from its start; a file
    replaced by another of the same name (rotation by rename) is read to its end, then the new one from its start.
    A last line without its newline waits for it. ``idle`` is called each time the end is reached (flush output).
    """
    try:
        inode = os.fstat(handle.fileno()).st_ino
        pending = bytearray()  # an unfinished line: grows by the chunk, never copied whole per chunk
        while not stop():
            chunk = handle.read(65_536)
            if chunk:
                yield from _complete_lines(pending, chunk)
                continue
            idle()
            try:
                now = os.stat(path)
            except FileNotFoundError:  # between the rename and the new file: keep the old one until it appears
                now = None
            if now is not None and now.st_ino != inode:
                rest = handle.read()  # written to the old file after the last read, before the rename
                if rest:
                    yield from _complete_lines(pending, rest)
                if pending:
                    yield bytes(pending)
                    pending.clear()
                handle.close()
                handle = path.open("rb")
                inode = os.fstat(handle.fileno()).st_ino
                continue
            if now is not None and now.st_size < handle.tell():
                handle.seek(0)
                pending.clear()
                continue
            time.sleep(poll_s)  # a file gives no notice that it grew: look again shortly
        if pending:
            yield bytes(pending)
    finally:
        handle.close()


def _complete_lines(pending: bytearray, chunk: bytes) -> Iterator[bytes]:
    """The lines ``chunk`` completes (``pending`` + its first part, then its own whole lines); ``pending`` keeps
    the unfinished rest. Linear in the input: a 100 MB line read in 64 KiB chunks is not copied per chunk."""
    if b"\n" not in chunk:
        pending += chunk
        return
    first, *rest = chunk.split(b"\n")
    pending += first
    yield bytes(pending) + b"\n"
    pending[:] = rest.pop()
    for line in rest:
        yield line + b"\n"


def run_tail(args: argparse.Namespace, *, stdin: IO[bytes], stdout: TextIO, stderr: TextIO, now_ns: int) -> int:
    """``trader tail`` with its streams and ``now`` given (tests inject them); the exit code."""
    since_ns = None
    if args.since is not None:
        try:
            since_ns = parse_since(args.since, now_ns)
        except ValueError as exc:
            print(f"trader tail: {exc}", file=stderr)
            return EXIT_USAGE
    keep = TailFilter(orders=args.orders, risk=args.risk, since_ns=since_ns,
                      min_level=LEVELS[args.level.lower()] if args.level else 0)
    tail = Tail(stdout, keep, json_out=args.json, color=color_wanted(stdout, args.color), dates=args.dates,
                errors=stderr)
    from_stdin = args.file == "-"
    live = from_stdin or args.follow
    lines: Iterator[bytes]
    handle: IO[bytes] | None = None
    if from_stdin:
        lines = read_lines(stdin)
    else:
        try:
            handle = Path(args.file).open("rb")  # noqa: SIM115 - closed below, after the loop
        except OSError as exc:
            print(f"trader tail: cannot read {args.file}: {exc.strerror or exc}", file=stderr)
            return EXIT_USAGE
        lines = follow_lines(Path(args.file), handle, idle=stdout.flush) if args.follow else read_lines(handle)
    try:
        for raw in lines:
            tail.line(raw)
            if live:
                stdout.flush()
        stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C while following: the normal way to stop
        with contextlib.suppress(BrokenPipeError):
            stdout.flush()
    finally:
        if handle is not None:
            handle.close()
    if tail.malformed:
        print(f"trader tail: {tail.malformed} line(s) were not log events (shown as they are)", file=stderr)
    return 0


def tail_main(args: argparse.Namespace) -> int:
    """``trader tail`` on the process's own streams and clock."""
    try:
        return run_tail(args, stdin=sys.stdin.buffer, stdout=sys.stdout, stderr=sys.stderr, now_ns=time.time_ns())
    except BrokenPipeError:  # the reader went away (`trader tail | head`): stop quietly
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
            os.close(devnull)
        return 0
