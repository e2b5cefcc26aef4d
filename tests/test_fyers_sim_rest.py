"""The exchange simulator's Fyers face over raw HTTP (aiohttp): every route, Fyers' envelopes and error codes, the
fault knobs, the order-rate limit, ``orderTag``, and the shared core (an order placed through the Fyers face is in the
core's book, the Kite face sees it, and its fills show in ``/tradebook`` and ``/positions``).

The market moves only through ``sim.advance``; the simulator's wall clock (its 10-order-requests-per-second window)
is a stepping fake unless a test freezes it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest

from trader.events import OrderType, Side
from trader.market.calendar import MarketCalendar
from trader.market.instruments import OptionContract
from trader.sim import ExchangeSimulator, Faults
from trader.sim.fyers import FyersFace

from helpers import atm

SESSION_DAY = date(2026, 12, 2)  # a Wednesday; the nearest NIFTY weekly expires on Tuesday 8 Dec
T0 = MarketCalendar().session_bounds(SESSION_DAY)[0]

pytestmark = pytest.mark.usefixtures("quiet_logs")


class Wall:
    """The simulator's wall clock: one second further on each read unless ``frozen``."""

    def __init__(self) -> None:
        self.seconds = itertools.count(1_800_000_000)
        self.frozen_at: int | None = None

    def __call__(self) -> int:
        return (self.frozen_at if self.frozen_at is not None else next(self.seconds)) * 1_000_000_000


@dataclass
class Fyers:
    sim: ExchangeSimulator
    face: FyersFace
    http: aiohttp.ClientSession
    wall: Wall
    token: str = ""

    @property
    def api(self) -> str:
        return self.face.urls()["API_ROOT"]

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"{self.face.app_id}:{self.token if token is None else token}",
                "Content-Type": "application/json", "version": "3"}

    async def call(self, method: str, path: str, body: Any = None, *, root: str | None = None,
                   token: str | None = None, params: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        async with self.http.request(method, f"{root or self.api}{path}", json=body, params=params,
                                     headers=self.headers(token)) as response:
            return response.status, await response.json(content_type=None)

    async def place(self, contract: OptionContract, **overrides: Any) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"symbol": f"NSE:{contract.tradingsymbol}", "qty": contract.lot_size, "type": 2,
                                "side": 1, "productType": "INTRADAY", "limitPrice": 0, "stopPrice": 0,
                                "validity": "DAY", "disclosedQty": 0, "offlineOrder": False, "orderTag": "t1"}
        body.update(overrides)
        return await self.call("POST", "/orders/sync", {k: v for k, v in body.items() if v is not None})


