"""Issue #10: the [alerts] and [health] settings — Telegram's token and chat id go together, URLs are checked, and
``trader check-config`` never shows a bot token, a webhook secret or the secret part of a webhook URL."""

from __future__ import annotations

import pytest

from trader.config import ConfigError, load_settings, masked_dump
from trader.service_settings import mask_url

pytestmark = pytest.mark.usefixtures("quiet_logs")

BOT_TOKEN = "123456:ABCdefGhIJKlmnoPQRstuVWXyz0123456789"


def test_telegram_needs_both_the_token_and_the_chat_id(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"alerts": {"telegram_bot_token": BOT_TOKEN}})
    text = "\n".join(raised.value.lines)
    assert "telegram_chat_id" in text and "TRADER_ALERTS__TELEGRAM_CHAT_ID" in text
    assert BOT_TOKEN not in text
    with pytest.raises(ConfigError):
        load_settings({"alerts": {"telegram_chat_id": 42}})
    monkeypatch.setenv("TRADER_ALERTS__TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("TRADER_ALERTS__TELEGRAM_CHAT_ID", "-1001234567890")
    settings = load_settings()
    assert settings.alerts.telegram_enabled and settings.alerts.telegram_chat_id == -1001234567890


@pytest.mark.parametrize("field", ["webhook_url", "telegram_api_root"])
def test_alert_urls_must_be_http(field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"alerts": {field: "ftp://example.com/hook"}})
    assert field in "\n".join(raised.value.lines)


def test_check_config_masks_alert_secrets() -> None:
    settings = load_settings({"alerts": {"telegram_bot_token": BOT_TOKEN, "telegram_chat_id": 7,
                                         "webhook_url": "https://hooks.example.com/services/T0/B1/SECRETPATH?k=v",
                                         "webhook_secret": "hmac-secret-value"}})
    shown = repr(masked_dump(settings))
    assert BOT_TOKEN not in shown and "hmac-secret-value" not in shown and "SECRETPATH" not in shown
    assert masked_dump(settings)["alerts"]["webhook_url"] == "https://hooks.example.com/**********"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.example.com", "https://hooks.example.com"),
    ("https://hooks.example.com/", "https://hooks.example.com"),
    ("http://user:pw@sink.local:8080/a/b", "http://sink.local:8080/**********"),
    ("https://h.example?token=x", "https://h.example/**********"),
])
def test_mask_url_keeps_only_where_it_goes(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_health_bounds_are_checked() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"health": {"max_feed_age_seconds": 0}})
    assert "health.max_feed_age_seconds" in "\n".join(raised.value.lines)


def test_mask_url_hides_credentials_without_a_path() -> None:
    assert mask_url("http://user:pw@sink.local") == "http://sink.local/**********"


@pytest.mark.parametrize("url", ["https://hooks.example.com:99999/x", "https:///nohost", "http://"])
def test_webhook_urls_without_a_usable_host_or_port_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"alerts": {"webhook_url": url}})
    assert "alerts.webhook_url" in "\n".join(raised.value.lines)


@pytest.mark.parametrize("root", ["http://api.telegram.org", "http://10.0.0.5:8081", "http://localhost.example.com"])
def test_the_bot_api_root_is_https_unless_loopback(root: str) -> None:
    """The bot token is in every request's path: plain http would send it in clear over the network."""
    with pytest.raises(ConfigError) as raised:
        load_settings({"alerts": {"telegram_api_root": root}})
    assert "telegram_api_root" in "\n".join(raised.value.lines)
    for fine in ("https://api.telegram.org", "http://127.0.0.1:8081", "http://localhost:9", "http://[::1]:9"):
        assert load_settings({"alerts": {"telegram_api_root": fine}}).alerts.telegram_api_root == fine


@pytest.mark.parametrize("token", ["123456:abc/../../x", "123456:abc?x=1", "123456:ab cd", "123456:ключ", "nocolon"])
def test_a_bot_token_that_could_change_the_url_is_refused(token: str) -> None:
    """A token with /, ?, a space or a non-ASCII letter changes the request's URL, or is percent-encoded in it
    (and so escapes the token filter of error texts)."""
    with pytest.raises(ConfigError) as raised:
        load_settings({"alerts": {"telegram_bot_token": token, "telegram_chat_id": 7}})
    text = "\n".join(raised.value.lines)
    assert "telegram_bot_token" in text and token not in text
