"""Run the exchange simulator as a server until cancelled (what ``trader sim`` calls).

By default the simulated session is open from the moment the simulator starts (its clock starts at the open of the
session the wall clock is in or waiting for) and runs at ``speed`` × real time; ``start`` (``trader sim --start``)
puts the simulated clock at any date and time instead, e.g. Tue 5 Jan 2027 09:15 IST. ``follow_calendar=True`` runs
it on the wall clock instead: speed 1, the real NSE calendar and hours, so outside market hours the market is closed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from trader.clock import NS_PER_SECOND
from trader.logging import get_logger
from trader.market.calendar import IST, ist_text
from trader.sim.exchange import ExchangeSimulator
from trader.sim.wire import Faults

log = get_logger("trader.sim")

DEFAULT_API_KEY = "sim_api_key"  # documented local-use defaults; never real Kite credentials
DEFAULT_API_SECRET = "sim_api_secret"


def _epoch_ns(moment: datetime) -> int:
    """Epoch nanoseconds of ``moment``; a naive datetime is taken as IST (the exchange's zone)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=IST)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000


async def serve(*, host: str = "127.0.0.1", port: int = 8765, api_key: str = DEFAULT_API_KEY,
                api_secret: str = DEFAULT_API_SECRET, speed: float = 1.0, seed: int = 7,
                start: datetime | None = None, follow_calendar: bool = False, ws_port: int | None = None,
                faults: Faults | None = None, ws_drop_every_s: float = 0.0) -> None:
    """Serve Kite REST on ``host:port`` and the Kite WebSocket on ``host:ws_port`` (default ``port + 1``; any free
    port when ``port`` is 0) until the task is cancelled.

    ``speed`` (> 0) paces the simulated clock; ``start`` (a datetime, naive = IST) sets where the simulated clock
    starts instead of the next/current session open. ``follow_calendar`` ignores both and follows the wall clock.
    ``faults`` and ``ws_drop_every_s`` are the simulator's fault knobs (``Faults``; forced WebSocket drops every so
    many simulated seconds), on from the start.
    """
    if follow_calendar:
        if start is not None or speed != 1.0:
            log.warning("sim_follow_calendar_overrides", speed=speed, start=str(start) if start else None,
                        detail="follow_calendar runs on the wall clock at speed 1; speed and start are ignored")
        sim = ExchangeSimulator(api_key, api_secret, seed=seed, follow_wall=True)
    else:
        if speed <= 0:
            raise ValueError(f"speed must be > 0 for a served simulator (it moves by itself), got {speed}")
        sim = ExchangeSimulator(api_key, api_secret, seed=seed, speed=speed,
                                start_ns=_epoch_ns(start) if start is not None else None)
    sim.faults = faults or Faults()
    sim.ws_drop_every_s = ws_drop_every_s
    rest_port = port
    websocket_port = ws_port if ws_port is not None else (port + 1 if port else 0)
    base_url = await sim.start(host, rest_port, ws_port=websocket_port)
    try:
        now_ns = sim.clock.now_ns()
        log.info("sim_listening", rest_url=base_url, ws_url=sim.ws_url, api_key=api_key, speed=sim.clock.speed,
                 sim_time=ist_text(now_ns),
                 follow_calendar=follow_calendar, market_open=sim.calendar.is_open(now_ns),
                 faults=repr(sim.faults), ws_drop_every_s=ws_drop_every_s,
                 daemon_env=f"TRADER_KITE_API_ROOT={base_url} TRADER_KITE_WS_ROOT={sim.ws_url} "
                            f"TRADER_KITE__API_KEY={api_key}",
                 hint="log in with `trader login` against this API root (the simulator's secret is the one passed "
                      "to `trader sim`), then run the daemon with the variables above")
        await asyncio.Event().wait()  # until cancelled (the caller handles SIGINT/SIGTERM)
    finally:
        await sim.stop()
        log.info("sim_stopped", rest_url=base_url)
