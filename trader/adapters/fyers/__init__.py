"""The Fyers venue: REST, the HSM market-data socket, the order socket, symbols (adapters/kite/'s parts)."""