async def login(fy: Fyers, *, secret: str | None = None) -> tuple[int, dict[str, Any]]:
    async with fy.http.get(f"{fy.api}/generate-authcode", allow_redirects=False, params={
            "client_id": fy.face.app_id, "redirect_uri": fy.face.redirect_uri, "response_type": "code",
            "state": "st8"}) as response:
        assert response.status == 302
        location = urlparse(response.headers["Location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == fy.face.redirect_uri
    assert (query["s"], query["code"], query["state"]) == (["ok"], ["200"], ["st8"])
    app_hash = hashlib.sha256(f"{fy.face.app_id}:{secret or fy.face.secret_key}".encode()).hexdigest()
    async with fy.http.post(f"{fy.api}/validate-authcode", json={
            "grant_type": "authorization_code", "appIdHash": app_hash, "code": query["auth_code"][0]}) as response:
        body = await response.json()
        if body.get("s") == "ok":
            fy.token = body["access_token"]
        return response.status, body


@pytest.fixture
async def fy() -> AsyncIterator[Fyers]:
    wall = Wall()
    sim = ExchangeSimulator(start_ns=T0, wall_ns=wall)
    await sim.start()
    face = FyersFace(sim)
    await face.start()
    async with aiohttp.ClientSession() as http:
        harness = Fyers(sim, face, http, wall)
        status, _ = await login(harness)
        assert status == 200
        yield harness
    await face.stop()
    await sim.stop()


def on_tick(paise: float) -> float:
    return round(paise / 5) * 5 / 100


# -- login and auth ---------------------------------------------------------------------------------------------

async def test_login_checks_app_id_hash_and_single_use_codes(fy: Fyers) -> None:
    status, body = await login(fy, secret="wrong")
    assert status == 401 and body["s"] == "error" and body["code"] == -16 and "appIdHash" in body["message"]
    first = fy.token
    status, body = await login(fy)
    assert status == 200 and body["s"] == "ok" and body["access_token"] != first
    async with fy.http.get(f"{fy.api}/generate-authcode", allow_redirects=False,
                           params={"client_id": "OTHER-100", "redirect_uri": fy.face.redirect_uri}) as response:
        assert response.status == 400 and (await response.json())["code"] == -352
    status, reply = await fy.call("POST", "/validate-authcode", {
        "grant_type": "authorization_code", "appIdHash": fy.face.app_id_hash(), "code": "never-issued"})
    assert status == 401 and reply["code"] == -16

    status, profile = await fy.call("GET", "/profile")
    assert status == 200 and profile["s"] == "ok" and profile["data"]["fy_id"] == "SIM001"
    status, refused = await fy.call("GET", "/profile", token="not-a-token")
    assert status == 401 and refused == {"s": "error", "code": -16, "message": refused["message"]}
    async with fy.http.get(f"{fy.api}/funds") as response:  # no Authorization header at all
        assert response.status == 401
    status, _ = await fy.call("POST", "/logout")
    assert status == 200
    status, _ = await fy.call("GET", "/funds")
    assert status == 401


async def test_expired_tokens_answer_minus_8_and_a_new_login_works(fy: Fyers) -> None:
    await fy.sim.expire_tokens()
    status, body = await fy.call("GET", "/orders")
    assert status == 401 and body["code"] == -8
    assert (await login(fy))[0] == 200
    assert (await fy.call("GET", "/orders"))[0] == 200


# -- orders through the shared core -----------------------------------------------------------------------------

async def test_market_order_fills_and_every_view_agrees_with_the_core(fy: Fyers) -> None:
    contract = atm(fy.sim)
    status, placed = await fy.place(contract, orderTag="mkt1")
    assert status == 200 and placed["s"] == "ok" and placed["code"] == 1101 and placed["id"] in placed["message"]
    order_id = placed["id"]
    core = fy.sim.orders[order_id]
    assert core.tag == "mkt1" and core.product == "MIS" and core.contract == contract
    await fy.sim.advance(3)
    assert core.status == "COMPLETE" and core.filled == contract.lot_size

    _, book = await fy.call("GET", "/orders")
    [row] = book["orderBook"]
    assert row["id"] == order_id and row["status"] == 2 and row["filledQty"] == contract.lot_size
    assert row["remainingQuantity"] == 0 and row["orderTag"] == "1:mkt1" and row["side"] == 1 and row["type"] == 2
    assert row["symbol"] == f"NSE:{contract.tradingsymbol}" and row["productType"] == "INTRADAY"
    assert row["fyToken"].startswith("1011") and row["fyToken"][10:] == str(contract.instrument_token >> 8)
    fill = fy.sim.trades[0]
    assert row["tradedPrice"] == fill["average_price"]

    _, trades = await fy.call("GET", "/tradebook")
    [trade] = trades["tradeBook"]
    assert trade["orderNumber"] == order_id and trade["tradedQty"] == contract.lot_size
    assert trade["tradePrice"] == fill["average_price"] and trade["orderTag"] == "1:mkt1"
    assert trade["tradeValue"] == round(fill["average_price"] * contract.lot_size, 2)

    _, positions = await fy.call("GET", "/positions")
    [position] = positions["netPositions"]
    assert position["netQty"] == contract.lot_size and position["side"] == 1
    assert position["buyAvg"] == fill["average_price"] and position["productType"] == "INTRADAY"
    assert position["id"] == f"NSE:{contract.tradingsymbol}-INTRADAY"
    assert positions["overall"]["count_open"] == 1

    _, funds = await fy.call("GET", "/funds")
    rows = {r["id"]: r for r in funds["fund_limit"]}
    margins = await fy.sim.broker.margins()
    assert rows[1]["title"] == "Total Balance" and rows[10]["title"] == "Available Balance"
    assert rows[10]["equityAmount"] == margins.available / 100 and rows[2]["equityAmount"] == margins.used / 100

    # the Kite face reads the same book (the core keeps one set of access tokens for both faces)
    async with fy.http.get(f"{fy.sim.base_url}/orders", headers={
            "X-Kite-Version": "3", "Authorization": f"token {fy.sim.api_key}:{fy.token}"}) as response:
        [kite_order] = (await response.json())["data"]
    assert kite_order["order_id"] == order_id and kite_order["status"] == "COMPLETE" and kite_order["tag"] == "mkt1"
    assert fy.sim.portfolio.positions_view()["net"][0]["quantity"] == contract.lot_size


async def test_limit_order_rests_is_modified_filtered_and_cancelled(fy: Fyers) -> None:
    contract = atm(fy.sim)
    low = on_tick(fy.sim.last_price(contract.instrument_token) * 0.7)
    _, placed = await fy.place(contract, type=1, limitPrice=low, orderTag="lim1")
    order_id = placed["id"]
    await fy.sim.advance(1)
    _, book = await fy.call("GET", "/orders", params={"id": order_id})
    assert [r["status"] for r in book["orderBook"]] == [6] and book["orderBook"][0]["limitPrice"] == low
    _, none = await fy.call("GET", "/orders", params={"id": "999"})
    assert none["orderBook"] == []

    lower = round(low - 0.05, 2)
    status, modified = await fy.call("PATCH", "/orders/sync", {"id": order_id, "type": 1, "limitPrice": lower,
                                                               "qty": 2 * contract.lot_size})
    assert status == 200 and modified["code"] == 1102 and modified["id"] == order_id
    core = fy.sim.orders[order_id]
    assert core.price == round(lower * 100) and core.quantity == 2 * contract.lot_size and core.modifications == 1

    status, cancelled = await fy.call("DELETE", "/orders/sync", {"id": order_id})
    assert status == 200 and cancelled["code"] == 1103
    await fy.sim.advance(1)
    assert core.status == "CANCELLED"
    _, book = await fy.call("GET", "/orders")
    assert book["orderBook"][0]["status"] == 1
    status, again = await fy.call("DELETE", "/orders/sync", {"id": order_id})
    assert status == 400 and again["code"] == -99
    status, missing = await fy.call("DELETE", "/orders/sync", {"id": "123"})
    assert status == 400 and missing["code"] == -51


async def test_sl_limit_order_waits_for_its_trigger(fy: Fyers) -> None:
    contract = atm(fy.sim)
    last = fy.sim.last_price(contract.instrument_token)
    trigger = on_tick(last * 1.3)
    _, placed = await fy.place(contract, type=4, stopPrice=trigger, limitPrice=on_tick(last * 1.35))
    assert placed["s"] == "ok"
    core = fy.sim.orders[placed["id"]]
    assert core.status == "TRIGGER PENDING" and core.trigger_price == round(trigger * 100)
    _, book = await fy.call("GET", "/orders")
    assert book["orderBook"][0]["status"] == 6 and book["orderBook"][0]["type"] == 4


async def test_refusals_have_fyers_codes_and_place_nothing(fy: Fyers) -> None:
    contract = atm(fy.sim)
    last = fy.sim.last_price(contract.instrument_token)
    fair = on_tick(last)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"type": 1, "limitPrice": fair + 0.03}, -50, "tick size"),
        ({"type": 1, "limitPrice": fair, "qty": contract.lot_size + 1}, -50, "lot size"),
        ({"type": 1, "limitPrice": fair, "qty": 28 * contract.lot_size}, -50, "freeze"),
        ({"type": 1, "limitPrice": on_tick(last * 1.5)}, -99, "price band"),
        ({"type": 2, "marketProtection": 0}, -50, "market_protection"),
        ({"symbol": "NSE:NIFTY99DEC1CE"}, -300, "Invalid symbol"),
        ({"symbol": contract.tradingsymbol}, -300, "Invalid symbol"),  # no exchange prefix
        ({"orderTag": "x" * 31}, -50, "orderTag"),
        ({"orderTag": "has space"}, -50, "orderTag"),
        ({"productType": "CNC"}, -50, "productType"),
        ({"side": 2}, -50, "side"),
        ({"type": 5}, -50, "type"),
        ({"validity": "IOC"}, -50, "Validity"),
        ({"offlineOrder": True}, -50, "offline"),
    ]
    for overrides, code, text in cases:
        status, body = await fy.place(contract, **overrides)
        assert (status, body["s"], body["code"]) == (400, "error", code), overrides
        assert text in body["message"], (overrides, body)
    status, body = await fy.call("POST", "/orders/sync", ["not", "an", "object"])
    assert (status, body["code"]) == (400, -50)
    assert fy.sim.orders == {}
    status, ok30 = await fy.place(contract, orderTag="A" * 30)
    assert status == 200 and fy.sim.orders[ok30["id"]].tag == "A" * 30


