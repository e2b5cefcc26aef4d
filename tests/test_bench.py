"""Every bench script runs in quick mode and prints its figures, so an import or signature break in bench/ fails CI.

Speeds are not asserted (the machine may be loaded): only the structure of the output. Each standard-output line is
one figure with the baseline measured in the same run and the ratio figure ÷ baseline; with ``--json`` the last line
is one JSON object holding the same figures.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TIMEOUT_S = 600  # quick mode takes seconds; a loaded 2-core machine may take many times as long

# Written here rather than imported from bench/benchlib.py, so the format is checked independently of its writer.
NUMBER = r"[\d,]+(?:\.\d+)?"
FIGURE = re.compile(
    rf"^(?P<label>[^|]+?): (?P<value>{NUMBER}) (?P<unit>\S+)"
    rf" \| baseline (?P<baseline_label>[^|]+?) (?P<baseline>{NUMBER}) (?P<baseline_unit>\S+)"
    rf" \| (?P<ratio>{NUMBER})x$"
)

# bench/backtest.py compares with the peers that are installed (the optional `bench` extra; `make test` has none).
PEERS = [name for module, name in (("nautilus_trader", "NautilusTrader"), ("backtrader", "backtrader"))
         if importlib.util.find_spec(module) is not None]
LATENCY = [f"{path} {q} at a paced 5,000 ticks/s" for path in ("tick→intent", "tick→order") for q in ("p50", "p99")]
EXPECTED = {
    "backtest.py": ["ours, replayed day through App backtest (EMA crossover)", "ours, peak RSS of the backtest process",
                    *[f"ours vs {peer}, {what}" for peer in PEERS for what in ("ticks/s on the same day", "peak RSS")]],
    "alerts.py": [f"tick→order {q} with alerts to a black hole" for q in ("p50", "p99")],
    "bus.py": ["bus + 5 actors, synthetic market (App backtest)", "bus + 5 actors, replayed ticks (App backtest)",
               *LATENCY, "tick→order p50 with the journal on", "tick→order p99 with the journal on"],
    "recorder.py": ["tick recorder, ticks to atomic Parquet parts (writer thread)",
                    "tick recorder, compaction of the parts into the day's file",
                    "tick recorder, TickRecorder.record on the event loop"],
    "decode.py": [f"ours {parser}, {mode}" for mode in ("full mode (184-byte packets)", "quote mode (44-byte packets)")
                  for parser in ("decode_frame (Tick + depth)", "decode_to_dicts (official shape)")],
}


@functools.cache  # one run per script serves every test below
def run_quick(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH / script), "--quick", "--json"], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=TIMEOUT_S,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"}, check=False)


def as_float(text: str) -> float:
    return float(text.replace(",", ""))


# Run elsewhere, once: the crash harness takes minutes even with --quick, so tests/test_crash.py runs it (as a function,
# with about 10 kills) and checks its lines there rather than here a second time.
RUN_ELSEWHERE = {"crash.py": "tests/test_crash.py"}
LIBRARIES = ("benchlib.py", "peers.py", "crash_venue.py")  # imported by the scripts, not run


def test_every_bench_script_is_run_here() -> None:
    scripts = sorted(p.name for p in BENCH.glob("*.py") if p.name not in LIBRARIES)
    assert scripts == sorted([*EXPECTED, *RUN_ELSEWHERE])
    assert all((ROOT / test).is_file() for test in RUN_ELSEWHERE.values())


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_bench_script_prints_its_figures_in_quick_mode(script: str) -> None:
    proc = run_quick(script)
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    *lines, last = proc.stdout.splitlines()
    results = json.loads(last)

    matches = [FIGURE.match(line) for line in lines]
    bad = [line for line, match in zip(lines, matches, strict=True) if match is None]
    assert not bad, f"not a figure line (figure | baseline | ratio): {bad}"
    figures = [m for m in matches if m is not None]
    assert [m["label"] for m in figures] == EXPECTED[script]
    for m in figures:
        assert m["unit"] == m["baseline_unit"], m.group(0)
        value, baseline, ratio = as_float(m["value"]), as_float(m["baseline"]), as_float(m["ratio"])
        assert value > 0 and baseline > 0, m.group(0)
        # All three are printed to three significant digits: the ratio is the figure over the baseline.
        assert ratio == pytest.approx(value / baseline, rel=0.02), m.group(0)

    assert [f["label"] for f in results["figures"]] == EXPECTED[script]
    for printed, stored in zip(figures, results["figures"], strict=True):
        assert stored["baseline_label"] == printed["baseline_label"]
        assert stored["unit"] == printed["unit"]
        assert stored["ratio"] == pytest.approx(stored["value"] / stored["baseline"], rel=1e-3)


def test_bus_bench_risk_gate_approves_most_intents() -> None:
    """A latency run in which the risk gate refuses the intents would measure nothing."""
    proc = run_quick("bus.py")
    assert proc.returncode == 0, proc.stderr[-4000:]
    latency = json.loads(proc.stdout.splitlines()[-1])["latency"]
    assert latency["intents"] > 0
    assert latency["approved"] > latency["intents"] / 2, latency["refusals"]
    assert latency["approved"] + latency["refused"] == latency["intents"]
    assert "risk gate approved" in proc.stderr


def test_backtest_bench_replays_every_row_of_its_day() -> None:
    """ticks/s of a run that dropped rows (bad data, an early stop) would flatter it; RSS is each engine's own."""
    proc = run_quick("backtest.py")
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.splitlines()[-1])
    engines = results["engines"]
    assert results["rows"] == 41 * 1_800  # the index and 40 options once a second for 30 minutes
    for name in ("ours", "ours-read", *[e for e in ("nautilus", "backtrader") if e in engines]):
        assert engines[name]["ticks"] == results["rows"], name
    assert engines["ours"]["invalid"] == 0
    assert engines["ours"]["max_rss_mb"] > engines["idle"]["max_rss_mb"] > 0
    assert "target peak RSS < 200 MB" in proc.stderr
