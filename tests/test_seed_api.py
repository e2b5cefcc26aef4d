"""The seed's Python API (``trader.api``), snippet by snippet, as the user's roadmap writes it.

Every Python snippet of the seed that uses these names is copied below *verbatim* from the user's document
``docs/reference/seed-roadmap.md`` (the section it comes from is named beside it; the snippets indented inside a
numbered list there are stored de-indented). The project never reads that file: the copies are the contract.

Each snippet runs with ``exec`` in a namespace holding every name ``trader.api`` exports, plus a small prelude for
the names the seed leaves undefined (``contract``, ``risk_config``, ...). Where a snippet cannot run as written the
test first shows what it does as written, then runs it with a documented substitution; every substitution is
listed where it is made:

* the seed's imports name its old layout (``src.execution.broker_execution`` & co.): ``trader.api`` instead;
* credentials: ``'your_key'``/``'your_secret'``/``'your_access_token'`` become the simulator's;
* quantities: the seed's "50 # 1 lot" was NIFTY's lot size before 2026; it is 65 now (fact sheet §2.1). As
  written, the order is refused with the lot size named; then it runs with 65;
* ``OptionContract(...)`` (a placeholder in the seed) becomes ``OptionContract.parse(<a listed symbol>)``;
* the seed's risk manager reads the wall clock; the tests give it the market's (or a fixed) clock, so an answer
  never depends on the day or hour the test runs.

Paper runs on the built-in market, seeded, starting on Wed 2 Dec 2026 10:00 IST (``TRADER_SIM__START``); the
'zerodha' snippets run against ``trader sim`` (a subprocess on 127.0.0.1, port 0). No network, no sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import trader.api
from trader.api import (
    BrokerExecution,
    LiveOptionsTradingSystem,
    OptionChain,
    OptionContract,
    OrderSide,
    OrderType,
    RealTimeDataManager,
    RiskConfig,
    RiskLevel,
    RiskManager,
    TradingState,
    create_broker_api,
    create_data_provider,
    shutdown,
)
from trader.api.loop import RUNNER, THREAD_NAME
from trader.market.calendar import IST

from helpers import sim_access_token, sim_get

pytestmark = pytest.mark.usefixtures("quiet_logs")

SESSION_START = "2026-12-02T10:00"  # a Wednesday; the nearest NIFTY weekly expires on Tuesday 8 Dec
NIFTY = "NSE:NIFTY50-INDEX"

# --- the seed's snippets, verbatim ---------------------------------------------------------------------------------

# "1. DATA FIRST - REAL-TIME FEEDS", Usage
DATA_USAGE = """\
# For Zerodha
provider = create_data_provider('zerodha', api_key='your_key', api_secret='your_secret')
provider.connect()
provider.set_access_token('your_access_token')

# For paper trading
provider = create_data_provider('paper')

# Create data manager
manager = RealTimeDataManager(provider)
manager.start()

# Get real-time data
price = manager.get_underlying_price('NSE:NIFTY50-INDEX')
chain = manager.get_option_chain('NSE:NIFTY50-INDEX')
"""

# "2. EXECUTION LAYER - BROKER INTEGRATION", Usage
BROKER_USAGE = """\
# Create broker API
broker_api = create_broker_api('zerodha', api_key='your_key', api_secret='your_secret')
broker_api.connect()
broker_api.set_access_token('your_access_token')

# Create execution system
execution = BrokerExecution(broker_api)

# Place order
response = execution.place_option_order(
    contract=contract,
    quantity=50,  # 1 lot
    side=OrderSide.BUY,
    order_type=OrderType.MARKET
)

# Check margin
has_margin = execution.check_margin_before_order(contract, 50, OrderSide.BUY)
"""

# "2. EXECUTION LAYER", Next steps 1: "Start with paper trading"
PAPER_BROKER = """\
broker_api = create_broker_api('paper')
"""

# "3. RISK & CAPITAL CONTROLS", Usage
RISK_USAGE = """\
# Create risk configuration
config = RiskConfig(
    initial_capital=100000.0,
    max_daily_loss_pct=0.03,  # 3%
    max_positions_per_symbol=3,
    max_total_positions=10,
    max_lots_per_trade=2
)

# Create risk manager
risk_manager = RiskManager(config)
risk_manager.start_monitoring()

# Check if order is allowed
can_place, reason = risk_manager.check_can_place_order(
    contract, quantity, side, price
)

# Record trade
risk_manager.record_trade(contract, quantity, side, price)
"""

# "3. RISK & CAPITAL CONTROLS", Next steps 1: "Set conservative limits"
CONSERVATIVE_LIMITS = """\
config = RiskConfig(
    initial_capital=100000.0,
    max_daily_loss_pct=0.02,  # 2% daily loss
    max_risk_per_trade_pct=0.01,  # 1% per trade
    max_lots_per_trade=1,  # Start with 1 lot
    min_margin_buffer=50000.0  # ₹50k buffer
)
"""

# "4. BRIDGING BACKTEST <-> REAL", Usage
TRADING_SYSTEM_USAGE = """\
# Create live trading system
trading_system = LiveOptionsTradingSystem(
    trading_mode='paper',  # or 'live'
    auto_execution=False,  # Start with manual
    symbols=['NSE:NIFTY50-INDEX'],
    strategies=['ema_crossover_enhanced'],
    confidence_cutoff=40.0,
    risk_config=risk_config
)