async def test_multiorder_margin_uses_the_cores_margin_rule(fy: Fyers) -> None:
    contract = atm(fy.sim)
    price = on_tick(fy.sim.last_price(contract.instrument_token))
    order = {"symbol": f"NSE:{contract.tradingsymbol}", "qty": 2 * contract.lot_size, "side": 1, "type": 1,
             "productType": "INTRADAY", "limitPrice": price, "stopPrice": 0, "stopLoss": 0, "takeProfit": 0}
    status, body = await fy.call("POST", "/multiorder/margin", {"data": [order]})
    assert status == 200 and body["s"] == "ok"
    expected = await fy.sim.broker.order_margin(fy.sim.entry.intent(
        contract, Side.BUY, 2 * contract.lot_size, OrderType.LIMIT, price=round(price * 100), trigger=0,
        protection=-1.0, intent_id="margin"))
    assert body["data"]["margin_total"] == expected / 100 > 0
    assert body["data"]["margin_avail"] == (await fy.sim.broker.margins()).available / 100
    assert (await fy.call("POST", "/multiorder/margin", {"data": []}))[0] == 400
    status, bad = await fy.call("POST", "/multiorder/margin", {"data": [{**order, "symbol": "NSE:NOPE"}]})
    assert (status, bad["code"]) == (400, -300)


