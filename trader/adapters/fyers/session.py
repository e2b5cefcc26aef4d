"""Fyers login and the day's token: the auth-code URL, ``/validate-authcode`` with ``appIdHash`` → access token stored
owner-only (0600) at ``settings.fyers_token_file``, and the venue-neutral ``TokenWatcher`` with Fyers' refusal.

The flow (Fyers API v3 docs, "Login flow"; the official SDK's ``SessionModel``): a human opens
``<api_root>/generate-authcode?client_id=<app_id>&redirect_uri=<uri>&response_type=code&state=<state>``, logs in, and
Fyers redirects to the app's URL with ``auth_code=...&state=...``. The auth code is exchanged with
``POST /validate-authcode`` ``{"grant_type": "authorization_code", "appIdHash": sha256("<app_id>:<secret>") hex,
"code": <auth code>}``. The access token is valid for the trading day.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from trader.adapters.fyers.errors import FyersSessionExpired, classify
from trader.adapters.fyers.rest import FyersRestClient
from trader.adapters.token_watch import TokenWatcher
from trader.clock import Clock
from trader.config import ConfigError, Settings
from trader.login import store_token

LOGIN_COMMAND = "trader login --venue fyers"
_AUTH_CODE = re.compile(r"^[A-Za-z0-9._\-]+$")


def auth_code_url(settings: Settings, state: str = "trader") -> str:
    query = {"client_id": settings.fyers.app_id, "redirect_uri": settings.fyers.redirect_uri,
             "response_type": "code", "state": state}
    return f"{settings.fyers.api_root}/generate-authcode?{urlencode(query)}"


def auth_code_from(text: str) -> str:
    """Accept the bare auth code or the whole redirect URL it came in (``...?auth_code=...&state=...``)."""
    text = text.strip()
    if "auth_code=" in text:
        text = parse_qs(urlsplit(text).query or text.split("?", 1)[-1]).get("auth_code", [""])[0]
    if not _AUTH_CODE.match(text):
        raise ValueError("that is not an auth code: paste the auth_code value, or the whole URL Fyers redirected to "
                         "(it contains auth_code=...)")
    return text


def check_login_settings(settings: Settings) -> None:
    problems = []
    if not settings.fyers.app_id:
        problems.append("config error: fyers.app_id: set TRADER_FYERS__APP_ID (from myapi.fyers.in, e.g. XB12345-100)")
    if not settings.fyers.secret_key.get_secret_value():
        problems.append("config error: fyers.secret_key: set TRADER_FYERS__SECRET_KEY (keep it in the env file, "
                        "never in the TOML)")
    if problems:
        raise ConfigError(problems)


async def exchange_auth_code(settings: Settings, text: str, *, client: FyersRestClient | None = None) -> Path:
    """Exchange the auth code for the day's access token and store it (0600); returns the file."""
    check_login_settings(settings)
    code = auth_code_from(text)
    own = client is None
    rest = client or FyersRestClient(settings.fyers.app_id, api_root=settings.fyers.api_root,
                                     data_root=settings.fyers.data_root, timeout_s=settings.fyers.timeout_seconds)
    try:
        token = await rest.validate_authcode(code, settings.fyers.secret_key.get_secret_value())
    finally:
        if own:
            await rest.close()
    store_token(settings.fyers_token_file, token)
    return settings.fyers_token_file


def is_fyers_refusal(exc: BaseException) -> bool:
    return classify(exc) is FyersSessionExpired


def token_watcher(client: FyersRestClient, *, token_file: Path, clock: Clock, publish: Callable[[object], None],
                  poll_s: float = 5.0) -> TokenWatcher:
    return TokenWatcher(client, token_file=token_file, clock=clock, publish=publish, is_refusal=is_fyers_refusal,
                        poll_s=poll_s, venue="Fyers", login_command=LOGIN_COMMAND)
