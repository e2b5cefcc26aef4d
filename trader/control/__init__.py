"""The control surface of a running daemon: HTTP API, operator CLI and the services behind them."""