# Start system
trading_system.start()

# Place manual order
result = trading_system.manual_order(
    contract_symbol='NIFTY25AUG25000CE',
    quantity=50,
    side='BUY',
    order_type='MARKET'
)

# Get performance report
report = trading_system.get_performance_report()
"""

# "COMMANDS TO GET STARTED", 2. Test Broker Integration
TEST_BROKER_INTEGRATION = """\
from src.execution.broker_execution import create_broker_api, BrokerExecution
from src.models.option_contract import OptionContract, OptionType

# Test paper broker
broker_api = create_broker_api('paper')
execution = BrokerExecution(broker_api)

# Test order placement
contract = OptionContract(...)  # Create test contract
response = execution.place_option_order(contract, 50, OrderSide.BUY)
print(f"Order response: {response}")
"""

# "COMMANDS TO GET STARTED", 3. Test Risk Management
TEST_RISK_MANAGEMENT = """\
from src.risk.risk_manager import RiskManager, RiskConfig

# Create risk manager
config = RiskConfig(initial_capital=100000.0, max_daily_loss_pct=0.02)
risk_manager = RiskManager(config)
risk_manager.start_monitoring()

# Test risk checks
can_place, reason = risk_manager.check_can_place_order(contract, 50, OrderSide.BUY)
print(f"Can place order: {can_place}, Reason: {reason}")
"""

# "COMMANDS TO GET STARTED", 4. Test Real-Time Data
TEST_REAL_TIME_DATA = """\
from src.data.realtime_data_manager import create_data_provider, RealTimeDataManager

# Create data provider
provider = create_data_provider('historical')  # or 'zerodha'
manager = RealTimeDataManager(provider)
manager.start()

# Get real-time data
price = manager.get_underlying_price('NSE:NIFTY50-INDEX')
chain = manager.get_option_chain('NSE:NIFTY50-INDEX')
print(f"Current price: {price}")
print(f"Option contracts: {len(chain.contracts) if chain else 0}")
"""

# "SUPPORT & TROUBLESHOOTING", Common issues 1: Data Connection Issues
DATA_CONNECTION_ISSUES = """\
# Check connection
if not manager.is_connected():
    print("Data connection lost, reconnecting...")
    manager.start()
"""

# Common issues 2: Order Rejection
ORDER_REJECTION = """\
# Check margin before order
if not execution.check_margin_before_order(contract, quantity, side):
    print("Insufficient margin")
"""

# Common issues 3: Risk Limits Hit
RISK_LIMITS_HIT = """\
# Check risk status
metrics = risk_manager.get_risk_metrics()
if metrics.risk_level == RiskLevel.CRITICAL:
    print("Critical risk level - trading stopped")
"""

# Emergency Procedures 1: Stop Trading
STOP_TRADING = """\
trading_system.stop()
"""

# Emergency Procedures 2: Close All Positions
CLOSE_ALL_POSITIONS = """\
positions = broker_execution.get_positions()
for position in positions:
    # Place closing orders
    pass
"""

# Emergency Procedures 3: Reset Risk Limits
RESET_RISK_LIMITS = """\
risk_manager.reset_daily_metrics()
"""

# The seed's module paths are its old layout; everything is importable from trader.api.
OLD_LAYOUT = ("src.execution.broker_execution", "src.models.option_contract", "src.risk.risk_manager",
              "src.data.realtime_data_manager")
LOT_SIZE_SUBSTITUTION = (", 50", ", 65")  # the seed's "1 lot" of 50 units: 65 since 2026 (fact sheet §2.1)


def run(snippet: str, namespace: dict[str, Any], *substitutions: tuple[str, str]) -> dict[str, Any]:
    """``exec`` the snippet in ``namespace`` after the substitutions (each must occur in it) and the old-layout
    imports; returns the namespace."""
    code = snippet
    for old, new in substitutions:
        assert old in code, f"substitution {old!r} does not occur in the snippet"
        code = code.replace(old, new)
    for module in OLD_LAYOUT:
        code = code.replace(f"from {module} import", "from trader.api import")
    exec(compile(code, "<seed snippet>", "exec"), namespace)
    return namespace


def seed_names(**prelude: Any) -> dict[str, Any]:
    """Every name trader.api exports, and the prelude's."""
    return {**{name: getattr(trader.api, name) for name in trader.api.__all__}, **prelude}


