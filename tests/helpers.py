"""Helpers shared by the test modules (imported as ``helpers``: pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import structlog

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
