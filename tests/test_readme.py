"""The README's library snippet runs as written (whatever today's date: its contract may have expired)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from trader.risk import RiskMetrics

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_library_snippet_runs_as_written() -> None:
    text = README.read_text()
    section = text[text.index("## Use as a library"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    out = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), str(README), "exec"), namespace)
    ok, reason = namespace["ok"], namespace["reason"]
    assert isinstance(ok, bool) and isinstance(reason, str) and reason
    printed = out.getvalue().splitlines()
    assert printed[0].startswith(str(ok))
    metrics = namespace["metrics"]
    assert isinstance(metrics, RiskMetrics)
    assert metrics.risk_level.value in printed[1]
