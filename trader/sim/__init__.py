"""A Kite-wire-compatible exchange simulator (REST and WebSocket): see ``exchange.ExchangeSimulator``;
``serve.serve`` runs one until cancelled (``trader sim``)."""

from trader.sim.exchange import ExchangeSimulator
from trader.sim.serve import serve
from trader.sim.wire import Faults, KiteError

__all__ = ["ExchangeSimulator", "Faults", "KiteError", "serve"]
