"""The Fyers face's hooks: ``trader sim --venue fyers`` (``serve``), the JWT-shaped access tokens whose ``hsm_key`` the
HSM data socket authorizes, and the data-socket and ``/data/symbol-token`` factories (with a recording fake server:
the real one is ``trader/sim/fyers/data_socket.py``, plugged in at merge)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import aiohttp
import aiohttp.web
import pytest
from test_fyers_sim_rest import T0, Fyers, Wall, login

from trader.logging import configure_logging
from trader.sim import ExchangeSimulator
from trader.sim.fyers import FyersFace

from helpers import atm, wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")


# -- trader sim --venue fyers -----------------------------------------------------------------------------------

async def test_serve_venue_fyers_logs_the_urls_and_serves_the_face(monkeypatch: pytest.MonkeyPatch) -> None:
    from trader.sim import serve  # noqa: PLC0415

    started = asyncio.Event()
    original = FyersFace.start

    async def start_and_signal(face: FyersFace, *args: Any, **kwargs: Any) -> str:
        url = await original(face, *args, **kwargs)
        started.set()
        return url

    monkeypatch.setattr(FyersFace, "start", start_and_signal)
    stream = io.StringIO()
    configure_logging("INFO", stream)  # conftest restores the log set-up after the test

    def listening_line() -> dict[str, Any] | None:
        found = [json.loads(line) for line in stream.getvalue().splitlines() if '"sim_fyers_listening"' in line]
        return found[0] if found else None

    task = asyncio.create_task(serve(port=0, speed=1.0, venue="fyers", app_id="XY12345-100", secret_key="s3"))
    try:
        await asyncio.wait_for(started.wait(), 10)
        await wait_for(lambda: listening_line() is not None)
        listening = listening_line()
        assert listening is not None
        lines = dict(pair.split("=", 1) for pair in str(listening["daemon_env"]).split())
        assert listening["api_root"] == lines["TRADER_FYERS__API_ROOT"]
        assert str(listening["kite_rest_url"]).startswith("http://127.0.0.1:")  # the same core's Kite face
        assert lines["TRADER_VENUE"] == "fyers" and lines["TRADER_FYERS__APP_ID"] == "XY12345-100"
        api = lines["TRADER_FYERS__API_ROOT"]
        assert api.endswith("/api/v3") and lines["TRADER_FYERS__DATA_ROOT"].endswith("/data")
        assert lines["TRADER_FYERS__ORDER_WS_URL"].endswith("/trade/v3")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{lines['TRADER_FYERS__SYMBOLS_ROOT']}/NSE_FO.csv") as response:
                assert response.status == 200 and (await response.text()).count("\n") > 10
            async with http.get(f"{api}/generate-authcode", allow_redirects=False,
                                params={"client_id": "XY12345-100"}) as response:
                assert response.status == 302 and "auth_code=" in response.headers["Location"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- the hooks the HSM data socket plugs into -------------------------------------------------------------------

class FakeDataSocket:
    """Records what the face does with a data socket server (the real one is trader/sim/fyers/data_socket.py)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.batches: list[list[int]] = []
        self.clients = 1

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.calls.append("start")
        return f"ws://{host}:45678"

    async def stop(self) -> None:
        self.calls.append("stop")

    async def publish_ticks(self, ticks: Any, day_stats: Any = None) -> None:
        batch = list(ticks)
        assert set(day_stats) == {t.instrument_token for t in batch}
        self.batches.append([t.instrument_token for t in batch])

    async def drop_connections(self) -> None:
        self.calls.append("drop")


async def test_tokens_carry_hsm_keys_and_the_data_socket_hooks_work() -> None:
    server = FakeDataSocket()
    sim = ExchangeSimulator(start_ns=T0, wall_ns=Wall())
    await sim.start()

    async def symbol_token(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        allowed = face.authorized_any(request.headers.get("Authorization", ""))
        return aiohttp.web.json_response({"s": "ok" if allowed else "error"})

    face = FyersFace(sim, data_socket=lambda _face: server, symbol_token=lambda _face: symbol_token)
    await face.start()
    try:
        assert face.urls()["DATA_WS_URL"] == "ws://127.0.0.1:45678" and server.calls == ["start"]
        async with aiohttp.ClientSession() as http:
            fy = Fyers(sim, face, http, Wall())
            await login(fy)
            _header, payload, signature = fy.token.split(".")
            claims = json.loads(base64.urlsafe_b64decode(payload + "==="))
            assert claims["exp"] > claims["iat"] and signature
            assert face.authorize_hsm(claims["hsm_key"]) and not face.authorize_hsm("nope")
            async with http.post(f"{face.urls()['DATA_ROOT']}/symbol-token", headers={"Authorization": fy.token},
                                 json={"symbols": []}) as response:  # the bare token, as the SDK sends it
                assert (await response.json())["s"] == "ok"
            contract = atm(sim)
            assert face.listing(contract.instrument_token) == (f"NSE:{contract.tradingsymbol}",
                                                               face.resolve(f"NSE:{contract.tradingsymbol}"))
            assert face.listing(sim.market.index.instrument_token)[0] == "NSE:NIFTY50-INDEX"  # type: ignore[index]
            assert face.resolve("NSE:NOPE") is None and face.listing(12345) is None
            await sim.advance(2)
            assert server.batches and contract.instrument_token in {t for b in server.batches for t in b}
            await sim.drop_websockets()
            await sim.set_offline(True)
            await sim.set_offline(False)
            assert server.calls == ["start", "drop", "stop", "start"]
            await sim.expire_tokens()
            assert not face.authorize_hsm(claims["hsm_key"])
    finally:
        await face.stop()
        await sim.stop()
    assert server.calls[-1] == "stop"
