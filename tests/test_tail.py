"""`trader tail`: a file or stdin, the filters, --since with an injected now, malformed lines, --follow on a growing
(truncated, rotated) file, a closed stdout; and `trader run`'s console: human lines on a real terminal (pty), JSON
lines through a pipe."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
from datetime import date, time
from pathlib import Path
from typing import Any

import orjson
import pytest

from trader.cli import build_parser
from trader.market.calendar import ist_ns
from trader.tail import follow_lines, parse_since, run_tail

from helpers import daemon_env, wait_until

S = 1_000_000_000
MIN = 60 * S
NOW = ist_ns(date(2026, 11, 20), time(11, 0))  # the injected now: Fri 20 Nov 2026 11:00 IST
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HUMAN = re.compile(r"^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d (DEBUG|INFO |WARN |ERROR|CRIT ) \S")


def ev(event: str, ts_ns: int, level: str = "info", **fields: Any) -> bytes:
    return orjson.dumps({**fields, "event": event, "level": level, "ts_ns": ts_ns})


# A morning's log, one event a minute from 09:15 IST, with two lines that are not log events in it.
LOG = [
    ev("daemon_started", ist_ns(date(2026, 11, 20), time(9, 15)), mode="paper", capital_inr=100000.0),
    ev("heartbeat", ist_ns(date(2026, 11, 20), time(9, 16)), ticks_in=10, equity_inr=100000.0, day_pnl_inr=0.0),
    ev("intent", ist_ns(date(2026, 11, 20), time(9, 30)), side="BUY", quantity=65, tradingsymbol="NIFTYX",
       expected_price_inr=23.05, intent_id="I1"),
    ev("order_placed", ist_ns(date(2026, 11, 20), time(9, 31)), side="BUY", quantity=65, tradingsymbol="NIFTYX",
       order_id="O1"),
    b"Traceback (most recent call last): not a log line",
    ev("fill", ist_ns(date(2026, 11, 20), time(10, 0)), side="BUY", quantity=65, tradingsymbol="NIFTYX",
       price_inr=23.4, slippage_inr=0.35, slippage_bps=151.84),
    ev("risk_state", ist_ns(date(2026, 11, 20), time(10, 30)), "warning", state="ACTIVE", risk_level="HIGH",
       reason="day loss at 75% of the limit"),
    b"[1, 2, 3]",
    ev("order_rejected", ist_ns(date(2026, 11, 20), time(10, 50)), "warning", reason="broker: margin"),
    ev("daemon_failed", ist_ns(date(2026, 11, 20), time(10, 55)), "error"),
]


def tail(*argv: str, stdin: bytes = b"", now_ns: int = NOW) -> tuple[int, list[str], str]:
    """`trader tail ARGV` in process with an injected now: (exit code, output lines without colour, stderr)."""
    args = build_parser().parse_args(["tail", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_tail(args, stdin=io.BytesIO(stdin), stdout=out, stderr=err, now_ns=now_ns)
    return code, out.getvalue().splitlines(), err.getvalue()


@pytest.fixture
def logfile(tmp_path: Path) -> Path:
    path = tmp_path / "trader.log"
    path.write_bytes(b"\n".join(LOG) + b"\n")
    return path


def names(lines: list[str]) -> list[str]:
    found = []
    for x in lines:
        m = HUMAN.match(x)
        found.append(x.split()[3 if x[4] == "-" else 2] if m else f"RAW:{x}")
    return found


def test_a_file_every_event_as_a_human_line_and_the_malformed_lines_raw_and_counted(logfile: Path) -> None:
    code, lines, err = tail(str(logfile))
    assert code == 0
    assert names(lines) == ["daemon_started", "heartbeat", "intent", "order_placed",
                            "RAW:Traceback (most recent call last): not a log line", "fill", "risk_state",
                            "RAW:[1, 2, 3]", "order_rejected", "daemon_failed"]
    assert lines[0] == "2026-11-20 09:15:00 INFO  daemon_started         mode=paper capital_inr=₹1,00,000.00"
    assert lines[2] == "09:30:00 INFO  intent                 BUY 65 NIFTYX @ ₹23.05 intent_id=I1"
    assert err == "trader tail: 2 line(s) were not log events (shown as they are)\n"


def test_stdin_is_read_when_no_file_or_dash_is_given(logfile: Path) -> None:
    for argv in ((), ("-",)):
        code, lines, _ = tail(*argv, stdin=logfile.read_bytes())
        assert code == 0 and len(lines) == len(LOG)
        assert tail(*argv, stdin=logfile.read_bytes()) == tail(str(logfile))


def test_orders_risk_and_both(logfile: Path) -> None:
    raw = ["RAW:Traceback (most recent call last): not a log line", "RAW:[1, 2, 3]"]  # always shown
    assert names(tail(str(logfile), "--orders")[1]) == [
        "intent", "order_placed", raw[0], "fill", raw[1], "order_rejected"]
    assert names(tail(str(logfile), "--risk")[1]) == [raw[0], "risk_state", raw[1]]
    assert names(tail(str(logfile), "--orders", "--risk")[1]) == [
        "intent", "order_placed", raw[0], "fill", "risk_state", raw[1], "order_rejected"]


def test_level(logfile: Path) -> None:
    assert [n for n in names(tail(str(logfile), "--level", "warning")[1]) if not n.startswith("RAW")] == [
        "risk_state", "order_rejected", "daemon_failed"]
    assert [n for n in names(tail(str(logfile), "--level", "ERROR")[1]) if not n.startswith("RAW")] == [
        "daemon_failed"]


@pytest.mark.parametrize(("since", "first"), [
    ("10m", "order_rejected"),        # from 10:50: a line on the edge is kept
    ("9m", "daemon_failed"),
    ("1h", "fill"),                   # from 10:00
    ("1.5h", "intent"),               # from 09:30
    ("89m", "order_placed"),
    ("5400s", "intent"),
    ("1d", "daemon_started"),
    ("09:30", "intent"),
    ("10:00:01", "risk_state"),
    ("2026-11-20T10:30", "risk_state"),          # IST
    ("2026-11-20T05:00+00:00", "risk_state"),    # 10:30 IST
    ("2026-11-20", "daemon_started"),
])
def test_since_forms_against_an_injected_now(logfile: Path, since: str, first: str) -> None:
    code, lines, _ = tail(str(logfile), "--since", since)
    kept = [n for n in names(lines) if not n.startswith("RAW")]
    assert code == 0 and kept[0] == first, kept


def test_since_forms_as_instants() -> None:
    assert parse_since("10m", NOW) == NOW - 10 * MIN
    assert parse_since(" 2h ", NOW) == NOW - 120 * MIN
    assert parse_since("30s", NOW) == NOW - 30 * S
    assert parse_since("09:30", NOW) == ist_ns(date(2026, 11, 20), time(9, 30))
    # A time of day still to come today means yesterday's.
    assert parse_since("23:00", NOW) == ist_ns(date(2026, 11, 19), time(23, 0))
    assert parse_since("11:00", NOW) == NOW
    assert parse_since("2026-11-19T15:30", NOW) == ist_ns(date(2026, 11, 19), time(15, 30))
    for bad in ("10x", "yesterday", "25:00", "9:75", "", "-5m"):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad, NOW)


def test_bad_since_and_a_missing_file_exit_2(tmp_path: Path) -> None:
    code, lines, err = tail("--since", "soon")
    assert code == 2 and lines == [] and "10m, 2h" in err
    code, lines, err = tail(str(tmp_path / "absent.log"))
    assert code == 2 and "cannot read" in err and "absent.log" in err


def test_json_passes_the_kept_lines_through_and_the_malformed_ones_to_stderr(logfile: Path) -> None:
    code, lines, err = tail(str(logfile), "--json", "--orders")
    assert code == 0
    assert lines == [x.decode() for x in LOG if x.startswith(b"{") and (b'"intent"' in x or b'"order_' in x
                                                                         or b'"fill"' in x)]
    assert "Traceback (most recent call last): not a log line\n[1, 2, 3]\n" in err


def test_empty_and_odd_input_never_crashes() -> None:
    odd = b"\n".join([b"", b"   ", b"\xff\xfe not utf-8", b'{"event": "x", "ts_ns": 1, "level": 7}',
                      b'{"event": "fill", "ts": "2026-11-20T04:35:00+00:00", "price_inr": "x", "side": null}',
                      b'{"event": "heartbeat", "ts_ns": 1, "ticks_in": [1]}', b"\x00", b"{}"])
    code, lines, err = tail(stdin=odd)
    assert code == 0 and len(lines) == 6, lines
    assert "3 line(s) were not log events" in err
    assert tail(stdin=b"") == (0, [], "")


def test_a_time_out_of_range_is_a_malformed_line_not_a_crash() -> None:
    odd = b"\n".join([b'{"event": "x", "ts": "9999-12-31T23:59:59-12:00"}', b'{"event": "y", "ts_ns": 1, "at_ns": '
                      b'9000000000000000000, "path": "/\\u001b[2J"}'])
    code, lines, err = tail(stdin=odd)
    assert code == 0 and lines[0] == '{"event": "x", "ts": "9999-12-31T23:59:59-12:00"}', lines
    assert "\x1b" not in lines[1] and "path=/\\x1b[2J" in lines[1], lines
    assert "1 line(s) were not log events" in err


def test_colour_only_when_asked(logfile: Path) -> None:
    plain = tail(str(logfile))[1]
    colored = tail(str(logfile), "--color")[1]
    assert plain != colored and [ANSI.sub("", x) for x in colored] == plain
    assert "\x1b[33mWARN \x1b[0m" in colored[6] and colored[4].startswith("\x1b[2mTraceback")


def trader(*args: str) -> list[str]:
    return [sys.executable, "-m", "trader", *args]


def test_stdin_through_a_real_pipe(logfile: Path) -> None:
    result = subprocess.run(trader("tail", "--risk"), input=logfile.read_bytes(), check=False, capture_output=True,
                            timeout=60, env={**os.environ, "NO_COLOR": ""})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert names(lines)[1] == "risk_state" and "\x1b[" not in result.stdout.decode()  # a pipe: no colour
    assert b"2 line(s) were not log events" in result.stderr


def test_a_reader_that_goes_away_ends_it_quietly(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(b"\n".join(LOG[0] for _ in range(20_000)) + b"\n")  # more than a pipe's buffer
    command = f"{sys.executable} -m trader tail {big} | head -2; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", command], check=False, capture_output=True, timeout=60)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2
    assert result.stderr == b""


# -- --follow -----------------------------------------------------------------------------------------------------

class Follower:
    """`trader tail --follow FILE` as a subprocess; its output lines collected by a thread."""

    def __init__(self, path: Path, *args: str) -> None:
        self.proc = subprocess.Popen(trader("tail", "--follow", "--no-color", str(path), *args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def sees(self, text: str) -> None:
        wait_until(f"{text!r} in the output", lambda: any(text in x for x in self.lines), timeout_s=30)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        self.reader.join(10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read().decode()


def test_follow_reads_what_another_writer_appends_through_truncation_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "trader.log"
    path.write_bytes(LOG[0] + b"\n")
    follower = Follower(path, "--orders")
    try:
        writer = path.open("ab", buffering=0)
        writer.write(LOG[1] + b"\n" + LOG[2] + b"\n")  # a heartbeat (filtered out) and an intent
        follower.sees("intent_id=I1")
        writer.write(LOG[3][:20])  # half a line: nothing yet
        writer.write(LOG[3][20:] + b"\n")
        follower.sees("order O1")
        writer.close()
        path.write_bytes(b"")  # truncated (copytruncate): read again from the start
        with path.open("ab", buffering=0) as writer:
            writer.write(ev("fill", NOW, side="SELL", quantity=1, tradingsymbol="AFTER_TRUNCATE") + b"\n")
        follower.sees("AFTER_TRUNCATE")
        path.rename(tmp_path / "trader.log.1")  # rotated by rename, then a new file of the same name
        with (tmp_path / "trader.log.1").open("ab") as old:
            old.write(ev("fill", NOW, side="SELL", quantity=2, tradingsymbol="LAST_IN_OLD") + b"\n")
        path.write_bytes(ev("fill", NOW, side="SELL", quantity=3, tradingsymbol="FIRST_IN_NEW") + b"\n")
        follower.sees("FIRST_IN_NEW")
        code, err = follower.stop()
    finally:
        if follower.proc.poll() is None:
            follower.proc.kill()
            follower.proc.wait()
    assert code == 0 and "Traceback" not in err, err
    assert names(follower.lines) == ["intent", "order_placed", "fill", "fill", "fill"], follower.lines
    last = [x.split()[-1] for x in follower.lines[-3:]]
    assert last == ["AFTER_TRUNCATE", "LAST_IN_OLD", "FIRST_IN_NEW"], follower.lines  # the old file read to its end


def test_follow_lines_stops_when_told_and_gives_a_last_unfinished_line(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"one\ntwo")
    seen: list[bytes] = []
    lines = follow_lines(path, path.open("rb"), stop=lambda: len(seen) >= 1, poll_s=0.01)
    seen.extend(lines)
    assert seen == [b"one\n", b"two"]


# -- trader run's console: a terminal gets human lines, a pipe JSON lines --------------------------------------------

RUN = ("run", "--mode", "backtest", "--days", "1", "--start", "2026-11-20T15:00")  # 40 simulated minutes, seconds


def run_on_a_pty(env: dict[str, str], *args: str) -> list[str]:
    """`trader run ARGS` with stdout on a pseudo-terminal, as in a terminal window; its output lines."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(trader(*RUN, *args), stdout=secondary, stderr=subprocess.DEVNULL, env=env)
    os.close(secondary)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([primary], [], [], 120)
            assert ready, "no output from the daemon for 120 s"
            try:
                chunk = os.read(primary, 65_536)
            except OSError:  # EIO: the daemon exited and closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(60) == 0
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return b"".join(chunks).decode().replace("\r\n", "\n").splitlines()