# --- fixtures -------------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def api_env(quiet_logs: None, clean_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """A fixed simulated session and seed for the built-in market; afterwards every trader.api object is stopped
    and no thread of it is left."""
    clean_env.setenv("TRADER_SIM__START", SESSION_START)
    clean_env.setenv("TRADER_SIM__SEED", "7")
    clean_env.setenv("TRADER_DATA_DIR", str(tmp_path / "data"))
    threads = set(threading.enumerate())
    yield clean_env
    shutdown()
    assert not RUNNER.running
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME], "a trader.api thread was left running"
    assert set(threading.enumerate()) <= threads, f"threads left: {set(threading.enumerate()) - threads}"


def paper_market() -> tuple[RealTimeDataManager, OptionChain]:
    manager = RealTimeDataManager(create_data_provider("paper"))
    manager.start()
    chain = manager.get_option_chain(NIFTY)
    assert chain is not None
    return manager, chain


def near_premium(chain: OptionChain, rupees: float) -> Any:
    """The call whose ask is nearest ``rupees`` (a premium whose risk fits the default per-trade budget)."""
    return min(chain.calls, key=lambda c: abs(c.ask - rupees))


def fixed_clock(text: str) -> Callable[[], int]:
    """A clock standing still at ``text`` (IST)."""
    from datetime import datetime  # noqa: PLC0415

    ns = int(datetime.fromisoformat(text).replace(tzinfo=IST).timestamp()) * 1_000_000_000
    return lambda: ns


# --- 1. data ------------------------------------------------------------------------------------------------------

def test_the_paper_market_gives_prices_a_chain_with_iv_and_greeks_and_names_historical_issue() -> None:
    manager, chain = paper_market()
    assert manager.is_connected()
    assert manager.get_underlying_price(NIFTY) == pytest.approx(26_000.0, rel=0.01)
    assert chain.underlying == "NIFTY" and chain.expiry.isoformat() == "2026-12-08"
    assert len(chain.contracts) >= 42  # ±10 strikes, CE and PE
    atm = chain.atm("CE")
    assert 0 < atm.bid < atm.ask and atm.last_price > 0
    assert atm.iv == pytest.approx(0.13, abs=0.02)  # the built-in market's ATM volatility
    assert atm.delta is not None and 0.4 < atm.delta < 0.6
    assert atm.theta is not None and atm.theta < 0 and atm.vega is not None and atm.vega > 0
    put = chain.atm("PE")
    assert put.delta is not None and -0.6 < put.delta < -0.4
    assert isinstance(atm, OptionContract) and type(atm.contract) is OptionContract
    with pytest.raises(NotImplementedError, match=r"issue #11 \(the replay provider\)"):
        create_data_provider("historical")


def test_test_real_time_data_as_written_waits_for_issue_11_and_runs_on_paper(capsys: pytest.CaptureFixture[str]) \
        -> None:
    with pytest.raises(NotImplementedError, match="#11"):
        run(TEST_REAL_TIME_DATA, seed_names())
    # Substitution: the seed's own alternative provider, 'paper' for 'historical'.
    names = run(TEST_REAL_TIME_DATA, seed_names(), ("'historical'", "'paper'"))
    printed = capsys.readouterr().out
    price = float(re.search(r"Current price: ([0-9.]+)", printed).group(1))  # type: ignore[union-attr]
    contracts = int(re.search(r"Option contracts: (\d+)", printed).group(1))  # type: ignore[union-attr]
    assert price == pytest.approx(26_000.0, rel=0.01) and contracts >= 42
    assert names["chain"].contracts and names["manager"].is_connected()


def test_data_connection_issues_reconnects_a_stopped_manager(capsys: pytest.CaptureFixture[str]) -> None:
    manager, _ = paper_market()
    manager.stop()  # the prelude: a manager whose connection is gone
    assert not manager.is_connected()
    run(DATA_CONNECTION_ISSUES, seed_names(manager=manager))
    assert capsys.readouterr().out == "Data connection lost, reconnecting...\n"
    assert manager.is_connected() and manager.get_underlying_price(NIFTY) > 0
    run(DATA_CONNECTION_ISSUES, seed_names(manager=manager))
    assert capsys.readouterr().out == ""  # connected: nothing to do


# --- 2. execution ---------------------------------------------------------------------------------------------------

def test_broker_usage_on_paper_refuses_the_old_lot_and_fills_a_whole_lot() -> None:
    _, chain = paper_market()
    prelude = {"contract": chain.atm("CE")}
    paper = ("create_broker_api('zerodha', api_key='your_key', api_secret='your_secret')",
             PAPER_BROKER.strip().removeprefix("broker_api = "))  # the seed's own paper line
    with pytest.raises(ValueError, match=r"quantity 50 is not a whole number of lots \(lot size 65 .*use 65"):
        run(BROKER_USAGE, seed_names(**prelude), paper)
    names = run(BROKER_USAGE, seed_names(**prelude), paper, ("quantity=50", "quantity=65"), LOT_SIZE_SUBSTITUTION)
    response = names["response"]
    assert response.status == "COMPLETE" and response.ok and response.order_id.startswith("PAPER")
    assert response.filled_quantity == 65 and response.average_price > 0
    assert response["order_id"] == response.order_id and "filled at" in response.message
    assert names["has_margin"] is True
    positions = names["execution"].get_positions()
    assert [(p.tradingsymbol, p.quantity) for p in positions] == [(prelude["contract"].tradingsymbol, 65)]


def test_test_broker_integration_with_a_parsed_contract(capsys: pytest.CaptureFixture[str]) -> None:
    _, chain = paper_market()
    symbol = chain.atm("PE").tradingsymbol
    parsed = ("OptionContract(...)", f"OptionContract.parse({symbol!r})")  # the seed's placeholder, filled in
    with pytest.raises(ValueError, match="lot size 65"):
        run(TEST_BROKER_INTEGRATION, seed_names(), parsed)
    run(TEST_BROKER_INTEGRATION, seed_names(), parsed, LOT_SIZE_SUBSTITUTION)
    printed = capsys.readouterr().out
    assert printed.startswith("Order response: OrderResponse(") and "status='COMPLETE'" in printed
    assert f"tradingsymbol='{symbol}'" in printed and "side='BUY'" in printed


def test_order_rejection_says_insufficient_margin_only_when_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    _, chain = paper_market()
    contract = chain.atm("CE")
    execution = BrokerExecution(create_broker_api("paper"))  # capital ₹1,00,000 (the settings' default)
    names = seed_names(execution=execution, contract=contract, side=OrderSide.BUY)
    run(ORDER_REJECTION, {**names, "quantity": 65})
    assert capsys.readouterr().out == ""
    lots = int(100_000 / (contract.ask * 65)) + 1  # the premium of this many lots is more than the capital
    run(ORDER_REJECTION, {**names, "quantity": 65 * lots})
    assert capsys.readouterr().out == "Insufficient margin\n"
    required, available = execution.margin_for_order(contract, 65 * lots, OrderSide.BUY)
    assert required > available == 100_000.0


def test_close_all_positions_as_written_and_with_the_closing_orders_it_describes() -> None:
    _, chain = paper_market()
    broker_execution = BrokerExecution(create_broker_api("paper"))
    for contract in (chain.atm("CE"), chain.atm("PE")):
        assert broker_execution.place_option_order(contract, 65, OrderSide.BUY).status == "COMPLETE"
    names = run(CLOSE_ALL_POSITIONS, seed_names(broker_execution=broker_execution))
    assert len(names["positions"]) == 2  # as written: the loop's body is left to the reader
    # Substitution: the body the comment describes.
    closing = ("pass", "assert broker_execution.place_option_order(position.contract, abs(position.quantity), "
               "position.closing_side).status == 'COMPLETE'")
    run(CLOSE_ALL_POSITIONS, seed_names(broker_execution=broker_execution), closing)
    assert broker_execution.get_positions() == []


# --- 3. risk --------------------------------------------------------------------------------------------------------

def test_risk_usage_checks_and_records_on_the_market_clock() -> None:
    manager, chain = paper_market()
    contract = near_premium(chain, 40.0)
    prelude = seed_names(contract=contract, quantity=contract.lot_size, side=OrderSide.BUY, price=contract.ask)
    market_clock = ("RiskManager(config)", "RiskManager(config, now_ns=market_clock)")
    names = run(RISK_USAGE, {**prelude, "market_clock": manager.market_time_ns}, market_clock)
    assert (names["can_place"], names["reason"]) == (True, "approved")
    metrics = names["risk_manager"].get_risk_metrics()
    assert metrics.open_positions == 1 and metrics.trading_state is TradingState.ACTIVE
    # The conservative limits of the next steps are a valid configuration too.
    config = run(CONSERVATIVE_LIMITS, seed_names())["config"]
    assert (config.max_lots_per_trade, config.min_margin_buffer, config.max_risk_per_trade_pct) == (1, 50_000.0, 0.01)


def test_test_risk_management_without_a_price_asks_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    manager, chain = paper_market()
    contract = near_premium(chain, 40.0)
    market_clock = ("RiskManager(config)", "RiskManager(config, now_ns=market_clock)")
    names = run(TEST_RISK_MANAGEMENT, seed_names(contract=contract, market_clock=manager.market_time_ns),
                market_clock)
    printed = capsys.readouterr().out
    assert printed.startswith("Can place order: False, Reason: no price known for "), printed
    assert "give price=" in printed
    risk_manager = names["risk_manager"]
    # With the seed's quantity the lot is refused by name; with a price and a whole lot it is approved.
    assert risk_manager.check_can_place_order(contract, 50, OrderSide.BUY, contract.ask)[1].startswith(
        "quantity 50 is not a whole number of lots (lot size 65")
    assert risk_manager.check_can_place_order(contract, 65, OrderSide.BUY, contract.ask) == (True, "approved")
    # Once the contract has a mark (a trade), the three-argument call uses it.
    risk_manager.record_trade(contract, 65, OrderSide.BUY, contract.ask)
    assert risk_manager.check_can_place_order(contract, 65, OrderSide.BUY) == (True, "approved")


def test_risk_limits_hit_then_reset_risk_limits(capsys: pytest.CaptureFixture[str]) -> None:
    # The prelude: a day that lost 2.5 % of ₹1,00,000 against a 2 % daily limit, on a fixed clock.
    risk_manager = RiskManager(RiskConfig(initial_capital=100_000.0, max_daily_loss_pct=0.02),
                               now_ns=fixed_clock("2026-12-02T10:30"))
    contract = OptionContract.parse("NIFTY26D0826000CE")
    risk_manager.start_monitoring()
    risk_manager.record_trade(contract, 650, OrderSide.BUY, 100.0)
    risk_manager.record_trade(contract, 650, OrderSide.SELL, 96.15)  # −₹2,502.50
    names = seed_names(risk_manager=risk_manager)
    run(RISK_LIMITS_HIT, names)
    assert capsys.readouterr().out == "Critical risk level - trading stopped\n"
    assert risk_manager.get_risk_metrics().trading_state is TradingState.REDUCING_ONLY
    run(RESET_RISK_LIMITS, names)
    metrics = risk_manager.get_risk_metrics()
    assert metrics.trading_state is TradingState.ACTIVE and metrics.daily_pnl == 0
    assert metrics.risk_level is RiskLevel.MEDIUM  # the week's loss is still half the weekly limit
    run(RISK_LIMITS_HIT, names)
    assert capsys.readouterr().out == ""


# --- argument checks ------------------------------------------------------------------------------------------------

def test_every_argument_is_checked_with_a_message_that_says_what_would_do() -> None:
    _, chain = paper_market()
    contract = chain.atm("CE")
    execution = BrokerExecution(create_broker_api("paper"))
    refusals: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: create_data_provider("fyers"), ValueError,
         "unknown data provider 'fyers': choose one of 'paper', 'zerodha', 'historical'"),
        (lambda: create_broker_api("kite"), ValueError, "unknown broker 'kite': choose one of 'paper', 'zerodha'"),
        (lambda: create_data_provider("paper", api_key="x"), TypeError,
         "create_data_provider('paper') does not take api_key; it takes seed, speed, start, strikes_each_side"),
        (lambda: create_broker_api("zerodha"), TypeError, "needs api_key"),
        (lambda: create_data_provider("paper", speed=0), ValueError, "speed must be above 0"),
        (lambda: RealTimeDataManager("paper"), TypeError,  # type: ignore[arg-type]
         "RealTimeDataManager needs a provider from create_data_provider"),
        (lambda: RealTimeDataManager(create_data_provider("paper"), ["NSE:NIFTY51-INDEX"]), ValueError,
         "unknown underlying 'NSE:NIFTY51-INDEX'"),
        (lambda: RealTimeDataManager(create_data_provider("paper")).get_underlying_price(NIFTY), RuntimeError,
         "call start() first"),
        (lambda: BrokerExecution("paper"), TypeError, "needs a broker from create_broker_api"),  # type: ignore[arg-type]
        (lambda: execution.place_option_order(contract, 130, "HOLD"), ValueError, "side must be BUY or SELL"),
        (lambda: execution.place_option_order(contract, 65.0, "BUY"), TypeError,  # type: ignore[arg-type]
         "quantity must be a whole number of units"),
        (lambda: execution.place_option_order(contract, 0, "BUY"), ValueError, "must be a positive whole number"),
        (lambda: execution.place_option_order(contract, 65, "BUY", "STOP"), ValueError,
         "order_type must be one of MARKET, LIMIT, SL, SL-M"),
        (lambda: execution.place_option_order(contract, 65, "BUY", OrderType.LIMIT), ValueError,
         "price is required for a LIMIT order"),
        (lambda: execution.place_option_order(contract, 65, "BUY", "LIMIT", price=100.03), ValueError,
         "must be a positive multiple of the tick size ₹0.05"),
        (lambda: execution.place_option_order(contract, 65, "BUY", price=100.0), ValueError,
         "price is for LIMIT and SL orders"),
        (lambda: execution.place_option_order(contract, 65, "BUY", "SL-M"), ValueError,
         "trigger_price is required for a SL-M order"),
        (lambda: execution.place_option_order(contract, 65, "BUY", market_protection=0), ValueError,
         "market_protection must be -1 (automatic)"),
        (lambda: execution.place_option_order("NIFTY25AUG25000CE", 65, "BUY"), ValueError,
         "NIFTY25AUG25000CE is not listed on the paper market (it lists NIFTY expiries 2026-12-08"),
        (lambda: execution.place_option_order("NIFTY", 65, "BUY"), ValueError, "invalid option tradingsymbol"),
        (lambda: execution.place_option_order(42, 65, "BUY"), TypeError,  # type: ignore[arg-type]
         "contract must be an OptionContract"),
    ]
    for call, kind, message in refusals:
        with pytest.raises(kind) as caught:
            call()
        assert message in str(caught.value), (message, str(caught.value))
    manager = RealTimeDataManager(create_data_provider("paper"), ["NIFTY"])
    manager.start()
    with pytest.raises(ValueError, match="'BSE:SENSEX-INDEX' \\(SENSEX\\) is not among this manager's symbols"):
        manager.get_option_chain("BSE:SENSEX-INDEX")


def test_a_refusal_by_the_broker_is_an_answer_not_an_exception() -> None:
    _, chain = paper_market()
    contract = chain.atm("CE")
    execution = BrokerExecution(create_broker_api("paper"))
    # A buy limit far below the market rests: the answer comes once the broker has it.
    resting = execution.place_option_order(contract, 65, OrderSide.BUY, OrderType.LIMIT, price=0.05)
    assert (resting.status, resting.filled_quantity, resting.ok) == ("OPEN", 0, True)
    assert execution.get_order(resting.tag).status == "OPEN"
    # The paper broker refuses a buy stop whose limit is below its trigger.
    refused = execution.place_option_order(contract, 65, OrderSide.BUY, OrderType.SL, price=10.0,
                                           trigger_price=12.0)
    assert refused.status == "REJECTED" and not refused.ok and refused.order_id == ""
    assert "wrong side of the trigger" in refused.message


def test_a_paper_broker_can_fill_against_a_data_managers_quotes() -> None:
    manager, chain = paper_market()
    broker_api = create_broker_api("paper", market=manager)
    execution = BrokerExecution(broker_api)
    contract = chain.atm("PE")
    response = execution.place_option_order(contract, 130, "BUY")
    assert response.status == "COMPLETE" and response.filled_quantity == 130
    # One market: the position is marked with the manager's own last price of the contract.
    [position] = execution.get_positions()
    quote = manager.get_option_chain(NIFTY).get(contract.strike_rupees, "PE")  # type: ignore[union-attr]
    assert quote is not None and position.contract is not None
    assert position.contract.instrument_token == quote.instrument_token
    with pytest.raises(ValueError, match="already has a broker on it"):
        create_broker_api("paper", market=manager).connect()
    broker_api.close()
    assert manager.is_connected()  # closing the broker leaves the manager's market running


def test_the_loop_refuses_a_call_from_inside_itself_and_stops_with_the_last_holder() -> None:
    manager, _ = paper_market()
    with pytest.raises(RuntimeError, match="would wait for itself forever"):
        RUNNER.call(lambda: RUNNER.call(lambda: 1))
    assert RUNNER.running
    manager.stop()
    assert not RUNNER.running  # the last holder released the loop: its thread is gone
    with pytest.raises(RuntimeError, match="call start\\(\\) first"):
        manager.get_underlying_price(NIFTY)


# --- 'zerodha' against `trader sim` ----------------------------------------------------------------------------------

def _listening(log: Path) -> dict[str, Any] | None:
    for raw in log.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            line = orjson.loads(raw)
            if isinstance(line, dict) and line.get("event") == "sim_listening":
                return line
    return None


@pytest.fixture(scope="module")
def kite_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`trader sim --port 0` in a subprocess, on the same simulated session; its URLs and a logged-in token."""
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADER_")}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "trader", "sim", "--port", "0", "--start", SESSION_START,
                                    "--speed", "30"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while (line := _listening(log)) is None:  # the server's own announcement: the condition waited for
            assert process.poll() is None, f"trader sim exited {process.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"trader sim did not start: {log.read_text()}"
            time.sleep(0.05)
        token = asyncio.run(sim_access_token(line["rest_url"]))
        yield {"rest_url": line["rest_url"], "ws_url": line["ws_url"], "token": token}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def credentials(sim: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The seed's placeholders, substituted by the simulator's credentials."""
    return (("'your_key'", "'sim_api_key'"), ("'your_secret'", "'sim_api_secret'"),
            ("'your_access_token'", repr(sim["token"])))


def point_at(sim: dict[str, str], env: pytest.MonkeyPatch) -> None:
    """The daemon's own variables, so the snippets reach the simulator without an argument the seed does not have."""
    env.setenv("TRADER_KITE_API_ROOT", sim["rest_url"])
    env.setenv("TRADER_KITE_WS_ROOT", sim["ws_url"])


def test_data_usage_against_trader_sim(kite_sim: dict[str, str], api_env: pytest.MonkeyPatch) -> None:
    point_at(kite_sim, api_env)
    # As written (credentials substituted): the Zerodha provider logs in, then the paper one serves the manager.
    names = run(DATA_USAGE, seed_names(), *credentials(kite_sim))
    assert names["manager"].provider.name == "paper" and names["price"] > 0 and len(names["chain"]) >= 42
    names["manager"].stop()
    # Without the paper line, the manager runs on Kite market data from the simulator.
    zerodha_only = ("provider = create_data_provider('paper')", "")
    names = run(DATA_USAGE, seed_names(), *credentials(kite_sim), zerodha_only)
    manager, chain = names["manager"], names["chain"]
    assert manager.provider.name == "zerodha" and manager.is_connected()
    assert names["price"] == pytest.approx(26_000.0, rel=0.02)
    assert chain.expiry.isoformat() == "2026-12-08" and chain.contracts
    atm = chain.atm("CE")
    assert 0 < atm.bid < atm.ask and atm.iv == pytest.approx(0.13, abs=0.03) and atm.delta is not None
    # A token Kite refuses is refused at once, with the fix.
    with pytest.raises(PermissionError, match=r"refused the access token .*trader login"):
        names["provider"].set_access_token("not-a-token")


def test_broker_usage_against_trader_sim(kite_sim: dict[str, str], api_env: pytest.MonkeyPatch) -> None:
    point_at(kite_sim, api_env)
    provider = create_data_provider("zerodha", api_key="sim_api_key", access_token=kite_sim["token"])
    manager = RealTimeDataManager(provider)
    manager.start()
    chain = manager.get_option_chain(NIFTY)
    assert chain is not None
    contract = chain.atm("CE")
    with pytest.raises(ValueError, match=r"quantity 50 is not a whole number of lots \(lot size 65"):
        run(BROKER_USAGE, seed_names(contract=contract), *credentials(kite_sim))
    names = run(BROKER_USAGE, seed_names(contract=contract), *credentials(kite_sim), ("quantity=50", "quantity=65"),
                LOT_SIZE_SUBSTITUTION)
    response = names["response"]
    assert response.status == "COMPLETE" and response.filled_quantity == 65 and response.order_id
    assert names["has_margin"] is True
    # Exactly one order on the simulator's book under the response's tag.
    orders = asyncio.run(sim_get(kite_sim["rest_url"], kite_sim["token"], "/orders"))
    mine = [o for o in orders if o["tag"] == response.tag]
    assert [(o["order_id"], o["status"], o["quantity"]) for o in mine] == [(response.order_id, "COMPLETE", 65)]
    positions = names["execution"].get_positions()
    assert any(p.tradingsymbol == contract.tradingsymbol and p.quantity >= 65 and p.contract is not None
               for p in positions)


# --- 4. the trading system ------------------------------------------------------------------------------------------

def test_the_trading_systems_arguments_become_the_daemons_settings() -> None:
    risk_config = RiskConfig(initial_capital=50_000.0, max_daily_loss_pct=0.02, max_lots_per_trade=1)
    system = LiveOptionsTradingSystem(trading_mode="paper", auto_execution=False, symbols=["NSE:NIFTY50-INDEX"],
                                      strategies=["ema_crossover_enhanced"], confidence_cutoff=40.0,
                                      risk_config=risk_config, speed=60, overrides={"strategy": {"bar_seconds": 10}})
    settings = system.settings
    assert (settings.mode, settings.auto_execution, settings.symbols, settings.strategies) == (
        "paper", False, ["NSE:NIFTY50-INDEX"], ["ema_crossover_enhanced"])
    assert settings.strategy.confidence_cutoff == 40.0 and settings.strategy.bar_seconds == 10
    assert settings.risk == risk_config and settings.sim.speed == 60
    assert settings.sim.start is not None and settings.sim.start.isoformat().startswith(SESSION_START)  # the env
    assert (system.trading_mode, system.auto_execution) == ("paper", False)
    refusals: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"trading_mode": "backtest"}, ValueError, "unknown trading_mode 'backtest': choose one of 'paper', 'live'"),
        ({"trading_mode": "live"}, ValueError, "pass confirm_live=True (or set TRADER_LIVE_CONFIRM=yes)"),
        ({"trading_mode": "live", "confirm_live": True}, ValueError,
         "kite: live mode needs TRADER_KITE__API_KEY and an access token"),
        ({"auto_execution": "yes"}, TypeError, "auto_execution must be True or False"),
        ({"symbols": ["NSE:NIFTY51-INDEX"]}, ValueError, "unknown underlying 'NSE:NIFTY51-INDEX'"),
        ({"symbols": []}, ValueError, "symbols must be a non-empty list"),
        ({"strategies": ["ema_crossover"]}, ValueError,
         "unknown strategy 'ema_crossover'; available: ema_crossover_enhanced, opening_range_breakout (or a dotted "
         "path"),
        ({"confidence_cutoff": 140}, ValueError, "confidence_cutoff must be a number from 0 to 100"),
        ({"risk_config": {"max_daily_loss_pct": 3}}, ValueError, "it looks like a percentage: write 0.03 for 3%"),
        ({"risk_config": "conservative"}, TypeError, "risk_config must be a RiskConfig"),
        ({"speed": -1}, ValueError, "sim.speed"),
    ]
    for arguments, kind, message in refusals:
        with pytest.raises(kind) as caught:
            LiveOptionsTradingSystem(**arguments)
        assert message in str(caught.value), (arguments, str(caught.value))


