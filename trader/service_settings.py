"""Settings of the daemon's service faces: the control API (``[control]``), health (``[health]``) and alerts
(``[alerts]``), with the checks they share (loopback addresses, token shape, URL masking); and ``Section``, the base
of every settings section. ``trader/config.py`` assembles them into ``Settings``."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class Section(BaseModel):
    # inf and nan are never a setting: they passed every bound and crashed later (OverflowError).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ControlSettings(Section):
    """The control API (trader/control/): the operator's HTTP door into a running paper or live daemon, which the
    ``trader status|order|halt|...`` CLI and the dashboard use. Never started in backtest."""

    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1, max_length=255)
    port: int = Field(8780, ge=0, le=65535, description="0 = any free port (the daemon logs which)")
    token: SecretStr = Field(SecretStr(""), description="bearer token; empty: generated on first start into "
                             "<data_dir>/control_token (0600)")
    allow_remote: bool = Field(False, description="required to bind an address other than loopback")
    approval_expiry_seconds: float = Field(60.0, gt=0, le=86_400, description="event-time seconds a semi-live "
                                           "entry waits for approval before it expires")
    max_quote_age_seconds: float = Field(30.0, gt=0, le=3_600, description="event-time seconds: a manual order "
                                         "or an approval is refused when its contract's (or, for ATM, the index's) "
                                         "last quote is older")
    order_wait_seconds: float = Field(5.0, gt=0, le=60, description="how long POST /orders waits for the risk "
                                      "gate's decision before answering 202 (still pending)")
    max_body_bytes: int = Field(16_384, ge=1_024, le=1_048_576)
    session_hours: float = Field(12.0, gt=0, le=24 * 7, description="how long a dashboard login (session cookie) "
                                 "lasts")

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret and not usable_token(secret):
            raise ValueError(f"must be at least {MIN_TOKEN_CHARS} printable characters without spaces, or empty to "
                             "have one generated (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return value

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> ControlSettings:
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(f"host {self.host!r} is not a loopback address: the control API can halt, flatten and "
                             "place orders, so binding it elsewhere needs control.allow_remote = true "
                             "(TRADER_CONTROL__ALLOW_REMOTE=true), behind a firewall or a TLS proxy")
        return self


class HealthSettings(Section):
    """What "healthy" means (trader/health.py): ``GET /healthz``, the systemd watchdog and the feed-silent alert all
    judge with these bounds. Ages are wall-clock seconds (what a person and systemd count in)."""

    max_loop_lag_seconds: float = Field(2.0, gt=0, le=60, description="the event loop's latest wake-up may be at "
                                        "most this late")
    max_loop_stall_seconds: float = Field(10.0, gt=0, le=300, description="the loop monitor must have woken within "
                                          "this many seconds (a wedged loop stops waking)")
    max_feed_age_seconds: float = Field(30.0, gt=0, le=3_600, description="during market hours, the last valid "
                                        "tick may be at most this old")
    feed_grace_seconds: float = Field(120.0, ge=0, le=3_600, description="after start, how long the feed may take "
                                      "to deliver its first tick during market hours")
    watchdog: bool = Field(True, description="send systemd WATCHDOG=1 pings when systemd asks for them "
                           "(WatchdogSec= in the unit sets WATCHDOG_USEC)")


class AlertSettings(Section):
    """Alerts (trader/alerts/): Telegram and a generic JSON webhook, both optional, both off the trading path.
    Secrets (the bot token, the webhook secret) belong in the environment or the systemd env file."""

    telegram_bot_token: SecretStr = Field(SecretStr(""), description="from @BotFather; empty = no Telegram")
    telegram_chat_id: int | None = Field(None, ge=-(2**53), le=2**53, description="the one chat alerts go to and "
                                         "commands are taken from (a group's id is negative)")
    telegram_api_root: str = Field("https://api.telegram.org", description="the Bot API's address (tests: a fake)")
    telegram_commands: bool = Field(True, description="answer /status, /positions, /pnl, /approve, /reject, /halt, "
                                    "/resume, /flatten from the configured chat")
    webhook_url: str = Field("", description="POST one JSON object per alert here; empty = no webhook")
    webhook_secret: SecretStr = Field(SecretStr(""), description="if set, each POST carries an HMAC-SHA256 of its "
                                      "body in X-Trader-Signature")
    rate_per_minute: int = Field(20, ge=1, le=600, description="per destination; Telegram allows about 20/min to a "
                                 "group")
    dedup_seconds: float = Field(300.0, ge=0, le=86_400, description="the same alert (kind + subject) is sent once "
                                 "in this window; repeats are counted into the next one")
    max_attempts: int = Field(6, ge=1, le=50, description="tries per alert before it is dropped (logged)")
    retry_base_seconds: float = Field(1.0, gt=0, le=300, description="first retry delay; doubles each try, with "
                                      "jitter")
    queue_size: int = Field(500, ge=10, le=100_000, description="alerts waiting per destination; past it the oldest "
                            "low-severity ones are dropped and counted")
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="per HTTP request to a destination")
    slippage_alert_bps: float = Field(50.0, gt=0, le=10_000, description="a fill this many basis points worse than "
                                      "expected is alerted")
    slippage_alert_min_inr: float = Field(25.0, ge=0, le=10_000_000, description="...and worse by at least this "
                                          "many rupees in all (price difference × quantity)")
    feed_silent_seconds: float = Field(60.0, gt=0, le=3_600, description="during market hours, alert when no valid "
                                       "tick has come for this long")

    @field_validator("telegram_api_root", "webhook_url")
    @classmethod
    def _http_url(cls, value: str, info: Any) -> str:
        if not value:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (e.g. https://hooks.example.com/trader), or be "
                             f"empty; got {mask_url(value)!r}")
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises on a port that is not a number in 0-65535
        except ValueError as exc:
            raise ValueError(f"is not a usable URL ({exc}), e.g. https://hooks.example.com/trader") from None
        if not parts.hostname:
            raise ValueError("names no host, e.g. https://hooks.example.com/trader")
        if info.field_name == "telegram_api_root" and parts.scheme != "https" and not is_loopback(parts.hostname):
            raise ValueError("must be https:// (the bot token travels in every request's path); plain http only to a "
                             "loopback address (a local fake)")
        return value.rstrip("/") if info.field_name == "telegram_api_root" else value

    @field_validator("telegram_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret and not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", secret):
            raise ValueError("is not a bot token as @BotFather gives them (digits, a colon, letters, digits, - and _)")
        return value

    @model_validator(mode="after")
    def _telegram_pair(self) -> AlertSettings:
        if bool(self.telegram_bot_token.get_secret_value()) != (self.telegram_chat_id is not None):
            raise ValueError("telegram_bot_token and telegram_chat_id go together: set both (TRADER_ALERTS__"
                             "TELEGRAM_BOT_TOKEN and TRADER_ALERTS__TELEGRAM_CHAT_ID) or neither")
        return self

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_chat_id is not None


MIN_TOKEN_CHARS = 16


def usable_token(token: str) -> bool:
    """A control API token: at least ``MIN_TOKEN_CHARS`` printable characters, none of them a space (the setting and
    the token file follow the same rule)."""
    return len(token) >= MIN_TOKEN_CHARS and token.isprintable() and not any(c.isspace() for c in token)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and "localhost" only (a name that resolves elsewhere is not loopback)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def mask_url(url: str) -> str:
    """``scheme://host[:port]/**********``: where a URL goes, without the credentials, path or query that may be its
    secret (chat-service hook URLs carry theirs in the path)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    hidden = parts.username or parts.password or parts.path.strip("/") or parts.query or parts.fragment
    return f"{shown}/**********" if hidden else shown
