"""Helpers shared by the test modules (imported as ``helpers``: pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog

from trader.adapters.kite.rest import checksum
from trader.config import Settings, load_settings
from trader.logging import configure_logging
from trader.market.instruments import OptionContract, OptionType
from trader.sim import ExchangeSimulator

# Real Kite sample data copied into the repo with its licence note (tests/fixtures/kite/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kite"

# Fri 20 Nov 2026 10:05 IST: a whole second inside a regular session.
T0 = 1_795_151_700 * 1_000_000_000


async def wait_for(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll state that lives in another task or process (a server's, a client's); fail after ``within_s``."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - no event to wait on: the state belongs to the code under test
            await asyncio.sleep(0.01)


def atm(sim: ExchangeSimulator, option_type: OptionType = OptionType.CE) -> OptionContract:
    """The simulator's nearest-expiry NIFTY option at the strike nearest spot."""
    expiry = sim.instruments.expiries("NIFTY")[0]
    contract = sim.instruments.nearest_strike("NIFTY", expiry, round(sim.market.spot * 100), option_type)
    assert contract is not None
    return contract


@contextlib.contextmanager
def captured_logs(level: str = "INFO") -> Iterator[list[dict[str, Any]]]:
    """The JSON log lines written inside the block, parsed into the yielded list when the block ends."""
    stream = io.StringIO()
    saved = structlog.get_config()
    configure_logging(level, stream)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        structlog.configure(**saved)
        lines.extend(orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip())


async def sim_access_token(base: str, api_key: str = "sim_api_key", api_secret: str = "sim_api_secret") -> str:
    """Log in to the exchange simulator at ``base`` the way `trader login` does; returns the access token."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/connect/login", params={"api_key": api_key, "v": "3"},
                            allow_redirects=False) as response:
            request_token = response.headers["Location"].split("request_token=")[1].split("&")[0]
        form = {"api_key": api_key, "request_token": request_token,
                "checksum": checksum(api_key, request_token, api_secret)}
        async with http.post(f"{base}/session/token", data=form, headers={"X-Kite-Version": "3"}) as response:
            return str((await response.json())["data"]["access_token"])


async def sim_get(base: str, token: str, path: str, api_key: str = "sim_api_key") -> Any:
    """``GET path`` on the simulator's Kite REST API as the logged-in user; the ``data`` of the answer."""
    headers = {"X-Kite-Version": "3", "Authorization": f"token {api_key}:{token}"}
    async with aiohttp.ClientSession() as http, http.get(f"{base}{path}", headers=headers) as response:
        response.raise_for_status()
        return (await response.json())["data"]


def live_sim_settings(base: str, ws_url: str, token: str, data_dir: Path) -> Settings:
    """Live mode with auto-execution against a simulator: short bars and no cutoff, so a few simulated minutes
    give entries and exits."""
    return load_settings({
        "mode": "live", "live_confirm": "yes", "auto_execution": True, "data_dir": str(data_dir),
        "kite": {"api_key": "sim_api_key", "access_token": token},
        "kite_api_root": base, "kite_ws_root": ws_url, "kite_timeout_seconds": 2.0,
        "strategy": {"bar_seconds": 10, "confidence_cutoff": 0, "first_entry_time": "09:15:00"},
        "risk": {"no_entry_before": "09:15:00", "max_daily_loss_pct": 0.5},
    })
