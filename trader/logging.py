"""structlog → one JSON object per line (orjson), secrets redacted, wall-time ``ts`` plus ``ts_ns``; or, for a
person at a terminal (``log_format`` human, or auto on a TTY), one human line per event rendered by
``trader.logview`` from the same redacted event.

Event-time fields (``event_ts_ns``) come from the Clock and are added by the callers that log events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, BinaryIO, TextIO

import orjson
import structlog
from pydantic import SecretStr

_SECRET_KEY = re.compile(r"(secret|token|password|api_key|authorization)", re.IGNORECASE)
_REDACTED = "**********"
# Ids that contain the word "token" but are not secrets.
_NOT_SECRET = frozenset({"instrument_token", "tokens", "spot_token", "token_file"})


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return _REDACTED
    if isinstance(value, Mapping):
        return {k: _REDACTED if _is_secret_key(k) else _redact(v) for k, v in value.items()}
    return value


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key not in _NOT_SECRET and bool(_SECRET_KEY.search(key))


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _REDACTED if _is_secret_key(key) and value else _redact(value)
    return event_dict


def add_timestamps(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Operators read wall time; the clock port gives event time, which callers log separately.
    ts_ns = time.time_ns()
    event_dict["ts"] = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).isoformat(timespec="microseconds")
    event_dict["ts_ns"] = ts_ns
    return event_dict


def _default(obj: Any) -> Any:
    if isinstance(obj, SecretStr):
        return _REDACTED
    return _printable(str(obj))


def _printable(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of a file name or an environment variable) as ``\\udcff``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _encodable(obj: Any) -> Any:
    """What orjson refuses, made encodable: strings with lone surrogates, integers past 64 bits (as text)."""
    if isinstance(obj, str):
        return _printable(obj)
    if isinstance(obj, int) and not isinstance(obj, bool) and not -(2**63) <= obj < 2**64:
        return str(obj)
    if isinstance(obj, Mapping):
        return {_encodable(key) if isinstance(key, str) else key: _encodable(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_encodable(value) for value in obj]
    return obj


def _dumps(obj: Any, **_: Any) -> bytes:
    """One log event as JSON; never raises (a log call must not fail the code that logs)."""
    try:
        return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        pass
    try:
        return orjson.dumps(_encodable(obj), default=_default, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, RecursionError) as exc:  # e.g. nested deeper than orjson's 255 levels
        event = obj.get("event") if isinstance(obj, Mapping) else None
        return orjson.dumps({"event": _printable(str(event)), "level": "error",
                             "log_error": f"{type(exc).__name__}: {exc}"[:200]})


class ClosedOutputGuard:
    """The log's byte stream, made safe against a reader that goes away (``trader run | head``, a dead ``jq``) or a
    stream object closed under it (``ValueError: write to closed file``): a log call must never crash the actor that
    logs, or an actor's crash handler would crash too and its inbox would never drain.

    The first ``BrokenPipeError`` (or write to a closed file) points the file descriptor, if any is left, at
    ``/dev/null`` (so nothing later, not even the interpreter's final flush, writes to the dead pipe and prints a
    traceback) and calls ``on_closed`` once: the daemon stops gracefully, since nobody can see what it does any more.
    """

    def __init__(self, binary: BinaryIO) -> None:
        self._binary = binary
        self.closed_output = False
        self.on_closed: Callable[[], None] | None = None
        self.notified = False

    def write(self, data: bytes) -> int:
        if self.closed_output:
            return len(data)
        try:
            return self._binary.write(data)
        except (BrokenPipeError, ValueError):
            self._closed()
            return len(data)

    def flush(self) -> None:
        if self.closed_output:
            return
        try:
            self._binary.flush()
        except (BrokenPipeError, ValueError):
            self._closed()

    def _closed(self) -> None:
        self.closed_output = True
        with contextlib.suppress(OSError, ValueError):  # ValueError: a closed file object has no descriptor left
            fd = self._binary.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        if self.on_closed is None or self.notified:
            return  # not registered yet: ``on_output_closed`` calls it when it is
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (start-up, or after the run): nothing is running that could be told
        self.notified = True
        # Not from here: we are inside the logger's write (it holds its lock), and the callback logs.
        loop.call_soon(self.on_closed)


_guard: ClosedOutputGuard | None = None


def on_output_closed(callback: Callable[[], None]) -> None:
    """Call ``callback`` (once) when the log's reader goes away — at once if it already has (during start-up).

    Call it outside the event loop's logging (from the CLI, before the run); a no-op for streams without a byte
    buffer (tests' ``io.StringIO``).
    """
    if _guard is None:
        return
    _guard.on_closed = callback
    if _guard.closed_output and not _guard.notified:
        _guard.notified = True
        callback()


def human_output(log_format: str, stream: Any) -> bool:
    """``log_format`` auto | json | human → whether ``stream`` gets human lines (auto: only on a terminal)."""
    if log_format == "auto":
        isatty = getattr(stream, "isatty", None)
        try:
            return bool(isatty()) if isatty is not None else False
        except (ValueError, OSError):
            return False
    return log_format == "human"


class HumanRenderer:
    """The last processor in human format: the redacted event dict → one line by ``trader.logview``."""

    def __init__(self, *, color: bool, as_bytes: bool) -> None:
        from trader.logview import LineFormatter  # noqa: PLC0415 - logview imports the calendar, which logs

        self._formatter = LineFormatter(color=color)
        self._as_bytes = as_bytes

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> str | bytes:
        line = self._formatter.format(event_dict)
        return line.encode("utf-8", "backslashreplace") if self._as_bytes else _printable(line)


def configure_logging(level: str = "INFO", stream: TextIO | None = None, log_format: str = "json") -> None:
    """Idempotent; ``stream`` defaults to stdout. ``log_format``: json (one JSON object per line), human (one
    readable line per event, coloured on a terminal unless ``NO_COLOR`` is set) or auto (human on a terminal, JSON
    otherwise: a pipe, a file, systemd's journal, Docker). Secrets are redacted before either renderer sees them."""
    global _guard  # noqa: PLW0603 - one process, one log output
    out = stream if stream is not None else sys.stdout
    binary = getattr(out, "buffer", None)
    human = human_output(log_format, out)
    factory: Any
    renderer: Any
    _guard = None
    if human:
        from trader.logview import color_wanted  # noqa: PLC0415 - see HumanRenderer

        renderer = HumanRenderer(color=color_wanted(out), as_bytes=binary is not None)
    if binary is not None:
        if not human:
            renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        _guard = ClosedOutputGuard(binary)
        factory = structlog.BytesLoggerFactory(file=_guard)  # type: ignore[arg-type]  # a write/flush byte sink
    else:  # a text stream without a byte buffer (tests use io.StringIO)
        if not human:
            renderer = structlog.processors.JSONRenderer(serializer=lambda o, **_: _dumps(o).decode())
        factory = structlog.PrintLoggerFactory(file=out)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_timestamps,
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(logger_name=name)
