"""The exchange simulator's REST half, driven by the unmodified official ``kiteconnect`` client.

The client is synchronous (requests), so every call runs in a worker thread while the simulator serves on the
test's event loop. The market moves only through ``sim.advance``: no test sleeps for simulated time.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from trader.adapters.synthetic import SyntheticConfig
from trader.market.calendar import MarketCalendar
from trader.market.instruments import OptionContract, OptionType
from trader.sim import ExchangeSimulator, Faults

from helpers import atm

SESSION_DAY = date(2026, 12, 2)  # a Wednesday; the nearest NIFTY weekly expires on Tuesday 8 Dec
T0 = MarketCalendar().session_bounds(SESSION_DAY)[0]

pytestmark = pytest.mark.usefixtures("quiet_logs")


def stepping_wall() -> Callable[[], int]:
    """A wall clock one second further on each read: the order-rate limit never trips by accident."""
    counter = itertools.count(1_800_000_000)
    return lambda: next(counter) * 1_000_000_000


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def make_sim(**kwargs: Any) -> ExchangeSimulator:
    kwargs.setdefault("start_ns", T0)
    kwargs.setdefault("wall_ns", stepping_wall())
    sim = ExchangeSimulator(**kwargs)
    await sim.start()
    return sim


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    simulator = await make_sim()
    yield simulator
    await simulator.stop()


async def login(sim: ExchangeSimulator, **client_kwargs: Any) -> KiteConnect:
    kite = KiteConnect(sim.api_key, root=sim.base_url, **client_kwargs)
    answer = await call(requests.get, f"{sim.base_url}/connect/login", params={"api_key": sim.api_key, "v": 3},
                        allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = urlparse(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == sim.redirect_url
    query = parse_qs(location.query)
    assert (query["action"], query["type"], query["status"]) == (["login"], ["login"], ["success"])
    await call(kite.generate_session, query["request_token"][0], sim.api_secret)
    return kite



def order_args(contract: OptionContract, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"variety": "regular", "exchange": contract.exchange,
                            "tradingsymbol": contract.tradingsymbol, "transaction_type": "BUY",
                            "quantity": contract.lot_size, "product": "NRML", "order_type": "LIMIT", "tag": "t1"}
    args.update(overrides)
    return {k: v for k, v in args.items() if v is not None}


def rupees_on_tick(paise: float, tick: int = 5) -> float:
    return round(paise / tick) * tick / 100


# -- login and auth ---------------------------------------------------------------------------------------------

async def test_login_flow_session_payload_and_token_checks(sim: ExchangeSimulator) -> None:
    kite = KiteConnect(sim.api_key, root=sim.base_url)
    answer = await call(requests.get, f"{sim.base_url}/connect/login", params={"api_key": sim.api_key, "v": 3},
                        allow_redirects=False, timeout=5)
    request_token = parse_qs(urlparse(answer.headers["Location"]).query)["request_token"][0]
    with pytest.raises(kex.TokenException, match="checksum") as bad:
        await call(kite.generate_session, request_token, "wrong-secret")
    assert bad.value.code == 403
    session = await call(kite.generate_session, request_token, sim.api_secret)
    assert isinstance(session["login_time"], datetime)
    assert session["access_token"] and session["api_key"] == sim.api_key and session["user_id"]
    with pytest.raises(kex.TokenException):  # request tokens are single-use
        await call(KiteConnect(sim.api_key, root=sim.base_url).generate_session, request_token, sim.api_secret)

    assert (await call(kite.profile))["user_id"] == session["user_id"]
    stranger = KiteConnect(sim.api_key, root=sim.base_url, access_token="not-a-token")
    with pytest.raises(kex.TokenException) as denied:
        await call(stranger.orders)
    assert denied.value.code == 403
    raw = await call(requests.get, f"{sim.base_url}/orders", timeout=5,
                     headers={"Authorization": f"token {sim.api_key}:{session['access_token']}"})
    assert raw.status_code == 403 and raw.json()["error_type"] == "TokenException"  # no X-Kite-Version

    assert await call(kite.invalidate_access_token) is True
    with pytest.raises(kex.TokenException):
        await call(kite.orders)


# -- orders, trades, positions, funds ---------------------------------------------------------------------------

async def test_market_order_fills_and_every_view_agrees_with_the_book(sim: ExchangeSimulator) -> None:
    kite = await login(sim)
    contract = atm(sim)
    order_id = await call(kite.place_order, **order_args(contract, order_type="MARKET", market_protection=-1,
                                                          tag="mkt1"))
    assert isinstance(order_id, str)
    await sim.advance(3)

    [order] = await call(kite.orders)
    assert order["order_id"] == order_id and order["status"] == "COMPLETE" and order["tag"] == "mkt1"
    assert order["filled_quantity"] == contract.lot_size and order["pending_quantity"] == 0
    assert isinstance(order["order_timestamp"], datetime)
    history = await call(kite.order_history, order_id)
    statuses = [h["status"] for h in history]
    assert statuses[:4] == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING", "OPEN"]
    assert statuses[-1] == "COMPLETE"

    trades = await call(kite.trades)
    assert trades == await call(kite.order_trades, order_id)
    assert sum(t["quantity"] for t in trades) == contract.lot_size
    assert all(t["order_id"] == order_id and t["tradingsymbol"] == contract.tradingsymbol for t in trades)
    value = sum(t["quantity"] * t["average_price"] for t in trades)
    assert order["average_price"] == pytest.approx(value / contract.lot_size, abs=0.01)
    assert len(trades) == len(sim.trades)

    positions = await call(kite.positions)
    [net] = positions["net"]
    assert net["quantity"] == (await sim.broker.positions())[contract.instrument_token] == contract.lot_size
    assert net["buy_value"] == pytest.approx(value)
    assert net["last_price"] == sim.last_price(contract.instrument_token) / 100
    assert net["pnl"] == pytest.approx(contract.lot_size * net["last_price"] - value)
    assert positions["day"] == positions["net"]

    view = await sim.broker.margins()
    equity = await call(kite.margins, "equity")
    assert equity["net"] == view.available / 100
    assert equity["utilised"]["debits"] == view.used / 100
    assert (await call(kite.margins))["equity"] == equity

    price = sim.last_price(contract.instrument_token)
    [margin] = await call(kite.order_margins, [{
        "exchange": contract.exchange, "tradingsymbol": contract.tradingsymbol, "transaction_type": "BUY",
        "variety": "regular", "product": "NRML", "order_type": "LIMIT", "quantity": contract.lot_size,
        "price": price / 100}])
    # Buying more of what is held blocks its premium; charges come with a breakdown.
    assert margin["total"] == contract.lot_size * price / 100
    assert margin["charges"]["total"] > 0 and margin["tradingsymbol"] == contract.tradingsymbol


async def test_limit_order_rests_is_modified_and_cancelled(sim: ExchangeSimulator) -> None:
    kite = await login(sim)
    contract = atm(sim)
    last = sim.last_price(contract.instrument_token)
    low = rupees_on_tick(last * 0.7)
    order_id = await call(kite.place_order, **order_args(contract, price=low))
    await sim.advance(2)
    assert (await call(kite.order_history, order_id))[-1]["status"] == "OPEN"

    lower = rupees_on_tick(last * 0.65)
    assert await call(kite.modify_order, "regular", order_id, quantity=2 * contract.lot_size, price=lower) \
        == order_id
    await sim.advance(2)
    history = await call(kite.order_history, order_id)
    assert "MODIFIED" in [h["status"] for h in history]
    current = history[-1]
    assert (current["status"], current["price"], current["quantity"]) == ("OPEN", lower, 2 * contract.lot_size)
    assert current["modified"] is True

    assert await call(kite.cancel_order, "regular", order_id) == order_id
    [order] = await call(kite.orders)
    assert order["status"] == "CANCELLED" and order["cancelled_quantity"] == 2 * contract.lot_size
    assert await call(kite.order_trades, order_id) == []
    with pytest.raises(kex.OrderException, match="CANCELLED"):
        await call(kite.cancel_order, "regular", order_id)


async def test_sl_order_waits_for_its_trigger(sim: ExchangeSimulator) -> None:
    kite = await login(sim)
    contract = atm(sim)
    last = sim.last_price(contract.instrument_token)
    trigger = rupees_on_tick(last * 1.3)
    order_id = await call(kite.place_order, **order_args(contract, order_type="SL", trigger_price=trigger,
                                                          price=rupees_on_tick(last * 1.35)))
    await sim.advance(2)
    [order] = await call(kite.orders)
    assert order["status"] == "TRIGGER PENDING" and order["trigger_price"] == trigger
    await call(kite.cancel_order, "regular", order_id)
    assert (await call(kite.order_history, order_id))[-1]["status"] == "CANCELLED"


# -- market data ---------------------------------------------------------------------------------------------------

async def test_ltp_quote_and_instrument_dump(sim: ExchangeSimulator) -> None:
    kite = await login(sim)
    await sim.advance(5)
    contract = atm(sim, OptionType.PE)
    option_key = f"{contract.exchange}:{contract.tradingsymbol}"
    index = sim.market.index
    ltp = await call(kite.ltp, ["NSE:NIFTY 50", option_key, "NFO:NOSUCHSYMBOL"])
    assert set(ltp) == {"NSE:NIFTY 50", option_key}
    assert ltp["NSE:NIFTY 50"] == {"instrument_token": index.instrument_token,
                                   "last_price": sim.last_price(index.instrument_token) / 100}
    assert ltp[option_key]["last_price"] == sim.last_price(contract.instrument_token) / 100

    quote = (await call(kite.quote, option_key))[option_key]
    assert quote["instrument_token"] == contract.instrument_token
    assert quote["last_price"] == ltp[option_key]["last_price"]
    assert isinstance(quote["timestamp"], datetime)
    assert quote["ohlc"]["low"] <= quote["last_price"] <= quote["ohlc"]["high"]
    assert len(quote["depth"]["buy"]) == len(quote["depth"]["sell"]) == 5
    assert quote["depth"]["buy"][0]["price"] < quote["depth"]["sell"][0]["price"]

    dump = await call(kite.instruments)
    rows = {row["tradingsymbol"]: row for row in dump}
    assert rows["NIFTY 50"]["segment"] == "INDICES"
    row = rows[contract.tradingsymbol]
    assert row["instrument_token"] == contract.instrument_token
    assert (row["lot_size"], row["tick_size"], row["strike"]) == (65, 0.05, contract.strike / 100)
    assert row["expiry"] == contract.expiry and row["instrument_type"] == "PE" and row["segment"] == "NFO-OPT"
    nfo = await call(kite.instruments, "NFO")
    assert {r["tradingsymbol"] for r in nfo} == {c.tradingsymbol for c in sim.listed_contracts()}


# -- rejections ----------------------------------------------------------------------------------------------------

async def test_rejections_have_kites_shapes(sim: ExchangeSimulator) -> None:
    kite = await login(sim)
    contract = atm(sim)
    last = sim.last_price(contract.instrument_token)
    assert last > 5_000  # premium above ₹50: the LPP band is ±40 %
    fair = rupees_on_tick(last)
    cases: list[tuple[dict[str, Any], type[kex.KiteException], str]] = [
        (order_args(contract, price=fair + 0.03), kex.InputException, "multiple of tick size"),
        (order_args(contract, price=fair, quantity=contract.lot_size + 1), kex.InputException, "lot size"),
        (order_args(contract, price=fair, quantity=28 * contract.lot_size), kex.InputException, "freeze"),
        (order_args(contract, order_type="MARKET"), kex.InputException, "market_protection"),
        (order_args(contract, order_type="MARKET", market_protection=0), kex.InputException, "market_protection"),
        (order_args(contract, order_type="SL-M", trigger_price=fair), kex.InputException, "market_protection"),
        (order_args(contract, price=rupees_on_tick(last * 1.5)), kex.OrderException, "price band"),
        (order_args(contract, price=rupees_on_tick(last * 0.5)), kex.OrderException, "price band"),
        (order_args(contract, price=fair, tradingsymbol="NIFTY99DEC1CE"), kex.InputException, "not listed"),
        (order_args(contract, price=fair, tag="x" * 21), kex.InputException, "20 characters"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message) as raised:
            await call(kite.place_order, **args)
        assert raised.value.code == 400, args
    assert await call(kite.orders) == []


async def test_insufficient_margin_is_a_margin_exception() -> None:
    sim = await make_sim(capital_rupees=50_000)
    try:
        kite = await login(sim)
        contract = atm(sim)
        fair = rupees_on_tick(sim.last_price(contract.instrument_token))
        lots = int(60_000 // (fair * contract.lot_size)) + 1
        raw = await call(requests.post, f"{sim.base_url}/orders/regular", timeout=5,
                         data=order_args(contract, price=fair, quantity=lots * contract.lot_size),
                         headers={"X-Kite-Version": "3", "Authorization": f"token {sim.api_key}:{kite.access_token}"})
        assert raw.status_code == 400 and raw.json()["error_type"] == "MarginException"
        # The official client has no MarginException class: it falls back to GeneralException.
        with pytest.raises(kex.GeneralException, match="Insufficient funds") as raised:
            await call(kite.place_order, **order_args(contract, price=fair, quantity=lots * contract.lot_size))
        assert raised.value.code == 400
        assert await call(kite.place_order, **order_args(contract, price=fair))  # one lot fits
    finally:
        await sim.stop()


async def test_orders_are_refused_after_the_close_and_accepted_next_session() -> None:
    sim = await make_sim(synthetic=SyntheticConfig(tick_interval_ms=60_000, chain_interval_ms=60_000))
    try:
        kite = await login(sim)
        contract = atm(sim)
        await sim.advance(6.5 * 3600)  # 15:45 IST, after the 15:40 close
        assert not sim.calendar.is_open(sim.clock.now_ns())
        with pytest.raises(kex.InputException, match="Markets are closed"):
            await call(kite.place_order, **order_args(contract, order_type="MARKET", market_protection=-1))
        await sim.advance(18 * 3600)  # next morning, 09:45
        assert sim.calendar.is_open(sim.clock.now_ns())
        assert await call(kite.place_order, **order_args(contract, order_type="MARKET", market_protection=-1))
    finally:
        await sim.stop()


async def test_eleventh_order_request_in_one_second_gets_429() -> None:
    second = [1_800_000_000 * 1_000_000_000]
    sim = await make_sim(wall_ns=lambda: second[0])
    try:
        kite = await login(sim)
        contract = atm(sim)
        fair = rupees_on_tick(sim.last_price(contract.instrument_token) * 0.9)
        for _ in range(10):
            await call(kite.place_order, **order_args(contract, price=fair))
        with pytest.raises(kex.NetworkException, match="Too many requests") as raised:
            await call(kite.place_order, **order_args(contract, price=fair))
        assert raised.value.code == 429
        assert len(await call(kite.orders)) == 10  # reads are not order requests
        second[0] += 1_000_000_000  # the next calendar second
        assert await call(kite.place_order, **order_args(contract, price=fair))
    finally:
        await sim.stop()


# -- fault knobs ---------------------------------------------------------------------------------------------------

async def test_5xx_share_forced_429_and_latency(sim: ExchangeSimulator) -> None:
    kite = await login(sim)
    sim.faults.error_rate = 1.0
    for _ in range(5):
        with pytest.raises((kex.GeneralException, kex.DataException, kex.NetworkException)) as raised:
            await call(kite.orders)
        assert raised.value.code in (500, 502, 503)
    sim.faults.error_rate = 0.3
    outcomes = []
    for _ in range(40):
        try:
            await call(kite.positions)
            outcomes.append(True)
        except kex.KiteException:
            outcomes.append(False)
    assert 0 < outcomes.count(False) < 40
    sim.faults.error_rate = 0.0

    sim.faults.rate_limit_rate = 1.0
    with pytest.raises(kex.NetworkException) as limited:
        await call(kite.margins)
    assert limited.value.code == 429
    sim.faults.rate_limit_rate = 0.0

    sim.faults.latency_ms = 100
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await call(kite.orders) == []
    assert loop.time() - started >= 0.1
    sim.faults.latency_ms = 0


@pytest.mark.parametrize("mode", ["delay", "drop"])
async def test_timeout_after_accept_leaves_the_order_on_the_book(mode: Literal["delay", "drop"]) -> None:
    # The late answer comes long after the client's timeout; every other answer has that whole timeout to arrive.
    sim = await make_sim(faults=Faults(timeout_after_accept=1.0, timeout_mode=mode,
                                       timeout_delay_s=30.0))
    try:
        kite = await login(sim, timeout=2)
        contract = atm(sim)
        with pytest.raises(requests.exceptions.RequestException):
            await call(kite.place_order, **order_args(contract, order_type="MARKET", market_protection=-1,
                                                      tag="lost1"))
        sim.faults.timeout_after_accept = 0.0
        await sim.advance(2)
        [order] = await call(kite.orders)
        assert order["tag"] == "lost1" and order["status"] == "COMPLETE"
    finally:
        await sim.stop()
