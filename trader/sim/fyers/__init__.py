"""The exchange simulator's Fyers API v3 wire face (REST, login, symbol master, order socket) over the shared core:
see ``face.FyersFace``."""

from trader.sim.fyers.face import FyersFace

__all__ = ["FyersFace"]
