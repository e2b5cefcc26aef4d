"""The crash harness (``bench/crash.py``) in the suite: about 10 SIGKILLs of the live daemon against ``trader sim``
with the fault knobs on, and every invariant holds — with the daemon on Kite's wire, and on Fyers' (``--venue fyers``:
REST, the HSM data socket and the order socket of the same simulated exchange).

The harness runs as a function, in this process: it starts the simulator and the daemon as real subprocesses, waits
on their log lines and the simulator's book (never a fixed sleep), and stops every process it started before it
returns, also when it fails. ``bench/crash.py --kills 200`` is the full run.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import crash  # bench/ is not a package: its scripts import each other by module name

KILLS = {"kite": 10, "fyers": 8}


@pytest.fixture(scope="module", params=["kite", "fyers"])
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> crash.Report:
    """One run per venue serves every test below (a few minutes each on a loaded 2-core machine)."""
    venue = request.param
    return crash.run(crash.Options(kills=KILLS[venue], seed=8, faults=True, venue=venue,
                                   work_dir=tmp_path_factory.mktemp(f"crash-{venue}")))


def failure_message(report: crash.Report) -> str:
    findings = [f"[{f.kind}] {f.message}\n    " + "\n    ".join(f.evidence[-4:]) for f in report.findings.values()]
    return "\n".join([*report.figures(), *findings, f"aborted: {report.aborted}", f"logs: {report.work_dir}"])


def test_every_process_the_harness_started_is_gone(report: crash.Report) -> None:
    assert report.leftover_pids == []


def test_the_harness_killed_and_restarted_the_daemon_and_it_traded(report: crash.Report) -> None:
    assert not report.aborted, failure_message(report)
    kills = KILLS[report.options.venue]
    assert sum(report.kills.values()) == kills
    assert len(report.restart_ready_ms) >= kills // 2, failure_message(report)  # start-up kills never get ready
    assert report.orders > 0, "the daemon never traded: nothing was tested"
    assert report.intents > 0 and report.position_checks > 0, failure_message(report)  # the checks really ran


def test_no_duplicate_order_no_lost_intent_no_mismatch_no_breach(report: crash.Report) -> None:
    counts = {kind: report.count(kind) for kind in crash.INVARIANTS}
    assert counts == dict.fromkeys(crash.INVARIANTS, 0), failure_message(report)


def test_figure_lines(report: crash.Report) -> None:
    lines = report.figures()
    assert lines[0] == f"kills: {KILLS[report.options.venue]}"
    assert [line.split(":")[0] for line in lines[1:5]] == list(crash.INVARIANTS)
    timing = re.compile(r"^restart → ready (p50|p99): [\d,.]+ ms \| baseline first start → ready [\d,.]+ ms \| "
                        r"[\d,.]+x$")
    assert sum(1 for line in lines if timing.match(line)) == 2, lines
    as_json = json.loads(json.dumps(report.as_dict(), default=str))  # what --json prints as its last line
    assert as_json["kills_total"] == KILLS[report.options.venue]
    assert set(as_json["counts"]) == set(crash.INVARIANTS)
