"""`trader login`: turn the day's Kite request token (or Fyers auth code) into an access token stored for the daemon
(0600).

Kite has no sanctioned headless login: a human opens the login URL, logs in (2FA), and Kite redirects to the app's
registered URL with ``request_token=...``. Paste that token — or the whole redirect URL — and the exchange happens
here; the access token is valid until about 06:00 IST the next day.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from trader.adapters.kite.rest import KiteRestClient
from trader.config import ConfigError, Settings

PRODUCTION_API_ROOT = "https://api.kite.trade"
PRODUCTION_LOGIN_URL = "https://kite.zerodha.com/connect/login"


def login_url(settings: Settings) -> str:
    """Kite's login page, or the simulator's when the API root points at one."""
    base = PRODUCTION_LOGIN_URL if settings.kite_api_root == PRODUCTION_API_ROOT else (
        f"{settings.kite_api_root}/connect/login")
    return f"{base}?{urlencode({'api_key': settings.kite.api_key, 'v': 3})}"


def request_token_from(text: str) -> str:
    """Accept the bare token or the redirect URL it came in."""
    text = text.strip()
    if "request_token=" in text:
        tokens = parse_qs(urlsplit(text).query or text.split("?", 1)[-1]).get("request_token", [""])
        text = tokens[0]
    if not text.isalnum():
        raise ValueError("that is not a request token: paste the request_token value, or the whole URL Kite "
                         "redirected to (it contains request_token=...)")
    return text


def check_login_settings(settings: Settings) -> None:
    problems = []
    if not settings.kite.api_key:
        problems.append("config error: kite.api_key: set TRADER_KITE__API_KEY (from developers.kite.trade)")
    if not settings.kite.api_secret.get_secret_value():
        problems.append("config error: kite.api_secret: set TRADER_KITE__API_SECRET (keep it in the env file, "
                        "never in the TOML)")
    if problems:
        raise ConfigError(problems)


def store_token(path: Path, token: str) -> None:
    """Write the token readable by the owner only; the file is replaced, never appended."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT: force it


async def exchange_request_token(settings: Settings, request_token: str) -> Path:
    client = KiteRestClient(settings.kite.api_key, root=settings.kite_api_root)
    try:
        session = await client.generate_session(request_token, settings.kite.api_secret.get_secret_value())
    finally:
        await client.close()
    token = str(session.get("access_token") or "")
    if not token:
        raise ValueError("Kite answered without an access_token; log in again for a fresh request token")
    store_token(settings.kite_token_file, token)
    return settings.kite_token_file


@dataclass(frozen=True, slots=True)
class LoginFlow:
    """What `trader login` tells a human and does for one venue."""

    url: str  # the broker's login page
    redirect: str  # what the broker's redirect carries
    prompt: str  # what to paste: the token, or the whole redirect URL
    valid_until: str
    exchange: Callable[[str], Coroutine[Any, Any, Path]]  # the pasted text → the stored token's file


def login_flow(settings: Settings) -> LoginFlow:
    """The configured venue's flow; a ``ConfigError`` names the credentials that are missing."""
    if settings.venue == "fyers":
        from trader.adapters.fyers import session  # noqa: PLC0415 - only a Fyers login loads its adapter

        session.check_login_settings(settings)
        return LoginFlow(session.auth_code_url(settings), "Fyers redirects to your app's URL with auth_code=...",
                         "auth code", "the trading day", lambda text: session.exchange_auth_code(settings, text))
    check_login_settings(settings)
    return LoginFlow(login_url(settings), "Kite redirects to your app's URL with request_token=...", "request token",
                     "~06:00 IST", lambda text: exchange_request_token(settings, request_token_from(text)))
