"""Our async ``KiteRestClient`` and ``KiteBroker`` (the Broker port) against the exchange simulator on 127.0.0.1.

Every value is checked against the simulator's own book (``sim.orders``, ``sim.trades``, ``sim.last_price``, its paper
broker), and every fault knob against the Broker-port classification the execution actor relies on: ``RateLimited``
(not accepted), ``BrokerUnavailable`` (may exist: look the tag up), ``OrderRejected`` (does not exist).

The client runs on an unpaced ``SimClock``: its pacing and GET back-off never sleep for real. The simulator's wall
clock (which drives only its 10-order-requests-per-second limit) is a controllable fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import aiohttp
import pytest

from trader.adapters.kite.broker import KiteBroker
from trader.adapters.kite.rest import KiteRestClient
from trader.adapters.ports import BrokerUnavailable, MarginView, OrderRejected, RateLimited
from trader.clock import NS_PER_SECOND, SimClock
from trader.events import IntentPurpose, OrderIntent, OrderRequest, OrderStatus, OrderType, Side
from trader.market.calendar import IST
from trader.market.instruments import OptionContract, OptionType
from trader.sim import ExchangeSimulator, Faults

from helpers import atm

pytestmark = pytest.mark.usefixtures("quiet_logs")

OPEN = int(datetime(2026, 11, 20, 9, 15, tzinfo=IST).timestamp()) * NS_PER_SECOND  # Fri; expiry Mon 23 Nov
START = OPEN + 60 * NS_PER_SECOND
FAST = {"orders": 1000.0, "quote": 1000.0, "historical": 1000.0, "default": 1000.0}


class FakeWall:
    """The simulator's wall clock: one second further on each read, or ``frozen`` in one calendar second."""

    def __init__(self) -> None:
        self.ns = OPEN
        self.frozen = False

    def __call__(self) -> int:
        if not self.frozen:
            self.ns += NS_PER_SECOND
        return self.ns


@dataclass
class Harness:
    sim: ExchangeSimulator
    wall: FakeWall
    client: KiteRestClient
    broker: KiteBroker
    session: aiohttp.ClientSession
    sent: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request the client sent

    def sent_to(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.sent if m == method and p == path)


async def login(sim: ExchangeSimulator, client: KiteRestClient) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sim.base_url}/connect/login", params={"api_key": sim.api_key, "v": "3"},
                            allow_redirects=False) as response:
            assert response.status == 302
            request_token = response.headers["Location"].split("request_token=")[1].split("&")[0]
    return await client.generate_session(request_token, "sim_api_secret")


