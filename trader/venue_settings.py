"""The live venues' sections of the settings: Kite's (``[kite]``, ``TRADER_KITE__*``) and Fyers' (``[fyers]``,
``TRADER_FYERS__*``). ``Settings.venue`` picks the one a run uses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from trader.service_settings import Section


class KiteSettings(Section):
    api_key: str = ""
    api_secret: SecretStr = SecretStr("")
    access_token: SecretStr = SecretStr("")


class FyersSettings(Section):
    """Fyers API v3 (``venue = "fyers"``): the app's id and secret from myapi.fyers.in, the day's access token (or the
    file `trader login --venue fyers` writes), and where the API lives (point every URL at `trader sim --venue fyers`
    for a rehearsal without money)."""

    app_id: str = Field("", description="the app's id, e.g. XB12345-100 (Fyers' client_id)")
    secret_key: SecretStr = SecretStr("")
    access_token: SecretStr = SecretStr("")
    redirect_uri: str = Field("https://127.0.0.1/", description="the redirect URL registered with the app")
    api_root: str = "https://api-t1.fyers.in/api/v3"
    data_root: str = "https://api-t1.fyers.in/data"
    data_ws_url: str = "wss://socket.fyers.in/hsm/v1-5/prod"
    order_ws_url: str = "wss://socket.fyers.in/trade/v3"
    symbols_root: str = Field("https://public.fyers.in/sym_details", description="the symbol master CSVs and the "
                              "index map (NSE_FO.csv, BSE_FO.csv, index_hsm_mapping.json)")
    product: Literal["INTRADAY", "MARGIN"] = "INTRADAY"
    timeout_seconds: float = Field(7.0, gt=0, le=60, description="per REST request")

    @field_validator("api_root", "data_root", "symbols_root", "data_ws_url", "order_ws_url")
    @classmethod
    def _url(cls, value: str, info: Any) -> str:
        schemes = ("ws://", "wss://") if info.field_name.endswith("ws_url") else ("http://", "https://")
        if not value.startswith(schemes):
            raise ValueError(f"must start with {' or '.join(schemes)}, e.g. {schemes[-1]}127.0.0.1:8000")
        return value.rstrip("/")
