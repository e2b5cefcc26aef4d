"""Hostile log content in the human views (issue #10 fault injection): a field value, an event name, a traceback or
a raw line carrying terminal escape sequences or line breaks must not reach the terminal as such (no screen
clearing, no window-title change, no forged log line), and odd times or spans never crash ``trader tail``."""

from __future__ import annotations

import io
import re
from datetime import date, time
from pathlib import Path
from time import monotonic
from typing import Any

import orjson
import pytest

from trader.cli import build_parser
from trader.logging import configure_logging, get_logger
from trader.logview import LineFormatter
from trader.market.calendar import ist_ns
from trader.tail import follow_lines, parse_since, run_tail

T0 = ist_ns(date(2026, 11, 20), time(10, 5))
# The formatter's own colours are SGR sequences "ESC [ digits;digits m"; anything else after an ESC, or a bare
# control character (BEL, NUL, CR, C1 CSI), came from the log's content.
OWN_SGR = re.compile(r"\x1b\[(?:0|1|2|31|32|33|1;31)m")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE = "ok\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\rFAKE\n10:05:00 CRIT  forged_line"


def injected(text: str) -> list[str]:
    """The control characters left in ``text`` once the formatter's own colours are taken out."""
    return CONTROL.findall(OWN_SGR.sub("", text))


