"""Zerodha Kite Connect adapters: the binary ticker decoder (and, alongside it, the REST and WebSocket clients)."""