def wait_until(condition: Callable[[], bool], within_s: float = 20.0) -> None:
    """Poll state that lives in the daemon's thread until ``condition`` holds; fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def test_trading_system_usage_manual_orders_report_and_emergency_procedures() -> None:
    _, chain = paper_market()  # the same seeded session the daemon's built-in market runs
    cheap = near_premium(chain, 40.0).tradingsymbol  # a premium whose risk fits the conservative 1 % per trade
    risk_config = run(CONSERVATIVE_LIMITS, seed_names())["config"]  # the prelude: the seed's conservative limits
    shutdown()  # the prelude's own market is not needed any more
    # As written: the seed's contract expired in August 2025, so the answer (not an exception) says so.
    names = run(TRADING_SYSTEM_USAGE, seed_names(risk_config=risk_config))
    trading_system, result = names["trading_system"], names["result"]
    assert trading_system.running and trading_system.settings.risk == risk_config
    assert (trading_system.trading_mode, trading_system.auto_execution) == ("paper", False)
    assert result["ok"] is False and result["status"] == 400 and result["error"]["field"] == "instrument"
    assert "NIFTY25AUG25000CE" in result["message"]
    assert names["report"]["trades"] == 0 and names["report"]["equity_inr"] == 100_000.0
    trading_system.stop()  # one daemon per data dir: the next one continues its journal
    # Substitutions: a listed contract and a whole lot (65).
    names = run(TRADING_SYSTEM_USAGE, seed_names(risk_config=risk_config), ("'NIFTY25AUG25000CE'", repr(cheap)),
                ("quantity=50", "quantity=65"), ("trading_system.start()", "trading_system.start()\n"
                                                 "assert trading_system.running"))
    trading_system, result = names["trading_system"], names["result"]
    assert result["ok"] is True and result["decided"] is True, result["message"]
    assert result["resolved"]["tradingsymbol"] == cheap and result["order"]["strategy"] == "manual"

    def held() -> list[tuple[str, int]]:
        return [(p["tradingsymbol"], p["quantity"]) for p in trading_system.positions()["positions"]
                if p["quantity"]]

    wait_until(lambda: held() == [(cheap, 65)])
    report = trading_system.get_performance_report()
    assert report["fills"] == 1 and report["open_positions"] == 1 and report["charges_inr"] > 0
    # Stop trading without stopping the daemon: the next entry is refused, naming the check.
    assert trading_system.halt("the test halts")["trading_state"] == "HALTED"
    refused = trading_system.manual_order(contract_symbol=cheap, quantity=65, side="BUY")
    assert refused["ok"] is False and refused["error"]["check"] == "state" and "HALTED" in refused["message"]
    assert trading_system.resume()["trading_state"] == "ACTIVE"
    assert trading_system.reset_daily()["ok"] is True
    # Close all positions.
    flattened = trading_system.flatten()
    assert flattened["ok"] is True and flattened["exits"] == 1
    wait_until(lambda: held() == [])
    with pytest.raises(ValueError, match="manual_order: side"):
        trading_system.manual_order(contract_symbol=cheap, quantity=65, side="HOLD")
    # The seed's emergency stop: the daemon stops gracefully; the final report stays readable.
    run(STOP_TRADING, names)
    assert not trading_system.running
    final = trading_system.get_performance_report()
    assert final["trades"] == 1 and final["open_positions"] == 0 and final["fills"] == 2
    with pytest.raises(RuntimeError, match="not running"):
        trading_system.status()


def test_the_trading_system_in_live_mode_against_trader_sim(kite_sim: dict[str, str], tmp_path: Path) -> None:
    """Phase 3 rehearsed: the daemon in live mode on the simulator, a confirmed manual order filled there."""
    with pytest.raises(ValueError, match="confirm_live=True"):
        LiveOptionsTradingSystem(trading_mode="live", api_key="sim_api_key", access_token=kite_sim["token"])
    trading_system = LiveOptionsTradingSystem(
        trading_mode="live", confirm_live=True, api_key="sim_api_key", access_token=kite_sim["token"],
        api_root=kite_sim["rest_url"], ws_root=kite_sim["ws_url"], data_dir=str(tmp_path / "live"),
        risk_config=RiskConfig(initial_capital=100_000.0, max_daily_loss_pct=0.02, max_risk_per_trade_pct=0.05))
    assert trading_system.auto_execution is False  # live mode's default: semi-live
    trading_system.start()
    assert trading_system.status()["mode"] == "live"
    unconfirmed = trading_system.manual_order(contract_symbol="NIFTY ATM CE", quantity=65, side="BUY")
    assert unconfirmed["ok"] is False and unconfirmed["error"]["field"] == "confirm"
    result = trading_system.manual_order(contract_symbol="NIFTY ATM CE", quantity=65, side="BUY", confirm=True)
    assert result["ok"] is True and result["decided"] is True, result["message"]
    tag = result["order"]["tag"]
    wait_until(lambda: any(o["tag"] == tag and o["status"] == "COMPLETE" for o in
                           asyncio.run(sim_get(kite_sim["rest_url"], kite_sim["token"], "/orders"))))
    report = trading_system.stop()
    assert report["fills"] >= 1 and not trading_system.running


def seed_python_blocks() -> list[str]:
    """The seed's ```python blocks as the document holds them, each de-indented (some sit inside a numbered list)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "seed-roadmap.md").read_text()
    return [textwrap.dedent(block) for block in re.findall(r"```python\n(.*?)^\s*```", text, re.DOTALL | re.M)]


def test_every_copied_snippet_is_the_seed_verbatim() -> None:
    blocks = seed_python_blocks()
    copies = [DATA_USAGE, BROKER_USAGE, PAPER_BROKER, RISK_USAGE, CONSERVATIVE_LIMITS, TRADING_SYSTEM_USAGE,
              TEST_BROKER_INTEGRATION, TEST_RISK_MANAGEMENT, TEST_REAL_TIME_DATA, DATA_CONNECTION_ISSUES,
              ORDER_REJECTION, RISK_LIMITS_HIT, STOP_TRADING, CLOSE_ALL_POSITIONS, RESET_RISK_LIMITS]
    assert [copy for copy in copies if copy not in blocks] == []
    assert len(copies) == len(blocks) == 15  # every Python block of the seed is one of them
