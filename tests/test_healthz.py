"""``GET /healthz`` and ``trader healthcheck`` against an in-process paper daemon over real HTTP: 200 with every check
when healthy, 503 naming the failing check (a broker the venue reports unreachable), open without a token, never
cached; the CLI's exit codes 0 / 1 / 3 and its ``--json``."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from trader.app import App
from trader.cli import main as cli_main
from trader.config import load_settings
from trader.events import FeedStatus, VenueStatus

from helpers import wait_for

pytestmark = pytest.mark.usefixtures("clean_env", "quiet_logs")  # the log would mix into the CLI's stdout

START = "2026-11-20T10:00:00"  # Fri 20 Nov 2026 10:00 IST, inside a session; at 5x a test stays inside it


@contextlib.asynccontextmanager
async def running(data_dir: Path) -> AsyncIterator[App]:
    app = App(load_settings({
        "mode": "paper", "data_dir": str(data_dir), "heartbeat_seconds": 0.5,
        "sim": {"start": START, "speed": 5, "seed": 11}, "strategy": {"confidence_cutoff": 100},
    }))
    task = asyncio.create_task(app.run(install_signal_handlers=False))
    try:
        await wait_for(lambda: bool(app.control_url) or task.done(), within_s=30)
        if task.done():
            task.result()
        await wait_for(lambda: app.health.feed_age_s() is not None, within_s=30)  # the first tick came
        yield app
    finally:
        app.request_stop("test over")
        await asyncio.wait_for(task, 30)


async def get_healthz(url: str) -> tuple[int, dict[str, Any], str]:
    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as response:  # no Authorization
        assert response.content_type == "application/json"
        return response.status, await response.json(), response.headers.get("Cache-Control", "")


def healthcheck(*args: str) -> tuple[int, str]:
    """`trader healthcheck ARGS`, in process (its own thread: the CLI is synchronous and the daemon runs on this
    loop); (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["healthcheck", *args])
    return code, out.getvalue()


async def test_healthz_is_200_when_healthy_and_503_naming_the_failing_check(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as app:
        status, body, cache = await get_healthz(app.control_url)
        assert (status, body["ok"], body["failing"], cache) == (200, True, [], "no-store")
        assert set(body["checks"]) == {"gate", "loop", "feed", "broker"}
        assert all(check["ok"] for check in body["checks"].values())
        code, out = await asyncio.to_thread(healthcheck, "--url", app.control_url)
        assert code == 0 and out.startswith(f"healthy ({app.control_url})") and "ok   feed: last tick" in out

        # The venue reports the broker unreachable (as the Kite adapters do): entries stop, and health says so.
        app.bus.publish(VenueStatus(ts_ns=app.clock.now_ns(), ok=False, problem="broker_unreachable",
                                    detail="the order endpoint timed out"))
        await wait_for(lambda: "broker_unreachable" in app.risk.venue_problems)
        status, body, cache = await get_healthz(app.control_url)
        assert (status, body["ok"], body["failing"], cache) == (503, False, ["broker"], "no-store")
        assert body["checks"]["broker"] == {"ok": False, "detail": "broker_unreachable"}
        assert body["checks"]["feed"]["ok"] and body["checks"]["gate"]["ok"]
        code, out = await asyncio.to_thread(healthcheck, "--url", app.control_url)
        assert code == 1 and out.startswith(f"unhealthy ({app.control_url}): failing broker")
        assert "FAIL broker: broker_unreachable" in out
        code, out = await asyncio.to_thread(healthcheck, "--url", app.control_url, "--json")
        assert code == 1 and orjson.loads(out)["failing"] == ["broker"]
        # ... but the watchdog does not judge the broker: a restart would not bring it back.
        assert app.health.watchdog_report().ok

        app.bus.publish(VenueStatus(ts_ns=app.clock.now_ns(), ok=True, problem="broker_unreachable"))
        await wait_for(lambda: not app.risk.venue_problems)
        status, body, _ = await get_healthz(app.control_url)
        assert status == 200 and body["ok"]
        # The live feed's connection state (the Kite ticker's FeedStatus) reaches the health probe.
        app.bus.publish(FeedStatus(ts_ns=app.clock.now_ns(), status="reconnecting", detail="attempt 1"))
        assert app.feed_status == "reconnecting" and app.health.inputs().feed_connection == "reconnecting"
        url = app.control_url
    code, out = await asyncio.to_thread(healthcheck, "--url", url, "--json")
    assert code == 3 and orjson.loads(out)["error"]["code"] == "unreachable"


def test_healthcheck_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    # control.port 0 (the tests' free port) cannot be found from the settings: the message says what to pass.
    assert cli_main(["healthcheck"]) == 2
    assert "--url" in capsys.readouterr().err
    assert cli_main(["healthcheck", "--url", "ftp://127.0.0.1:1"]) == 2
    assert cli_main(["healthcheck", "--url", "http://127.0.0.1:1", "--timeout", "0"]) == 2
    assert cli_main(["healthcheck", "--url", "http://127.0.0.1:1", "--timeout", "1"]) == 3  # nothing listens there
