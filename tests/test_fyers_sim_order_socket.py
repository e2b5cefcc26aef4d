"""The Fyers face's order-update socket over a raw aiohttp WebSocket client: the handshake's authorization, ping/pong,
subscribe/unsubscribe, order/trade/position pushes from the shared core (including modify and cancel), and the core's
socket fault knobs (drop, token expiry, offline). Messages are flushed deterministically with
``face.order_socket.flush()``; receives wait on the socket, never on sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from test_fyers_sim_rest import T0, Fyers, Wall, login, on_tick

from trader.sim import ExchangeSimulator
from trader.sim.fyers import FyersFace

from helpers import atm

pytestmark = pytest.mark.usefixtures("quiet_logs")

RECEIVE_S = 5.0


@pytest.fixture
async def fy() -> AsyncIterator[Fyers]:
    wall = Wall()
    sim = ExchangeSimulator(start_ns=T0, wall_ns=wall)
    await sim.start()
    face = FyersFace(sim)
    await face.start()
    async with aiohttp.ClientSession() as http:
        harness = Fyers(sim, face, http, wall)
        await login(harness)
        yield harness
    await face.stop()
    await sim.stop()


async def connect(fy: Fyers, credentials: str | None = None) -> aiohttp.ClientWebSocketResponse:
    return await fy.http.ws_connect(fy.face.urls()["ORDER_WS_URL"], headers={
        "authorization": credentials if credentials is not None else f"{fy.face.app_id}:{fy.token}"})


async def receive(socket: aiohttp.ClientWebSocketResponse) -> Any:
    message = await socket.receive(timeout=RECEIVE_S)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return message.data if message.data == "pong" else message.json()


async def subscribe(socket: aiohttp.ClientWebSocketResponse, channels: list[str], sub: int = 1) -> dict[str, Any]:
    await socket.send_json({"T": "SUB_ORD", "SLIST": channels, "SUB_T": sub})
    reply: dict[str, Any] = await receive(socket)
    return reply


async def test_handshake_needs_a_live_app_id_and_token(fy: Fyers) -> None:
    for credentials in ("", fy.token, f"OTHER-100:{fy.token}", f"{fy.face.app_id}:not-a-token"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(fy, credentials)
        assert refused.value.status == 401
    assert fy.face.order_socket.refusals == 4
    socket = await connect(fy)
    await socket.send_str("ping")
    assert await receive(socket) == "pong"
    await socket.send_str("hello")
    assert (await receive(socket))["s"] == "error"
    assert (await subscribe(socket, ["nonsense"]))["s"] == "error"
    await socket.close()


async def test_subscribed_channels_get_order_trade_and_position_updates(fy: Fyers) -> None:
    socket = await connect(fy)
    assert await subscribe(socket, ["orders", "trades", "positions"]) == {
        "s": "ok", "code": 1605, "message": "Successfully subscribed"}
    contract = atm(fy.sim)
    _, placed = await fy.place(contract, orderTag="sock1")
    await fy.sim.advance(3)
    await fy.face.order_socket.flush()
    seen: dict[str, list[dict[str, Any]]] = {"orders": [], "trades": [], "positions": []}
    while not (seen["trades"] and seen["positions"] and any(o["org_ord_status"] == 2 for o in seen["orders"])):
        message = await receive(socket)
        [channel] = [k for k in message if k != "s"]
        seen[channel].append(message[channel])
    assert {o["id"] for o in seen["orders"]} == {placed["id"]}
    assert seen["orders"][-1]["qty_filled"] == contract.lot_size and seen["orders"][-1]["ordertag"] == "1:sock1"
    assert seen["trades"][0]["id"] == placed["id"] and seen["trades"][0]["qty_traded"] == contract.lot_size
    assert seen["positions"][0]["net_qty"] == contract.lot_size

    # only "orders" now: a resting order's modification and cancellation arrive, no trades
    assert (await subscribe(socket, ["trades", "positions"], sub=-1))["s"] == "ok"
    assert fy.face.order_socket.subscriptions() == [{"orders"}]
    low = on_tick(fy.sim.last_price(contract.instrument_token) * 0.7)
    _, resting = await fy.place(contract, type=1, limitPrice=low)
    await fy.call("PATCH", "/orders/sync", {"id": resting["id"], "limitPrice": round(low - 0.05, 2)})
    await fy.call("DELETE", "/orders/sync", {"id": resting["id"]})
    await fy.sim.advance(1)
    await fy.face.order_socket.flush()
    statuses = []
    while 1 not in statuses:
        message = await receive(socket)
        assert set(message) == {"s", "orders"}
        statuses.append(message["orders"]["org_ord_status"])
    assert statuses[0] == 6 and statuses[-1] == 1 and 4 in statuses  # pending, transit (modify/cancel), cancelled
    assert fy.sim.orders[resting["id"]].modifications == 1
    await socket.close()


async def test_socket_fault_knobs_drop_expiry_and_offline(fy: Fyers) -> None:
    socket = await connect(fy)
    await fy.sim.drop_websockets()
    closed = await socket.receive(timeout=RECEIVE_S)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await socket.close()

    again = await connect(fy)  # a reconnect with the same token works
    await fy.sim.expire_tokens()
    closed = await again.receive(timeout=RECEIVE_S)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await again.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as expired:
        await connect(fy)
    assert expired.value.status == 401
    await login(fy)

    await fy.sim.set_offline(True)
    with pytest.raises(aiohttp.WSServerHandshakeError) as offline:
        await connect(fy)
    assert offline.value.status == 503
    await fy.sim.set_offline(False)
    back = await connect(fy)
    await back.send_str("ping")
    assert await asyncio.wait_for(receive(back), RECEIVE_S) == "pong"
    await back.close()
