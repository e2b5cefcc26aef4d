"""Run the exchange simulator as a server until cancelled (what ``trader sim`` calls).

By default the simulated session is open from the moment the simulator starts (its clock starts at the open of the
session the wall clock is in or waiting for) and runs at ``speed`` × real time; ``start`` (``trader sim --start``)
puts the simulated clock at any date and time instead, e.g. Tue 5 Jan 2027 09:15 IST. ``follow_calendar=True`` runs
it on the wall clock instead: speed 1, the real NSE calendar and hours, so outside market hours the market is closed.

``venue="fyers"`` (``trader sim --venue fyers``) serves the Fyers API v3 face of the same core on ``port`` (REST, the
symbol master, the order socket; the HSM data socket on ``port + 1``) and keeps the Kite face on free ports; its
``sim_fyers_listening`` line names the ``TRADER_FYERS__*`` URLs a daemon sets to trade against it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

from trader.clock import NS_PER_SECOND
from trader.logging import get_logger
from trader.market.calendar import IST, ist_text
from trader.sim.exchange import ExchangeSimulator
from trader.sim.wire import Faults

log = get_logger("trader.sim")

DEFAULT_API_KEY = "sim_api_key"  # documented local-use defaults; never real Kite credentials
DEFAULT_API_SECRET = "sim_api_secret"
DEFAULT_FYERS_APP_ID = "SIMAPP-100"  # documented local-use defaults; never real Fyers credentials
DEFAULT_FYERS_SECRET = "sim_fyers_secret"


def _epoch_ns(moment: datetime) -> int:
    """Epoch nanoseconds of ``moment``; a naive datetime is taken as IST (the exchange's zone)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=IST)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000


async def serve(*, host: str = "127.0.0.1", port: int = 8765, api_key: str = DEFAULT_API_KEY,
                api_secret: str = DEFAULT_API_SECRET, speed: float = 1.0, seed: int = 7,
                start: datetime | None = None, follow_calendar: bool = False, ws_port: int | None = None,
                faults: Faults | None = None, ws_drop_every_s: float = 0.0,
                venue: Literal["kite", "fyers"] = "kite", app_id: str = DEFAULT_FYERS_APP_ID,
                secret_key: str = DEFAULT_FYERS_SECRET) -> None:
    """Serve Kite REST on ``host:port`` and the Kite WebSocket on ``host:ws_port`` (default ``port + 1``; any free
    port when ``port`` is 0) until the task is cancelled.

    ``speed`` (> 0) paces the simulated clock; ``start`` (a datetime, naive = IST) sets where the simulated clock
    starts instead of the next/current session open. ``follow_calendar`` ignores both and follows the wall clock.
    ``faults`` and ``ws_drop_every_s`` are the simulator's fault knobs (``Faults``; forced WebSocket drops every so
    many simulated seconds), on from the start. ``venue="fyers"`` serves the Fyers face on ``port`` instead (see the
    module docstring), with ``app_id`` / ``secret_key`` as the app's credentials.
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
    if venue == "fyers":
        await _serve_fyers(sim, host=host, port=port, data_ws_port=ws_port if ws_port is not None
                           else (port + 1 if port else 0), app_id=app_id, secret_key=secret_key)
        return
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


async def _serve_fyers(sim: ExchangeSimulator, *, host: str, port: int, data_ws_port: int, app_id: str,
                       secret_key: str) -> None:
    from trader.sim.fyers import FyersFace  # noqa: PLC0415 - only for the Fyers face

    kite_url = await sim.start(host, 0, ws_port=0)  # the core (and its Kite face, on free ports)
    face = FyersFace(sim, app_id=app_id, secret_key=secret_key)  # with the HSM data socket on data_ws_port
    try:
        await face.start(host, port, data_ws_port=data_ws_port)
        urls = face.urls()
        env = {f"TRADER_FYERS__{name}": value for name, value in urls.items() if value}
        env["TRADER_VENUE"] = "fyers"
        now_ns = sim.clock.now_ns()
        # The Kite face of the same core is named too: a harness may read the one book through either wire.
        log.info("sim_fyers_listening", **{k.lower(): v for k, v in urls.items()}, kite_rest_url=kite_url,
                 kite_ws_url=sim.ws_url, speed=sim.clock.speed, sim_time=ist_text(now_ns),
                 market_open=sim.calendar.is_open(now_ns), faults=repr(sim.faults),
                 daemon_env=" ".join(f"{k}={v}" for k, v in env.items()),
                 hint="log in with `trader login --venue fyers` (the simulator's secret is the one passed to "
                      "`trader sim`), then run the daemon with the variables above")
        await asyncio.Event().wait()  # until cancelled (the caller handles SIGINT/SIGTERM)
    finally:
        await face.stop()
        await sim.stop()
        log.info("sim_stopped", rest_url=face.base_url)
