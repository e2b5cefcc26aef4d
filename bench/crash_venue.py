"""The crash harness's venue: which wire face of ``trader sim`` the daemon trades through (``--venue kite|fyers``).

Either way there is one exchange core, and the harness reads its book (orders, trades, positions, the instrument list)
through the simulator's Kite face with the official ``kiteconnect`` client: the book is the exchange's truth, whatever
wire the daemon speaks. With ``fyers`` the daemon speaks only Fyers API v3 (REST, the HSM data socket, the order
socket) and logs in by Fyers' auth-code flow; ``trader sim --venue fyers`` keeps the Kite face on free ports and names
them in its ``sim_fyers_listening`` line.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlparse

Venue = Literal["kite", "fyers"]
VENUES: tuple[Venue, ...] = ("kite", "fyers")
FYERS_APP_ID = "SIMAPP-100"  # `trader sim --venue fyers`'s documented local-use defaults
FYERS_SECRET = "sim_fyers_secret"
FYERS_REDIRECT = "https://127.0.0.1/"


def sim_argv(venue: Venue) -> list[str]:
    return ["--venue", "fyers"] if venue == "fyers" else []


def listening_event(venue: Venue) -> str:
    return "sim_fyers_listening" if venue == "fyers" else "sim_listening"


def kite_urls(venue: Venue, listening: Mapping[str, Any]) -> tuple[str, str]:
    """The Kite face's REST and WebSocket URLs (where the harness reads the book)."""
    if venue == "fyers":
        return str(listening["kite_rest_url"]), str(listening["kite_ws_url"])
    return str(listening["rest_url"]), str(listening["ws_url"])


def fyers_login(api_root: str, app_id: str = FYERS_APP_ID, secret: str = FYERS_SECRET) -> str:
    """Fyers' auth-code flow against the simulator: the login redirect gives ``auth_code``, ``/validate-authcode``
    with ``appIdHash`` = sha256("app_id:secret") the access token."""
    parsed = urlparse(api_root)
    query = urlencode({"client_id": app_id, "redirect_uri": FYERS_REDIRECT, "response_type": "code",
                       "state": "crash"})
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)
    try:
        connection.request("GET", f"{parsed.path}/generate-authcode?{query}")
        redirect = connection.getresponse()
        redirect.read()  # the connection is reused: the first answer must be read whole
        location = redirect.getheader("Location") or ""
        code = parse_qs(urlparse(location).query)["auth_code"][0]
        body = json.dumps({"grant_type": "authorization_code", "code": code,
                           "appIdHash": hashlib.sha256(f"{app_id}:{secret}".encode()).hexdigest()})
        connection.request("POST", f"{parsed.path}/validate-authcode", body=body,
                           headers={"Content-Type": "application/json"})
        reply = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    if reply.get("s") != "ok" or not reply.get("access_token"):
        raise RuntimeError(f"fyers login at {api_root} failed: {reply}")
    return str(reply["access_token"])


def daemon_env(venue: Venue, listening: Mapping[str, Any], token: str) -> dict[str, str]:
    """The daemon's venue settings: its roots on the simulator, the app's id and the day's access token."""
    if venue == "kite":
        return {"TRADER_KITE_API_ROOT": str(listening["rest_url"]), "TRADER_KITE_WS_ROOT": str(listening["ws_url"]),
                "TRADER_KITE__API_KEY": "sim_api_key", "TRADER_KITE__ACCESS_TOKEN": token,
                "TRADER_KITE_TIMEOUT_SECONDS": "2"}
    return {"TRADER_VENUE": "fyers", "TRADER_FYERS__APP_ID": FYERS_APP_ID, "TRADER_FYERS__ACCESS_TOKEN": token,
            "TRADER_FYERS__API_ROOT": str(listening["api_root"]),
            "TRADER_FYERS__DATA_ROOT": str(listening["data_root"]),
            "TRADER_FYERS__DATA_WS_URL": str(listening["data_ws_url"]),
            "TRADER_FYERS__ORDER_WS_URL": str(listening["order_ws_url"]),
            "TRADER_FYERS__SYMBOLS_ROOT": str(listening["symbols_root"]), "TRADER_FYERS__TIMEOUT_SECONDS": "2"}
