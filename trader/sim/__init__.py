"""An exchange simulator with two wire faces over one core: Kite (REST and WebSocket, ``exchange.ExchangeSimulator``)
and Fyers API v3 (``trader.sim.fyers.FyersFace``); ``serve.serve`` runs one until cancelled (``trader sim
[--venue fyers]``)."""

from trader.sim.exchange import ExchangeSimulator
from trader.sim.serve import serve
from trader.sim.wire import Faults, KiteError

__all__ = ["ExchangeSimulator", "Faults", "KiteError", "serve"]