def test_run_on_a_terminal_writes_coloured_human_lines(tmp_path: Path) -> None:
    env = daemon_env(tmp_path / "data")
    env.pop("NO_COLOR", None)
    lines = run_on_a_pty(env)
    plain = [ANSI.sub("", x) for x in lines]
    assert plain and all(HUMAN.match(x) for x in plain), plain[:5]
    assert plain[0].startswith("20") and names(plain)[0] == "daemon_started"
    assert names(plain)[-1] == "summary" and "trades" in plain[-1] and "net ₹" in plain[-1]
    assert any("\x1b[" in x for x in lines)  # coloured: a terminal, NO_COLOR unset
    # The same run told to write JSON (or NO_COLOR): the flag beats auto, NO_COLOR drops the colours only.
    as_json = run_on_a_pty(daemon_env(tmp_path / "data2", TRADER_LOG_FORMAT="json"))
    assert [orjson.loads(x)["event"] for x in as_json][-1] == "summary"
    no_color = run_on_a_pty(daemon_env(tmp_path / "data3", NO_COLOR="1"), "--log-format", "human")
    assert no_color and all(HUMAN.match(x) for x in no_color) and not any("\x1b[" in x for x in no_color)


def test_run_through_a_pipe_writes_json_lines_unless_told_human(tmp_path: Path) -> None:
    piped = subprocess.run(trader(*RUN), check=False, capture_output=True, timeout=300,
                           env=daemon_env(tmp_path / "data"))
    assert piped.returncode == 0, piped.stderr[-2000:]
    events = [orjson.loads(x) for x in piped.stdout.splitlines()]  # nothing but JSON lines
    assert events[0]["event"] == "daemon_started" and events[-1]["event"] == "summary"
    human = subprocess.run(trader(*RUN, "--log-format", "human"), check=False, capture_output=True, timeout=300,
                           env=daemon_env(tmp_path / "data2"))
    lines = human.stdout.decode().splitlines()
    assert human.returncode == 0 and all(HUMAN.match(x) for x in lines) and "\x1b[" not in human.stdout.decode()
    assert names(lines)[-1] == "summary"
    # The JSON log through trader tail reads like the human console: the same backtest, the same events (the
    # heartbeats aside: they come by wall time) and the same summary line (its time aside).
    tailed = subprocess.run(trader("tail"), input=piped.stdout, check=False, capture_output=True, timeout=60)
    tailed_lines = tailed.stdout.decode().splitlines()
    assert [n for n in names(tailed_lines) if n != "heartbeat"] == [n for n in names(lines) if n != "heartbeat"]
    strip = re.compile(r"^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d ")
    assert strip.sub("", tailed_lines[-1]) == strip.sub("", lines[-1])


def test_human_console_into_a_reader_that_goes_away_stops_the_daemon_quietly(tmp_path: Path) -> None:
    """The closed-output guard holds for human lines too: `trader run --log-format human | head -3` exits 0 quietly."""
    command = (f"{sys.executable} -m trader run --speed 600 --start 2026-11-20T10:00 --log-format human | head -3; "
               "exit ${PIPESTATUS[0]}")
    result = subprocess.run(["bash", "-c", command], check=False, capture_output=True, timeout=120,
                            env=daemon_env(tmp_path / "data"))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3 and all(HUMAN.match(x) for x in lines) and names(lines)[0] == "daemon_started"
    assert b"Traceback" not in result.stderr
