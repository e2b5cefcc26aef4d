"""Fyers API v3: the second live venue, in the Kite adapter's shape."""
