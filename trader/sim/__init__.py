"""A Kite-wire-compatible exchange simulator (REST half): see ``exchange.ExchangeSimulator``."""

from trader.sim.exchange import ExchangeSimulator
from trader.sim.wire import Faults, KiteError

__all__ = ["ExchangeSimulator", "Faults", "KiteError"]
