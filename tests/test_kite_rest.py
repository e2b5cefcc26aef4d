"""KiteRestClient and KiteBroker against a local aiohttp stub serving the real Kite sample responses."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kiteconnect import exceptions as kex

from trader.adapters.kite.broker import KiteBroker, order_status
from trader.adapters.kite.errors import KiteSessionExpired, classify
from trader.adapters.kite.rest import KiteRestClient, checksum
from trader.adapters.ports import BrokerOrder, BrokerUnavailable, MarginView, OrderRejected, RateLimited
from trader.clock import NS_PER_SECOND, SimClock
from trader.events import IntentPurpose, OrderIntent, OrderRequest, OrderStatus, OrderType, Side
from trader.market.instruments import OptionContract, OptionType

from helpers import FIXTURES, wait_for

API_KEY = "key1"
TOKEN = "tok123"
START_NS = 1_000 * NS_PER_SECOND

ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/session/token"): "generate_session.json",
    ("DELETE", "/session/token"): "session_logout.json",
    ("GET", "/user/profile"): "profile.json",
    ("GET", "/user/margins"): "margins.json",
    ("GET", "/user/margins/equity"): "margins_equity.json",
    ("POST", "/orders/regular"): "order_response.json",
    ("PUT", "/orders/regular/151220000000000"): "order_modify.json",
    ("DELETE", "/orders/regular/151220000000000"): "order_cancel.json",
    ("GET", "/orders"): "orders.json",
    ("GET", "/orders/151220000000000"): "order_info.json",
    ("GET", "/orders/151220000000000/trades"): "order_trades.json",
    ("GET", "/trades"): "trades.json",
    ("GET", "/portfolio/positions"): "positions.json",
    ("POST", "/margins/orders"): "order_margins.json",
    ("POST", "/margins/basket"): "basket_margins.json",
    ("GET", "/quote"): "quote.json",
    ("GET", "/quote/ltp"): "ltp.json",
    ("GET", "/instruments"): "instruments_all.csv",
    ("GET", "/instruments/NSE"): "instruments_nse.csv",
}


def fixture_data(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())["data"]


@dataclass
class Call:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    content_type: str
    at_ns: int

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


@dataclass
class FakeKite:
    clock: SimClock
    calls: list[Call] = field(default_factory=list)
    # (method, path) → queued canned answers (status, content type, body); consumed before the fixture is served
    queued: dict[tuple[str, str], list[tuple[int, str, bytes]]] = field(default_factory=dict)
    # (method, path) → how many of the next calls get no answer until ``release`` is set (client timeouts)
    stalls: dict[tuple[str, str], int] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    stalled_ended: int = 0  # stalled calls that are over (answered late, or dropped with the connection)

    def queue(self, method: str, path: str, status: int, body: Any, content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.queued.setdefault((method, path), []).append((status, content_type, raw))

    def queue_error(self, method: str, path: str, status: int, error_type: str, message: str = "nope") -> None:
        self.queue(method, path, status, {"status": "error", "message": message, "error_type": error_type,
                                          "data": None})

    def count(self, method: str, path: str) -> int:
        return sum(1 for c in self.calls if (c.method, c.path) == (method, path))

    def last(self, method: str, path: str) -> Call:
        return [c for c in self.calls if (c.method, c.path) == (method, path)][-1]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = (request.method, request.path)
        self.calls.append(Call(request.method, request.path, list(request.query.items()), dict(request.headers),
                               body, request.headers.get("Content-Type", ""), self.clock.now_ns()))
        if self.stalls.get(key):
            self.stalls[key] -= 1
            try:
                await self.release.wait()
            finally:
                self.stalled_ended += 1
        if self.queued.get(key):
            status, content_type, raw = self.queued[key].pop(0)
            return web.Response(status=status, body=raw, headers={"Content-Type": content_type})
        name = ROUTES.get(key)
        if name is None:
            return web.json_response({"status": "error", "message": "Route not found",
                                      "error_type": "GeneralException"}, status=404)
        content_type = "text/csv" if name.endswith(".csv") else "application/json"
        return web.Response(body=(FIXTURES / name).read_bytes(), headers={"Content-Type": content_type})


@dataclass
class Env:
    kite: FakeKite
    client: KiteRestClient
    clock: SimClock
    make_client: Callable[..., KiteRestClient]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = SimClock(START_NS)  # unpaced: rate-limit waits and backoffs move simulated time, never real time
    kite = FakeKite(clock)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", kite.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    root = str(server.make_url("/"))
    session = aiohttp.ClientSession()
    made: list[KiteRestClient] = []

    def make_client(**kwargs: Any) -> KiteRestClient:
        kwargs.setdefault("access_token", TOKEN)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("timeout_s", 2.0)
        client = KiteRestClient(API_KEY, root=root, session=session, **kwargs)
        made.append(client)
        return client

    try:
        yield Env(kite, make_client(), clock, make_client)
    finally:
        for client in made:
            await client.close()
        await session.close()
        await server.close()


def contract() -> OptionContract:
    return OptionContract(exchange="NFO", tradingsymbol="NIFTY2580724400CE", underlying="NIFTY",
                          expiry=date(2025, 8, 7), strike=2_440_000, option_type=OptionType.CE, lot_size=75,
                          tick_size=5, instrument_token=10_000_002)


def request(order_type: OrderType = OrderType.MARKET, tag: str = "ENT1ABCDEF00000001", *,
            purpose: IntentPurpose = IntentPurpose.ENTRY, market_protection: float = -1.0) -> OrderRequest:
    intent = OrderIntent(ts_ns=START_NS, intent_id=tag, strategy_id="s1", contract=contract(), side=Side.BUY,
                         quantity=150, order_type=order_type, purpose=purpose, expected_price=1_230,
                         limit_price=1_235 if order_type in (OrderType.LIMIT, OrderType.SL) else 0,
                         trigger_price=1_200 if order_type in (OrderType.SL, OrderType.SL_M) else 0,
                         market_protection=market_protection)
    return OrderRequest(ts_ns=START_NS, intent=intent, tag=tag)


# --- wire format ----------------------------------------------------------------------------------------------


async def test_headers_and_query_encoding(env: Env) -> None:
    assert await env.client.profile() == fixture_data("profile.json")
    call = env.kite.last("GET", "/user/profile")
    assert call.headers["X-Kite-Version"] == "3"
    assert call.headers["Authorization"] == f"token {API_KEY}:{TOKEN}"
    assert "trader" in call.headers["User-Agent"]

    assert await env.client.quote(["NSE:INFY", "NSE:NIFTY 50"]) == fixture_data("quote.json")
    assert env.kite.last("GET", "/quote").query == [("i", "NSE:INFY"), ("i", "NSE:NIFTY 50")]
    assert await env.client.ltp("NSE:INFY") == fixture_data("ltp.json")
    assert env.kite.last("GET", "/quote/ltp").query == [("i", "NSE:INFY")]


async def test_generate_session_checksum_and_no_auth_header(env: Env) -> None:
    client = env.make_client(access_token=None)
    session = await client.generate_session("reqtok", "secret")
    assert session == fixture_data("generate_session.json")
    assert client.access_token == session["access_token"]
    call = env.kite.last("POST", "/session/token")
    assert "Authorization" not in call.headers
    assert call.content_type.startswith("application/x-www-form-urlencoded")
    expected = hashlib.sha256(b"key1reqtoksecret").hexdigest()
    assert call.form == {"api_key": API_KEY, "request_token": "reqtok", "checksum": expected}
    assert checksum("key1", "reqtok", "secret").startswith("441813a5")  # the doc's verified example
    assert (await client.profile()) and env.kite.last("GET", "/user/profile").headers["Authorization"] == (
        f"token {API_KEY}:{session['access_token']}")

    assert await client.invalidate_session() is True
    logout = env.kite.last("DELETE", "/session/token")
    assert dict(logout.query) == {"api_key": API_KEY, "access_token": session["access_token"]}
    assert logout.body == b""
    assert client.access_token is None


async def test_order_calls_encoding_and_results(env: Env) -> None:
    client = env.client
    order_id = await client.place_order("regular", exchange="NFO", tradingsymbol="NIFTY2580724400CE",
                                        transaction_type="BUY", quantity=75, product="MIS", order_type="LIMIT",
                                        price=12.3, validity="DAY", tag="abc123", disclosed_quantity=None)
    assert order_id == "151220000000000"
    call = env.kite.last("POST", "/orders/regular")
    assert call.content_type.startswith("application/x-www-form-urlencoded")
    assert call.query == []
    assert call.form == {"variety": "regular", "exchange": "NFO", "tradingsymbol": "NIFTY2580724400CE",
                         "transaction_type": "BUY", "quantity": "75", "product": "MIS", "order_type": "LIMIT",
                         "price": "12.3", "validity": "DAY", "tag": "abc123"}

    assert await client.modify_order("regular", "151220000000000", price=12.5) == fixture_data(
        "order_modify.json")["order_id"]
    put = env.kite.last("PUT", "/orders/regular/151220000000000")
    assert put.form == {"variety": "regular", "order_id": "151220000000000", "price": "12.5"}

    assert await client.cancel_order("regular", "151220000000000") == fixture_data("order_cancel.json")["order_id"]
    delete = env.kite.last("DELETE", "/orders/regular/151220000000000")
    assert delete.query == [] and delete.body == b""

    assert await client.orders() == fixture_data("orders.json")
    assert await client.order_history("151220000000000") == fixture_data("order_info.json")
    assert await client.trades() == fixture_data("trades.json")
    assert await client.order_trades("151220000000000") == fixture_data("order_trades.json")
    assert await client.positions() == fixture_data("positions.json")
    assert await client.margins() == fixture_data("margins.json")
    assert await client.margins("equity") == fixture_data("margins_equity.json")


async def test_margin_calculators_send_json_arrays(env: Env) -> None:
    orders = [{"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY", "variety": "regular",
               "product": "CNC", "order_type": "MARKET", "quantity": 1, "price": 0, "trigger_price": 0}]
    assert await env.client.order_margins(orders) == fixture_data("order_margins.json")
    call = env.kite.last("POST", "/margins/orders")
    assert call.content_type.startswith("application/json")
    assert json.loads(call.body) == orders

    assert await env.client.basket_margins(orders, consider_positions=True) == fixture_data("basket_margins.json")
    basket = env.kite.last("POST", "/margins/basket")
    assert basket.content_type.startswith("application/json")
    assert json.loads(basket.body) == orders
    assert dict(basket.query) == {"consider_positions": "true"}


async def test_instruments_dump_becomes_instrument_master(env: Env) -> None:
    master = await env.client.instruments()
    option = master.contract("BANKNIFTY18JAN23500CE")
    assert option is not None
    assert (option.instrument_token, option.lot_size, option.tick_size, option.strike, option.expiry) == (
        12073986, 40, 5, 2_350_000, date(2018, 1, 25))
    assert master.contract("ADANIPORTS17DEC490PE") is None  # stock options are not ours
    await env.client.instruments("NSE")
    assert env.kite.count("GET", "/instruments/NSE") == 1


# --- errors ---------------------------------------------------------------------------------------------------

ERROR_CASES = [
    ("TokenException", 403, kex.TokenException),
    ("InputException", 400, kex.InputException),
    ("OrderException", 400, kex.OrderException),
    ("OrderException", 500, kex.OrderException),
    ("NetworkException", 503, kex.NetworkException),
    ("NetworkException", 429, kex.NetworkException),
    ("DataException", 502, kex.DataException),
    ("GeneralException", 500, kex.GeneralException),
    ("PermissionException", 403, kex.PermissionException),
    ("MarginException", 400, kex.GeneralException),
    ("HoldingException", 400, kex.GeneralException),
    ("UserException", 403, kex.GeneralException),
    ("NoSuchThing", 418, kex.GeneralException),
]


@pytest.mark.parametrize(("error_type", "status", "cls"), ERROR_CASES)
async def test_error_type_maps_to_official_class(env: Env, error_type: str, status: int,
                                                 cls: type[kex.KiteException]) -> None:
    env.kite.queue_error("POST", "/orders/regular", status, error_type, "custom message")
    with pytest.raises(kex.KiteException) as info:
        await env.client.place_order("regular", order_type="LIMIT", tag="t1")
    assert type(info.value) is cls
    assert info.value.code == status
    assert str(info.value) == "custom message"


async def test_error_type_on_success_body_still_raises(env: Env) -> None:
    env.kite.queue("GET", "/orders", 200, {"status": "success", "data": [], "error_type": "InputException",
                                           "message": "odd"})
    with pytest.raises(kex.InputException) as info:
        await env.client.orders()
    assert info.value.code == 200


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/html", b"<html>bad gateway</html>"),
    ("application/json", b"{not json"),
    ("application/json", b"[1, 2]"),
    ("application/octet-stream", b""),
])
async def test_content_type_problems_raise_data_exception(env: Env, content_type: str, body: bytes) -> None:
    env.kite.queue("GET", "/user/profile", 400, body, content_type)  # 4xx: no retry
    with pytest.raises(kex.DataException) as info:
        await env.client.profile()
    assert info.value.code == 502  # the class default, as the official client raises it
    assert classify(info.value) is BrokerUnavailable


async def test_instruments_answered_with_json_is_a_data_exception(env: Env) -> None:
    env.kite.queue("GET", "/instruments", 200, {"status": "success", "data": []})
    with pytest.raises(kex.DataException):
        await env.client.instruments()


# --- retries --------------------------------------------------------------------------------------------------


async def test_get_retried_on_503_and_429_then_succeeds(env: Env) -> None:
    env.kite.queue_error("GET", "/orders", 503, "NetworkException")
    env.kite.queue_error("GET", "/orders", 429, "NetworkException", "Too many requests")
    before = env.clock.now_ns()
    assert await env.client.orders() == fixture_data("orders.json")
    assert env.kite.count("GET", "/orders") == 3
    assert env.clock.now_ns() > before  # backed off on the (simulated) clock


async def test_get_retries_are_bounded(env: Env) -> None:
    for _ in range(5):
        env.kite.queue_error("GET", "/trades", 502, "DataException")
    with pytest.raises(kex.DataException) as info:
        await env.client.trades()
    assert info.value.code == 502
    assert env.kite.count("GET", "/trades") == 3


async def test_get_not_retried_on_4xx(env: Env) -> None:
    env.kite.queue_error("GET", "/orders", 403, "TokenException")
    with pytest.raises(kex.TokenException):
        await env.client.orders()
    assert env.kite.count("GET", "/orders") == 1


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/orders/regular"), ("PUT", "/orders/regular/151220000000000"),
    ("DELETE", "/orders/regular/151220000000000"), ("POST", "/margins/orders"),
])
async def test_writes_never_retried(env: Env, method: str, path: str) -> None:
    env.kite.queue_error(method, path, 503, "NetworkException")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "POST /orders/regular": lambda: env.client.place_order("regular", order_type="LIMIT", tag="t1"),
        "PUT /orders/regular/151220000000000": lambda: env.client.modify_order("regular", "151220000000000",
                                                                               price=1),
        "DELETE /orders/regular/151220000000000": lambda: env.client.cancel_order("regular", "151220000000000"),
        "POST /margins/orders": lambda: env.client.order_margins([{}]),
    }
    with pytest.raises(kex.NetworkException) as info:
        await calls[f"{method} {path}"]()
    assert info.value.code == 503
    assert env.kite.count(method, path) == 1


async def test_connection_error_is_retried_for_get_only() -> None:
    # A port with nothing listening: bind, note the port, close.
    server = TestServer(web.Application(), host="127.0.0.1", port=0)
    await server.start_server()
    root = str(server.make_url("/"))
    await server.close()
    clock = SimClock(START_NS)
    async with KiteRestClient(API_KEY, TOKEN, root=root, clock=clock, timeout_s=1.0) as client:
        with pytest.raises(aiohttp.ClientError) as info:
            await client.orders()
        assert classify(info.value) is BrokerUnavailable
        assert clock.now_ns() > START_NS  # two backoffs happened
        with pytest.raises(aiohttp.ClientError):
            await client.place_order("regular", order_type="LIMIT", tag="t1")


async def test_timeout_retried_for_get_but_not_for_post(env: Env) -> None:
    # The stalled calls never answer in time, whatever the load; the others have the whole timeout to answer.
    client = env.make_client(timeout_s=0.5)
    env.kite.stalls[("GET", "/orders")] = 1
    assert await client.orders() == fixture_data("orders.json")
    assert env.kite.count("GET", "/orders") == 2
    # Accepted by the server, answer too late: the client must not send it again.
    env.kite.stalls[("POST", "/orders/regular")] = 1
    with pytest.raises(TimeoutError) as info:
        await client.place_order("regular", order_type="LIMIT", tag="late1")
    assert classify(info.value) is BrokerUnavailable
    env.kite.release.set()  # the stalled handlers answer now, to nobody
    await wait_for(lambda: env.kite.stalled_ended == 2)
    assert env.kite.count("POST", "/orders/regular") == 1


# --- client-side validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [
    {"order_type": "LIMIT"},  # no tag
    {"order_type": "LIMIT", "tag": "has space"},
    {"order_type": "LIMIT", "tag": "x" * 21},
    {"order_type": "MARKET", "tag": "t1"},  # no market_protection
    {"order_type": "SL-M", "tag": "t1", "trigger_price": 10},
    {"order_type": "MARKET", "tag": "t1", "market_protection": 0},
    {"order_type": "MARKET", "tag": "t1", "market_protection": 101},
])
async def test_place_order_validates_before_sending(env: Env, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"tag|market_protection"):
        await env.client.place_order("regular", **params)
    assert env.kite.count("POST", "/orders/regular") == 0


# --- rate limiting --------------------------------------------------------------------------------------------


async def test_rate_limiter_paces_quote_and_order_requests(env: Env) -> None:
    for _ in range(3):
        await env.client.ltp("NSE:INFY")
    times = [c.at_ns for c in env.kite.calls if c.path == "/quote/ltp"]
    assert [b - a for a, b in itertools.pairwise(times)] == [NS_PER_SECOND, NS_PER_SECOND]

    start = env.clock.now_ns()
    for i in range(9):
        await env.client.place_order("regular", order_type="LIMIT", tag=f"t{i}")
    times = [c.at_ns for c in env.kite.calls if c.path == "/orders/regular"]
    assert times[0] == start
    assert times[:8] == [start] * 8  # 8 in any second: a burst of 8 goes at once ...
    assert times[8] == start + NS_PER_SECOND  # ... and the 9th waits until the first leaves the window


# --- the Broker port ------------------------------------------------------------------------------------------


async def test_broker_place_market_order_sends_tag_and_protection(env: Env) -> None:
    broker = KiteBroker(env.client)
    assert broker.wants_ticks is False
    assert await broker.place_order(request()) == "151220000000000"
    form = env.kite.last("POST", "/orders/regular").form
    assert form == {"variety": "regular", "exchange": "NFO", "tradingsymbol": "NIFTY2580724400CE",
                    "transaction_type": "BUY", "quantity": "150", "product": "MIS", "order_type": "MARKET",
                    "validity": "DAY", "tag": "ENT1ABCDEF00000001", "market_protection": "-1"}


async def test_broker_place_sl_and_limit_prices_in_rupees(env: Env) -> None:
    broker = KiteBroker(env.client, product="NRML")
    await broker.place_order(request(OrderType.SL, tag="T2"))
    form = env.kite.last("POST", "/orders/regular").form
    assert (form["price"], form["trigger_price"], form["product"]) == ("12.35", "12.00", "NRML")
    assert "market_protection" not in form
    await broker.place_order(request(OrderType.SL_M, tag="T3", market_protection=2.5))
    form = env.kite.last("POST", "/orders/regular").form
    assert (form["trigger_price"], form["market_protection"]) == ("12.00", "2.5")
    assert "price" not in form


@pytest.mark.parametrize(("status", "error_type", "expected"), [
    (429, "NetworkException", RateLimited),
    (500, "GeneralException", BrokerUnavailable),
    (502, "DataException", BrokerUnavailable),
    (503, "NetworkException", BrokerUnavailable),
    (504, "GeneralException", BrokerUnavailable),
    (400, "InputException", OrderRejected),
    (400, "OrderException", OrderRejected),
    (400, "MarginException", OrderRejected),
    (403, "TokenException", KiteSessionExpired),
])
async def test_broker_maps_errors(env: Env, status: int, error_type: str, expected: type) -> None:
    env.kite.queue_error("POST", "/orders/regular", status, error_type)
    with pytest.raises(expected) as info:
        await KiteBroker(env.client).place_order(request())
    assert type(info.value) is expected
    assert isinstance(info.value.__cause__, kex.KiteException)
    assert env.kite.count("POST", "/orders/regular") == 1


async def test_broker_html_error_page_is_unavailable(env: Env) -> None:
    env.kite.queue("POST", "/orders/regular", 504, b"<html>gateway timeout</html>", "text/html")
    with pytest.raises(BrokerUnavailable):
        await KiteBroker(env.client).place_order(request())
    env.kite.queue("POST", "/orders/regular", 429, b"Too many requests", "text/plain")
    with pytest.raises(RateLimited):
        await KiteBroker(env.client).place_order(request())


async def test_broker_invalid_tag_is_rejected_without_sending(env: Env) -> None:
    with pytest.raises(OrderRejected, match="tag"):
        await KiteBroker(env.client).place_order(request(tag="bad tag"))
    assert env.kite.count("POST", "/orders/regular") == 0


async def test_find_order_by_tag(env: Env) -> None:
    broker = KiteBroker(env.client)
    assert await broker.find_order_by_tag("icebergord") == BrokerOrder(
        order_id="220524001859672", tag="icebergord", status=OrderStatus.REJECTED, quantity=200,
        filled_quantity=0, average_price=0, instrument_token=779521, tradingsymbol="SBIN", side=Side.BUY,
        status_message="Insufficient funds. Required margin is 95417.84 but available margin is 74251.80. Check the "
                       "orderbook for open orders.")
    found = await broker.find_order_by_tag("connect test order1")
    assert found == BrokerOrder(order_id="700000000000000", tag="connect test order1",
                                status=OrderStatus.COMPLETE, quantity=1, filled_quantity=1, average_price=485_200,
                                instrument_token=58424839, tradingsymbol="GOLDPETAL21JUNFUT", side=Side.BUY)
    assert await broker.find_order_by_tag("NOSUCHTAG") is None


async def test_find_order_by_tag_returns_newest(env: Env) -> None:
    rows = [
        {"order_id": "2", "tag": "DUP", "status": "OPEN", "order_timestamp": "2026-01-05 10:00:01", "quantity": 75,
         "filled_quantity": 0, "average_price": 0},
        {"order_id": "1", "tag": "DUP", "status": "CANCELLED", "order_timestamp": "2026-01-05 09:59:59",
         "quantity": 75, "filled_quantity": 0, "average_price": 0},
        {"order_id": "3", "tag": "OTHER", "status": "OPEN", "order_timestamp": "2026-01-05 10:05:00",
         "quantity": 75, "filled_quantity": 0, "average_price": 0},
    ]
    env.kite.queue("GET", "/orders", 200, {"status": "success", "data": rows})
    found = await KiteBroker(env.client).find_order_by_tag("DUP")
    assert found is not None and (found.order_id, found.status) == ("2", OrderStatus.OPEN)


async def test_open_orders_and_cancel(env: Env) -> None:
    broker = KiteBroker(env.client)
    assert await broker.open_orders() == []  # every fixture order is final
    await broker.cancel_order("151220000000000")
    assert env.kite.count("DELETE", "/orders/regular/151220000000000") == 1
    env.kite.queue_error("DELETE", "/orders/regular/151220000000000", 400, "InputException")
    with pytest.raises(OrderRejected):
        await broker.cancel_order("151220000000000")
    env.kite.queue_error("GET", "/orders", 500, "GeneralException")
    env.kite.queue_error("GET", "/orders", 500, "GeneralException")
    env.kite.queue_error("GET", "/orders", 500, "GeneralException")
    with pytest.raises(BrokerUnavailable):
        await broker.open_orders()


def test_order_status_mapping() -> None:
    assert order_status("OPEN") is OrderStatus.OPEN
    assert order_status("TRIGGER PENDING") is OrderStatus.TRIGGER_PENDING
    assert order_status("MODIFY PENDING") is OrderStatus.OPEN
    assert order_status("PUT ORDER REQ RECEIVED") is OrderStatus.PENDING
    assert order_status("SOMETHING NEW") is OrderStatus.PENDING
    assert order_status(None) is OrderStatus.PENDING


async def test_broker_positions_margins_and_order_margin_in_paise(env: Env) -> None:
    broker = KiteBroker(env.client)
    assert await broker.positions() == {53496327: 1}  # the net rows with quantity 0 are flat
    equity = fixture_data("margins_equity.json")
    assert await broker.margins() == MarginView(available=round(equity["net"] * 100),
                                                used=round(equity["utilised"]["debits"] * 100))
    assert env.kite.count("GET", "/user/margins/equity") == 1

    assert await broker.order_margin(request(OrderType.LIMIT).intent) == 149_800  # fixture total 1498 rupees
    sent = json.loads(env.kite.last("POST", "/margins/orders").body)
    assert sent == [{"exchange": "NFO", "tradingsymbol": "NIFTY2580724400CE", "transaction_type": "BUY",
                     "variety": "regular", "product": "MIS", "order_type": "LIMIT", "quantity": 150,
                     "price": 12.35, "trigger_price": 0.0}]
    assert await broker.order_margin(request(purpose=IntentPurpose.EXIT).intent) == 0
    assert env.kite.count("POST", "/margins/orders") == 1


def test_margins_fixture_values_in_paise() -> None:
    # The documented choice: available = equity.net, used = equity.utilised.debits.
    equity = fixture_data("margins.json")["equity"]
    assert (round(equity["net"] * 100), round(equity["utilised"]["debits"] * 100)) == (9_972_505, 14_570_655)