async def test_insufficient_funds_is_an_order_rejection() -> None:
    sim = ExchangeSimulator(start_ns=T0, wall_ns=Wall(), capital_rupees=1_000)
    await sim.start()
    face = FyersFace(sim)
    await face.start()
    try:
        async with aiohttp.ClientSession() as http:
            fy = Fyers(sim, face, http, Wall())
            await login(fy)
            status, body = await fy.place(atm(sim), qty=10 * atm(sim).lot_size)
            assert (status, body["code"]) == (400, -99) and "Insufficient funds" in body["message"]
            assert sim.orders == {}
    finally:
        await face.stop()
        await sim.stop()


async def test_eleventh_order_request_in_one_second_is_rate_limited(fy: Fyers) -> None:
    contract = atm(fy.sim)
    low = on_tick(fy.sim.last_price(contract.instrument_token) * 0.7)
    fy.wall.frozen_at = 1_900_000_000
    answers = [await fy.place(contract, type=1, limitPrice=low) for _ in range(11)]
    assert [s for s, _ in answers[:10]] == [200] * 10
    assert answers[10][0] == 429 and answers[10][1]["code"] == -429
    assert len(fy.sim.orders) == 10
    fy.wall.frozen_at = 1_900_000_001
    assert (await fy.place(contract, type=1, limitPrice=low))[0] == 200


# -- faults -----------------------------------------------------------------------------------------------------

