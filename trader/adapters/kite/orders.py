"""Kite order postbacks → events: Kite's postbacks are already the venue-neutral report the shared tracker reads
(``trader/adapters/order_tracker.py``); this module keeps the old import path."""

from __future__ import annotations

from trader.adapters.order_tracker import REPORT_STATUSES as KITE_STATUSES
from trader.adapters.order_tracker import OrderTracker, PostbackError

__all__ = ["KITE_STATUSES", "OrderTracker", "PostbackError"]
