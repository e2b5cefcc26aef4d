"""The exchange simulator's Fyers API v3 wire face over the shared core: REST, login, symbol master, the order socket
(``face.FyersFace``) and the HSM market-data socket (``data_socket.HsmServer``)."""

from trader.sim.fyers.face import FyersFace

__all__ = ["FyersFace"]
