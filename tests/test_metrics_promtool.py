"""``GET /metrics`` passes Prometheus's own checker: ``promtool check metrics`` on a real scrape of a paper daemon
that has filled and refused orders (so the histograms, the labelled counters and the state gauges all have samples).

``make test`` puts promtool in ``.venv/bin`` (the Makefile takes it from Debian's prometheus package); it is looked
for there first, then on PATH. Its lint findings (naming conventions, help text) are printed by promtool itself.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import wait_for
from test_metrics import ORDER, running

pytestmark = pytest.mark.usefixtures("clean_env")


def promtool() -> str:
    beside = Path(sys.executable).parent / "promtool"
    found = str(beside) if beside.is_file() else shutil.which("promtool")
    assert found, ("promtool is missing: `make test` fetches it into .venv/bin (it needs apt-get); or put "
                   "Prometheus's promtool on PATH")
    return found


async def test_promtool_finds_nothing_wrong_in_a_scrape(tmp_path: Path) -> None:
    tool = promtool()
    async with running(tmp_path) as daemon:
        app = daemon.app
        status, _, body = await daemon.get("/orders", body={**ORDER, "lots": 50}, method="POST")
        assert status == 409 and json.loads(body)["error"]["check"] == "lots"
        status, _, body = await daemon.get("/orders", body=ORDER, method="POST")
        assert status == 200, body
        await wait_for(lambda: app.portfolio.fills >= 1, within_s=10)
        status, _, text = await daemon.get("/metrics")
        assert status == 200
    assert "trader_slippage_bps_bucket" in text and 'check="lots"' in text
    process = await asyncio.create_subprocess_exec(tool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(text.encode()), 60)
    assert process.returncode == 0 and not out.strip() and not err.strip(), (out + err).decode()


def test_promtool_would_catch_a_broken_exposition() -> None:
    """The check above can fail: promtool refuses a sample line that is not the exposition format."""
    checked = subprocess.run([promtool(), "check", "metrics"], input="# TYPE x counter\nx{ 1\n", check=False,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode != 0
