"""The day's Kite access token: the venue-neutral ``TokenWatcher`` (``adapters/token_watch.py``) with Kite's client
and its refusal (HTTP 403 ``TokenException`` → ``KiteSessionExpired``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trader.adapters.kite.errors import KiteSessionExpired, classify
from trader.adapters.kite.rest import KiteRestClient
from trader.adapters.token_watch import PROBLEM, read_token_file
from trader.adapters.token_watch import TokenWatcher as _TokenWatcher
from trader.clock import Clock

__all__ = ["PROBLEM", "TokenWatcher", "is_kite_refusal", "read_token_file"]


def is_kite_refusal(exc: BaseException) -> bool:
    return classify(exc) is KiteSessionExpired


class TokenWatcher(_TokenWatcher):
    def __init__(self, client: KiteRestClient, *, token_file: Path, clock: Clock,
                 publish: Callable[[object], None], poll_s: float = 5.0) -> None:
        super().__init__(client, token_file=token_file, clock=clock, publish=publish, is_refusal=is_kite_refusal,
                         poll_s=poll_s, venue="Kite", login_command="trader login")
