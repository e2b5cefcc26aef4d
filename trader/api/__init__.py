"""The seed's Python API (``docs/reference/seed-roadmap.md``), every name importable from ``trader.api``.

The seed imports from ``src.data.realtime_data_manager``, ``src.execution.broker_execution``,
``src.models.option_contract`` and ``src.risk.risk_manager``: that was its own layout; here everything is in
``trader.api``. A synchronous facade over the daemon's own adapters, actors and bus, run on one event loop in one
background thread (``trader/api/loop.py``); ``shutdown()`` stops everything it started.

    from trader.api import create_data_provider, RealTimeDataManager
    provider = create_data_provider('paper')
    manager = RealTimeDataManager(provider)
    manager.start()
    price = manager.get_underlying_price('NSE:NIFTY50-INDEX')
    chain = manager.get_option_chain('NSE:NIFTY50-INDEX')
"""

from trader.api.broker import BrokerExecution, KiteBrokerApi, PaperBrokerApi, create_broker_api
from trader.api.chain import OptionChain, OptionQuote
from trader.api.data import KiteDataProvider, PaperDataProvider, RealTimeDataManager, create_data_provider
from trader.api.desk import OrderResponse, Position
from trader.api.loop import shutdown
from trader.api.system import LiveOptionsTradingSystem
from trader.events import OrderType, RiskLevel, TradingState
from trader.events import Side as OrderSide
from trader.market.instruments import OptionContract, OptionType
from trader.risk.config import RiskConfig
from trader.risk.core import RiskManager
from trader.risk.results import RiskMetrics

__all__ = [
    "BrokerExecution",
    "KiteBrokerApi",
    "KiteDataProvider",
    "LiveOptionsTradingSystem",
    "OptionChain",
    "OptionContract",
    "OptionQuote",
    "OptionType",
    "OrderResponse",
    "OrderSide",
    "OrderType",
    "PaperBrokerApi",
    "PaperDataProvider",
    "Position",
    "RealTimeDataManager",
    "RiskConfig",
    "RiskLevel",
    "RiskManager",
    "RiskMetrics",
    "TradingState",
    "create_broker_api",
    "create_data_provider",
    "shutdown",
]