async def harness(faults: Faults | None = None, *, seed: int = 7, **client_kwargs: Any) -> Harness:
    wall = FakeWall()
    sim = ExchangeSimulator(start_ns=START, wall_ns=wall, faults=Faults(), seed=seed)
    base = await sim.start()
    sent: list[tuple[str, str]] = []

    async def on_start(_session: object, _ctx: object, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append((params.method, params.url.path))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    session = aiohttp.ClientSession(trace_configs=[trace])
    client_kwargs.setdefault("rate_limits", FAST)
    client_kwargs.setdefault("backoff_s", 0.01)
    client = KiteRestClient(sim.api_key, root=base, session=session, clock=SimClock(START), **client_kwargs)
    h = Harness(sim=sim, wall=wall, client=client, broker=KiteBroker(client), session=session, sent=sent)
    await login(sim, client)
    sim.faults = faults or Faults()  # faults start after the login
    sent.clear()
    return h


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    rig = await harness()
    yield rig
    await close(rig)


async def close(rig: Harness) -> None:
    await rig.sim.stop()
    await rig.session.close()



def on_tick(paise: float, tick: int = 5) -> int:
    return round(paise / tick) * tick


def request(contract: OptionContract, tag: str, *, order_type: OrderType = OrderType.LIMIT, quantity: int = 0,
            limit: int = 0, trigger: int = 0, protection: float = -1.0, side: Side = Side.BUY,
            expected: int = 10_000, purpose: IntentPurpose = IntentPurpose.ENTRY) -> OrderRequest:
    intent = OrderIntent(ts_ns=START, intent_id=f"i-{tag}", strategy_id="test", contract=contract, side=side,
                         quantity=quantity or contract.lot_size, order_type=order_type, purpose=purpose,
                         expected_price=expected, limit_price=limit, trigger_price=trigger,
                         market_protection=protection)
    return OrderRequest(ts_ns=START, intent=intent, tag=tag)


def resting_limit(h: Harness, contract: OptionContract, tag: str) -> OrderRequest:
    """A BUY LIMIT inside the price band but well below the market: it stays OPEN."""
    return request(contract, tag, limit=on_tick(h.sim.last_price(contract.instrument_token) * 0.8))


# -- session, funds, market data --------------------------------------------------------------------------------

async def test_login_profile_and_margins_match_the_simulator() -> None:
    h = await harness()
    try:
        h.client.access_token = None
        session = await login(h.sim, h.client)
        assert h.client.access_token == session["access_token"]
        assert session["access_token"] in h.sim.auth.access_tokens
        profile = await h.client.profile()
        assert profile["user_id"] == session["user_id"] == "SIM001"

        view = await h.broker.margins()
        paper = await h.sim.broker.margins()
        assert view == MarginView(available=paper.available, used=paper.used)
        assert view.available == 1_000_000 * 100 and view.used == 0
        raw = await h.client.margins()
        assert raw["equity"]["net"] * 100 == view.available
    finally:
        await close(h)


async def test_order_margin_for_an_entry_matches_the_simulators_calculator(h: Harness) -> None:
    contract = atm(h.sim)
    price = on_tick(h.sim.last_price(contract.instrument_token))
    limit = request(contract, "m1", limit=price).intent
    margin = await h.broker.order_margin(limit)
    assert margin == await h.sim.broker.order_margin(limit) > 0
    raw = await h.client.order_margins([{"exchange": "NFO", "tradingsymbol": contract.tradingsymbol,
                                         "transaction_type": "BUY", "variety": "regular", "product": "MIS",
                                         "order_type": "LIMIT", "quantity": contract.lot_size,
                                         "price": price / 100}])
    assert round(raw[0]["total"] * 100) == margin and raw[0]["tradingsymbol"] == contract.tradingsymbol
    # A MARKET entry is valued at its expected price; an exit only reduces a position and is never asked about.
    market = request(contract, "m2", order_type=OrderType.MARKET, expected=price).intent
    assert await h.broker.order_margin(market) == margin
    before = h.sent_to("POST", "/margins/orders")
    exit_intent = request(contract, "m3", side=Side.SELL, purpose=IntentPurpose.EXIT).intent
    assert await h.broker.order_margin(exit_intent) == 0
    assert h.sent_to("POST", "/margins/orders") == before


async def test_ltp_and_quote_of_the_index_and_an_option_equal_the_book(h: Harness) -> None:
    await h.sim.advance(5)
    index = h.sim.market.index
    contract = atm(h.sim, OptionType.PE)
    keys = {f"{index.exchange}:{index.tradingsymbol}": index.instrument_token,
            f"NFO:{contract.tradingsymbol}": contract.instrument_token}
    ltp = await h.client.ltp(list(keys))
    quote = await h.client.quote(list(keys))
    assert set(ltp) == set(quote) == set(keys)
    for key, token in keys.items():
        book = h.sim.last_price(token)
        assert book > 0
        assert ltp[key]["instrument_token"] == quote[key]["instrument_token"] == token
        assert round(ltp[key]["last_price"] * 100) == round(quote[key]["last_price"] * 100) == book
    tick = h.sim.book_tick(contract.instrument_token)
    assert tick is not None
    option = quote[f"NFO:{contract.tradingsymbol}"]
    assert round(option["depth"]["buy"][0]["price"] * 100) == tick.bid
    assert round(option["depth"]["sell"][0]["price"] * 100) == tick.ask


async def test_instruments_build_the_master_of_the_listed_contracts(h: Harness) -> None:
    master = await h.client.instruments()
    listed = h.sim.listed_contracts()
    assert listed
    for contract in listed:
        assert master.contract(contract.tradingsymbol) == contract
        assert (contract.lot_size, contract.tick_size) == (65, 5)
    assert sum(len(master.option_chain("NIFTY", e)) for e in master.expiries("NIFTY")) == len(listed)
    index = master.index_for("NIFTY")
    assert index is not None and index.instrument_token == h.sim.market.index.instrument_token
    assert master.lot_size("NIFTY") == 65


# -- orders -----------------------------------------------------------------------------------------------------

async def test_place_market_limit_sl_with_tags_then_fills_orders_trades_positions(h: Harness) -> None:
    call, put = atm(h.sim), atm(h.sim, OptionType.PE)
    last = h.sim.last_price(put.instrument_token)
    market_id = await h.broker.place_order(request(call, "mkt1", order_type=OrderType.MARKET))
    limit_id = await h.broker.place_order(resting_limit(h, put, "lim1"))
    sl_id = await h.broker.place_order(request(put, "sl1", order_type=OrderType.SL,
                                               trigger=on_tick(last * 1.25), limit=on_tick(last * 1.3)))
    # What reached the server: the tag, MARKET's automatic protection, the prices in rupees on the tick.
    book = h.sim.orders
    assert {book[i].tag for i in (market_id, limit_id, sl_id)} == {"mkt1", "lim1", "sl1"}
    assert book[market_id].order_type is OrderType.MARKET and book[market_id].market_protection == -1
    assert book[limit_id].price == on_tick(last * 0.8)
    assert (book[sl_id].trigger_price, book[sl_id].price) == (on_tick(last * 1.25), on_tick(last * 1.3))

    await h.sim.advance(3)
    found = await h.broker.find_order_by_tag("mkt1")
    assert found is not None and found.order_id == market_id and found.tag == "mkt1"
    assert found.status is OrderStatus.COMPLETE and found.filled_quantity == found.quantity == call.lot_size
    assert found.average_price == round(book[market_id].average_price * 100) > 0
    limit = await h.broker.find_order_by_tag("lim1")
    sl = await h.broker.find_order_by_tag("sl1")
    assert limit is not None and limit.status is OrderStatus.OPEN and limit.filled_quantity == 0
    assert sl is not None and sl.status is OrderStatus.TRIGGER_PENDING
    assert await h.broker.find_order_by_tag("nosuchtag") is None
    assert {o.order_id for o in await h.broker.open_orders()} == {limit_id, sl_id}

    orders = await h.client.orders()
    assert {o["order_id"]: o["status"] for o in orders} == {i: o.status for i, o in book.items()}
    history = await h.client.order_history(market_id)
    assert [e["status"] for e in history] == [e["status"] for e in book[market_id].history]
    assert history[-1]["status"] == "COMPLETE"
    trades = await h.client.trades()
    assert trades == h.sim.trades and {t["order_id"] for t in trades} == {market_id}
    assert sum(t["quantity"] for t in trades) == call.lot_size
    assert await h.client.order_trades(market_id) == trades

    assert await h.broker.positions() == {call.instrument_token: call.lot_size}
    raw = await h.client.positions()
    assert raw == h.sim.portfolio.positions_view()
    view = await h.broker.margins()
    paper = await h.sim.broker.margins()
    assert (view.available, view.used) == (paper.available, paper.used) and view.used > 0


async def test_modify_via_client_and_cancel_via_broker(h: Harness) -> None:
    put = atm(h.sim, OptionType.PE)
    order_id = await h.broker.place_order(resting_limit(h, put, "mod1"))
    new_price = h.sim.orders[order_id].price - 100
    assert await h.client.modify_order("regular", order_id, order_type="LIMIT", quantity=2 * put.lot_size,
                                       price=f"{new_price / 100:.2f}") == order_id
    order = h.sim.orders[order_id]
    assert (order.price, order.quantity, order.modifications, order.status) == (new_price, 130, 1, "OPEN")
    history = [e["status"] for e in await h.client.order_history(order_id)]
    assert "MODIFIED" in history and history[-1] == "OPEN"
    found = await h.broker.find_order_by_tag("mod1")
    assert found is not None and found.quantity == 2 * put.lot_size and found.status is OrderStatus.OPEN

    await h.broker.cancel_order(order_id)
    assert h.sim.orders[order_id].status == "CANCELLED"
    found = await h.broker.find_order_by_tag("mod1")
    assert found is not None and found.status is OrderStatus.CANCELLED
    assert await h.broker.open_orders() == []
    with pytest.raises(OrderRejected, match="cannot be cancelled"):  # the simulator's OrderException
        await h.broker.cancel_order(order_id)
    await h.sim.advance(2)
    assert h.sim.trades == [] and await h.broker.positions() == {}


# -- rejections -------------------------------------------------------------------------------------------------

async def test_rejections_carry_the_simulators_message_and_leave_no_order(h: Harness) -> None:
    put = atm(h.sim, OptionType.PE)
    with pytest.raises(OrderRejected, match="multiple of the lot size 65"):
        await h.broker.place_order(request(put, "bad1", quantity=put.lot_size + 1, limit=on_tick(
            h.sim.last_price(put.instrument_token))))
    off_tick = on_tick(h.sim.last_price(put.instrument_token)) + 2
    with pytest.raises(OrderRejected, match=r"Tick size for this script is 0\.05"):
        await h.broker.place_order(request(put, "bad2", limit=off_tick))
    assert h.sent_to("POST", "/orders/regular") == 2
    assert h.sim.orders == {}


async def test_unprotected_market_orders_and_bad_tags_never_leave_the_client(h: Harness) -> None:
    call = atm(h.sim)
    with pytest.raises(OrderRejected, match="market_protection"):
        await h.broker.place_order(request(call, "nomp1", order_type=OrderType.MARKET, protection=0))
    with pytest.raises(OrderRejected, match="tag"):
        await h.broker.place_order(request(call, "bad-tag!", order_type=OrderType.MARKET))
    with pytest.raises(ValueError, match="market_protection"):
        await h.client.place_order("regular", exchange="NFO", tradingsymbol=call.tradingsymbol,
                                   transaction_type="BUY", quantity=call.lot_size, product="MIS",
                                   order_type="MARKET", tag="nomp2")
    assert h.sent == []
    assert h.sim.orders == {}


# -- fault knobs ------------------------------------------------------------------------------------------------

async def test_5xx_on_every_request_makes_a_placement_unavailable_and_no_order_exists() -> None:
    h = await harness(Faults(error_rate=1.0))
    try:
        with pytest.raises(BrokerUnavailable, match=r"HTTP 50[023]"):
            await h.broker.place_order(resting_limit(h, atm(h.sim), "err1"))
        assert h.sent_to("POST", "/orders/regular") == 1  # a write is sent exactly once
        assert h.sim.orders == {}
    finally:
        await close(h)


async def test_get_orders_succeeds_through_retries_under_half_5xx() -> None:
    h = await harness(seed=3, get_attempts=6)
    try:
        await h.broker.place_order(resting_limit(h, atm(h.sim), "r1"))
        h.sim.faults = Faults(error_rate=0.5)
        h.sent.clear()
        found = await h.broker.find_order_by_tag("r1")
        assert found is not None and found.status is OrderStatus.OPEN
        assert h.sent_to("GET", "/orders") > 1, "the seeded simulator answered the first GET: no retry exercised"
    finally:
        await close(h)


async def test_429_on_every_request_is_rate_limited_and_no_order_exists() -> None:
    h = await harness(Faults(rate_limit_rate=1.0))
    try:
        with pytest.raises(RateLimited, match="HTTP 429"):
            await h.broker.place_order(resting_limit(h, atm(h.sim), "rl1"))
        assert h.sent_to("POST", "/orders/regular") == 1
        assert h.sim.orders == {}
    finally:
        await close(h)


async def test_the_eleventh_order_request_in_one_second_is_rate_limited(h: Harness) -> None:
    put = atm(h.sim, OptionType.PE)
    h.wall.frozen = True
    for n in range(10):
        await h.broker.place_order(resting_limit(h, put, f"burst{n}"))
    with pytest.raises(RateLimited):
        await h.broker.place_order(resting_limit(h, put, "burst10"))
    assert sorted(o.tag or "" for o in h.sim.orders.values()) == sorted(f"burst{n}" for n in range(10))
    assert await h.broker.find_order_by_tag("burst10") is None
    h.wall.frozen = False  # the next calendar second: accepted again
    await h.broker.place_order(resting_limit(h, put, "burst10"))
    assert len(h.sim.orders) == 11


@pytest.mark.parametrize("mode", ["drop", "delay"])
async def test_accepted_placement_whose_answer_is_lost_is_found_by_its_tag(mode: Literal["drop", "delay"]) -> None:
    # The late answer comes long after the client's timeout; every other answer has that whole timeout to arrive.
    faults = Faults(timeout_after_accept=1.0, timeout_mode=mode, timeout_delay_s=30.0)
    h = await harness(faults, timeout_s=2.0)
    try:
        with pytest.raises(BrokerUnavailable):
            await h.broker.place_order(resting_limit(h, atm(h.sim), "lost1"))
        assert h.sent_to("POST", "/orders/regular") == 1
        found = await h.broker.find_order_by_tag("lost1")
        assert found is not None and found.status is OrderStatus.OPEN
        assert [o.order_id for o in h.sim.orders.values() if o.tag == "lost1"] == [found.order_id]
    finally:
        await close(h)


async def test_latency_beyond_the_client_timeout_makes_a_get_unavailable_after_retries() -> None:
    h = await harness(Faults(latency_ms=200), timeout_s=0.1, get_attempts=3)
    try:
        with pytest.raises(BrokerUnavailable, match="Timeout"):
            await h.broker.open_orders()
        assert h.sent_to("GET", "/orders") == 3
        with pytest.raises(BrokerUnavailable):
            await h.broker.margins()
    finally:
        await close(h)