def tail(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    args = build_parser().parse_args(["tail", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_tail(args, stdin=io.BytesIO(stdin), stdout=out, stderr=err, now_ns=T0)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("color", [False, True])
def test_field_values_event_names_and_tracebacks_cannot_inject_escapes_or_lines(color: bool) -> None:
    formatter = LineFormatter(color=color)
    events: list[dict[str, Any]] = [
        {"event": "intent", "level": "info", "ts_ns": T0, "side": "BUY", "quantity": 65,
         "tradingsymbol": "NIFTY\x1b[8m", "reason": HOSTILE},
        {"event": "order_rejected", "level": "warning", "ts_ns": T0, "reason": HOSTILE},
        {"event": "strategy_error", "level": "error", "ts_ns": T0, "error": HOSTILE, HOSTILE: 1},
        {"event": HOSTILE, "level": HOSTILE, "ts_ns": T0},
        {"event": "daemon_failed", "level": "error", "ts_ns": T0, "exception": f"Traceback\n  {HOSTILE}"},
    ]
    for event in events:
        shown = formatter.format(event)
        assert injected(shown) == [], repr(shown)
        rows = shown.split("\n")
        # one line per event, plus the traceback's own indented lines; no row of the content starts a new line
        assert all(row.startswith("    ") for row in rows[1:]), repr(shown)
        assert "pwned" in shown and "evil" in shown  # the text is still shown, only made harmless


def test_the_daemon_human_console_neutralises_a_hostile_reason() -> None:
    out = io.StringIO()
    configure_logging("INFO", out, log_format="human")
    try:
        get_logger("trader.test").warning("order_rejected", reason=HOSTILE, tradingsymbol="NIFTY\x1b[2J")
    finally:
        configure_logging("INFO", io.StringIO(), log_format="json")
    text = out.getvalue()
    assert injected(text) == [] and text.count("\n") == 1, repr(text)


def test_tail_shows_raw_lines_without_their_escapes() -> None:
    code, out, err = tail("--color", stdin=b"raw \x1b[2J line \x00 nul \x07 bel\n" + HOSTILE.encode() + b"\n")
    assert code == 0 and injected(out) == [], repr(out)
    assert "3 line(s) were not log events" in err


@pytest.mark.parametrize("ts", ['"ts": "9999-12-31T23:59:59-12:00"', '"ts": "0001-01-01T00:00:00+14:00"',
                                '"ts_ns": 18446744073709551615', '"ts_ns": -9223372036854775808'])
def test_times_out_of_range_are_raw_lines_not_a_crash(ts: str) -> None:
    line = ('{"event": "x", "level": "info", ' + ts
            + ', "event_ts_ns": 18446744073709551615, "x_ns": 9223372036854775807}').encode()
    code, out, _ = tail(stdin=line + b"\n")
    assert code == 0 and out.strip(), out
    assert tail("--since", "1h", stdin=line + b"\n")[0] == 0


@pytest.mark.parametrize("since", ["9" * 400 + "s", "9" * 400 + ".5d"])
def test_absurd_since_spans_are_usage_errors_not_a_crash(since: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_since(since, T0)
    code, _, err = tail("--since", since)
    assert code == 2 and "--since" in err


def test_follow_reads_a_huge_single_line_in_linear_time(tmp_path: Path) -> None:
    """A 48 MB line (a runaway field) read by --follow in 64 KiB chunks: each chunk used to copy and split the
    whole unfinished line again (quadratic: ~25 s here); now it is appended to, so it takes well under a second."""
    path = tmp_path / "big.log"
    size = 48_000_000
    path.write_bytes(b'{"event": "x", "ts_ns": 1, "blob": "' + b"a" * size + b'"}\n{"event": "after", "ts_ns": 1}\n')
    seen: list[bytes] = []
    started = monotonic()
    for got in follow_lines(path, path.open("rb"), stop=lambda: len(seen) >= 2, poll_s=0.01):
        seen.append(got)
    took = monotonic() - started
    assert [len(x) for x in seen] == [size + 39, 31] and seen[1].startswith(b"{\"event\": \"after\"")
    assert took < 10.0, f"{took:.1f} s"


@pytest.mark.parametrize("log_format", ["json", "human"])
def test_a_log_call_never_raises_on_values_the_json_encoder_refuses(log_format: str, tmp_path: Path) -> None:
    """A lone surrogate (a non-UTF-8 byte of an environment variable or a file name, as Python decodes them) and
    an integer past 64 bits made orjson raise TypeError out of the log call, into the code that logged (e.g. the
    systemd notifier's own failure report). The line is written, with the odd values made printable."""
    path = tmp_path / "log"
    with path.open("w", encoding="utf-8") as stream:  # a real file: its byte buffer is what the daemon writes to
        configure_logging("INFO", stream, log_format=log_format)
        try:
            get_logger("trader.test").warning("odd_values", socket="/run/\udcff\udcfe", big=2**70,
                                              nested={"k\udcff": ["\udcff", -(2**80)]}, fine="ok")
        finally:
            configure_logging("INFO", io.StringIO(), log_format="json")
    text = path.read_text(encoding="utf-8")
    assert "odd_values" in text and "ok" in text and str(2**70) in text and "udcff" in text, text
    if log_format == "json":
        [line] = text.splitlines()
        assert orjson.loads(line)["big"] == str(2**70)


@pytest.mark.parametrize("depth", [300, 1_000])
def test_deeply_nested_json_is_shown_not_a_crash(depth: int) -> None:
    """orjson reads 1,024 levels but writes only 255: a field nested deeper made trader tail die (TypeError, then
    RecursionError in the stdlib's encoder)."""
    line = b'{"event": "deep", "ts_ns": 1, "a": ' + b"[" * depth + b"]" * depth + b"}\n"
    code, out, _ = tail(stdin=line + b'{"event": "after", "ts_ns": 1}\n')
    assert code == 0 and "deep" in out and "after" in out, out[:300]


def test_a_log_call_with_a_deeply_nested_value_does_not_raise(tmp_path: Path) -> None:
    nested: list[object] = []
    for _ in range(2_000):
        nested = [nested]
    path = tmp_path / "log"
    with path.open("w", encoding="utf-8") as stream:
        configure_logging("INFO", stream, log_format="json")
        try:
            get_logger("trader.test").warning("deep_value", value=nested)
        finally:
            configure_logging("INFO", io.StringIO(), log_format="json")
    assert "deep_value" in path.read_text()


def test_tail_json_sends_raw_lines_to_stderr_without_their_escapes() -> None:
    code, out, err = tail("--json", stdin=b"raw \x1b[2J \x1b]0;pwned\x07 line\n")
    assert code == 0 and out == "" and "pwned" in err and injected(err) == [], repr(err)
