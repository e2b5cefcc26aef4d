"""Live mode past the end of the holiday data: `trader sim --start 2027-01-05T09:15` and the daemon against it.

The package ships NSE holidays for 2025-2026 only (NSE had not published 2027 when this was written). Until the data
file learnt to say "unknown year", every 2027 question raised: the ticker's silence check crashed the feed and the
risk gate refused every entry. Now the daemon trades on weekdays and warns once a day.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from trader.app import App
from trader.events import Fill, OrderRequest
from trader.market.calendar import ist_date

from helpers import captured_logs, live_sim_settings, sim_access_token, sim_get, wait_for

SIM_START = "2027-01-05T09:15"  # Tue 5 Jan 2027, IST: a NIFTY weekly expiry day in a year without holiday data
SESSION_DAY = date(2027, 1, 5)


def listening_line(log: Path) -> dict[str, Any] | None:
    for raw in log.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            line = orjson.loads(raw)
            if isinstance(line, dict) and line.get("event") == "sim_listening":
                return line
    return None


@contextlib.asynccontextmanager
async def trader_sim(tmp_path: Path, *args: str) -> AsyncIterator[dict[str, Any]]:
    """`trader sim --port 0 ARGS` in a subprocess, as a user starts it; yields its `sim_listening` log line."""
    log = tmp_path / "sim.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADER_")}
    env["TRADER_CONTROL__PORT"] = "0"  # whatever it starts never binds the control API's fixed port 8780
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "trader", "sim", "--port", "0", *args,
                                                       stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        await wait_for(lambda: process.returncode is not None or listening_line(log) is not None, within_s=60)
        line = listening_line(log)
        assert line is not None, f"trader sim exited {process.returncode}: {log.read_text()}"
        yield line
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
    assert process.returncode == 0, log.read_text()


async def test_live_mode_trades_on_5_jan_2027_against_trader_sim_start(tmp_path: Path) -> None:
    async with trader_sim(tmp_path, "--start", SIM_START, "--speed", "120") as sim:
        assert sim["sim_time"].startswith("2027-01-05T09:15")
        assert sim["market_open"] is True
        base, ws_url = sim["rest_url"], sim["ws_url"]
        token = await sim_access_token(base)
        requests: list[OrderRequest] = []
        fills: list[Fill] = []
        with captured_logs("WARNING") as lines:
            app = App(live_sim_settings(base, ws_url, token, tmp_path / "data"))

            def watch(event: object) -> None:
                if isinstance(event, OrderRequest):
                    requests.append(event)
                elif isinstance(event, Fill):
                    fills.append(event)
                    app.request_stop("a fill arrived")

            app.bus.tap(watch)
            timeout = asyncio.get_running_loop().call_later(90, app.request_stop, "no fill within 90 s")
            await app.run(install_signal_handlers=False)
            timeout.cancel()
        orders = await sim_get(base, token, "/orders")

    assert requests, "the strategy never traded"
    assert fills, "no order filled"
    assert {ist_date(e.ts_ns) for e in requests} | {ist_date(f.ts_ns) for f in fills} == {SESSION_DAY}
    # The simulator's own book: the daemon's orders, complete, on 5 Jan 2027.
    tags = {r.tag for r in requests}
    completed = [o for o in orders if o["tag"] in tags and o["status"] == "COMPLETE"]
    assert completed
    assert all(o["order_timestamp"].startswith("2027-01-05") for o in completed)
    assert sum(f.quantity for f in fills) <= sum(int(o["filled_quantity"]) for o in completed)
    # One loud warning for the unknown year on that day, naming where to add it; nothing refused for the calendar.
    unknown = [line for line in lines if line["event"] == "calendar_unknown_year" and line["year"] == 2027]
    assert [(line["today"], line["level"]) for line in unknown] == [("2027-01-05", "warning")]
    assert "[years.2027]" in unknown[0]["fix"]
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    assert not [line for line in lines if "trading day" in str(line.get("reason", ""))]
