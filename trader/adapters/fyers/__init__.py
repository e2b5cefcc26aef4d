"""Fyers API v3, the second live venue in the Kite adapter's shape: REST and broker, the HSM market-data socket,
the order socket, the symbol master, login and the token watch."""
