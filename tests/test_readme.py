"""The README's library snippets run as written (whatever today's date: the risk snippet's contract may have expired;
the seed API's snippet runs on the built-in market at a fixed simulated time)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from trader.api import OrderResponse, shutdown
from trader.risk import RiskMetrics

README = Path(__file__).resolve().parents[1] / "README.md"


def library_block(marker: str) -> str:
    """The one ```python block of "Use as a library" that contains ``marker``."""
    text = README.read_text()
    section = text[text.index("## Use as a library"):]
    blocks = [block for block in re.findall(r"```python\n(.*?)```", section, re.DOTALL) if marker in block]
    assert len(blocks) == 1, f"expected one library snippet with {marker!r}, found {len(blocks)}"
    return str(blocks[0])


def run_block(code: str) -> tuple[dict[str, object], list[str]]:
    out = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), namespace)
    return namespace, out.getvalue().splitlines()


def test_the_library_snippet_runs_as_written() -> None:
    namespace, printed = run_block(library_block("from trader.risk import"))
    ok, reason = namespace["ok"], namespace["reason"]
    assert isinstance(ok, bool) and isinstance(reason, str) and reason
    assert printed[0].startswith(str(ok))
    metrics = namespace["metrics"]
    assert isinstance(metrics, RiskMetrics)
    assert metrics.risk_level.value in printed[1]


@pytest.mark.usefixtures("quiet_logs")
def test_the_seed_api_snippet_runs_as_written(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("TRADER_SIM__START", "2026-12-02T10:00")  # a session of the built-in market, whatever today is
    clean_env.setenv("TRADER_DATA_DIR", str(tmp_path))
    try:
        namespace, printed = run_block(library_block("from trader.api import"))
    finally:
        shutdown()
    response = namespace["response"]
    assert isinstance(response, OrderResponse) and response.status == "COMPLETE"
    assert printed[0].startswith("COMPLETE BUY 65 NIFTY") and " filled at ₹" in printed[0]
    assert printed[1].startswith("True [Position(")