async def test_fault_knobs_5xx_429_offline(fy: Fyers) -> None:
    fy.sim.faults = Faults(error_rate=1.0)
    status, body = await fy.call("GET", "/orders")
    assert status in (500, 502, 503) and body["s"] == "error"
    fy.sim.faults = Faults(rate_limit_rate=1.0)
    status, body = await fy.call("GET", "/funds")
    assert (status, body["code"]) == (429, -429)
    fy.sim.faults = Faults()
    await fy.sim.set_offline(True)
    status, body = await fy.call("GET", "/positions")
    assert status == 503 and body["s"] == "error"
    await fy.sim.set_offline(False)
    assert (await fy.call("GET", "/positions"))[0] == 200


async def test_dropped_reply_after_accept_leaves_the_order_on_the_book(fy: Fyers) -> None:
    fy.sim.faults = Faults(timeout_after_accept=1.0, timeout_mode="drop")
    with pytest.raises(aiohttp.ClientError):
        await fy.place(atm(fy.sim), orderTag="lost1")
    fy.sim.faults = Faults()
    [order] = fy.sim.orders.values()
    assert order.tag == "lost1"
    _, book = await fy.call("GET", "/orders")
    assert book["orderBook"][0]["orderTag"] == "1:lost1"


# -- data and symbols -------------------------------------------------------------------------------------------

async def test_quotes_symbol_master_and_index_map(fy: Fyers) -> None:
    contract = atm(fy.sim)
    urls = fy.face.urls()
    symbols = f"NSE:{contract.tradingsymbol},NSE:NIFTY50-INDEX,NSE:NOPE"
    status, quotes = await fy.call("GET", "/quotes", root=urls["DATA_ROOT"], params={"symbols": symbols})
    assert status == 200 and quotes["s"] == "ok"
    option, index, unknown = quotes["d"]
    assert option["s"] == "ok" and option["v"]["lp"] == fy.sim.last_price(contract.instrument_token) / 100
    assert index["v"]["lp"] == fy.sim.last_price(fy.sim.market.index.instrument_token) / 100
    assert unknown["s"] == "error"
    assert (await fy.call("GET", "/quotes", root=urls["DATA_ROOT"]))[0] == 400

    async with fy.http.get(f"{urls['SYMBOLS_ROOT']}/NSE_FO.csv") as response:  # public: no token
        assert response.status == 200
        rows = list(csv.reader(io.StringIO(await response.text())))
    assert all(len(r) == 21 for r in rows) and len(rows) == len(fy.sim.listed_contracts())
    row = next(r for r in rows if r[9] == f"NSE:{contract.tradingsymbol}")
    assert row[0][:4] == "1011" and row[0][10:] == row[12] == str(contract.instrument_token >> 8)
    assert (int(row[3]), float(row[4]), row[16], float(row[15])) == (
        contract.lot_size, contract.tick_size / 100, contract.option_type.value, contract.strike / 100)
    assert (row[10], row[11], row[13]) == ("10", "11", "NIFTY")
    async with fy.http.get(f"{urls['SYMBOLS_ROOT']}/BSE_FO.csv") as response:
        assert response.status == 200 and await response.text() == ""  # a NIFTY market lists nothing on BSE
    async with fy.http.get(f"{urls['SYMBOLS_ROOT']}/NSE_CM.csv") as response:
        [index_row] = list(csv.reader(io.StringIO(await response.text())))
        assert index_row[9] == "NSE:NIFTY50-INDEX" and index_row[0][:4] == "1010"
    async with fy.http.get(f"{urls['SYMBOLS_ROOT']}/index_hsm_mapping.json") as response:
        assert await response.json() == {"NSE:NIFTY50-INDEX": "Nifty 50"}
    async with fy.http.get(f"{urls['SYMBOLS_ROOT']}/MCX_COM.csv") as response:
        assert response.status == 404


async def test_unknown_route_and_method_are_fyers_errors(fy: Fyers) -> None:
    status, body = await fy.call("GET", "/holdings-nope")
    assert status == 404 and body["s"] == "error"
    status, body = await fy.call("PUT", "/orders/sync", {})
    assert status == 405 and body["s"] == "error"

