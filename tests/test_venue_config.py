"""Choosing the live venue: TRADER_VENUE / --venue, the Fyers settings, the live-mode checks, what a run records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trader import builders
from trader.actors.run_recorder import data_source_for
from trader.config import ConfigError, load_settings, masked_dump


@pytest.mark.usefixtures("clean_env")
def test_the_venue_comes_from_the_environment_and_defaults_to_kite(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().venue == "kite"
    monkeypatch.setenv("TRADER_VENUE", "Fyers")
    monkeypatch.setenv("TRADER_FYERS__APP_ID", "XB12345-100")
    monkeypatch.setenv("TRADER_FYERS__ACCESS_TOKEN", "tok")
    settings = load_settings()
    assert settings.venue == "fyers"
    assert settings.has_venue_credentials and not settings.has_kite_credentials
    assert settings.fyers.access_token.get_secret_value() == "tok"


@pytest.mark.usefixtures("clean_env")
def test_an_unknown_venue_is_a_config_error_naming_the_field_and_the_flag() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"venue": "upstox"})
    line = caught.value.lines[0]
    assert line.startswith("config error: venue:") and "--venue" in line and "TRADER_VENUE" in line


@pytest.mark.usefixtures("clean_env")
def test_fyers_urls_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"fyers": {"data_ws_url": "https://socket.fyers.in"}})
    assert "fyers.data_ws_url: must start with ws:// or wss://" in caught.value.lines[0]


@pytest.mark.usefixtures("clean_env")
def test_live_mode_on_fyers_needs_fyers_credentials_not_kite_ones(tmp_path: Path) -> None:
    settings = load_settings({"mode": "live", "live_confirm": "yes", "venue": "fyers", "data_dir": str(tmp_path),
                              "kite": {"api_key": "k", "access_token": "t"}})
    with pytest.raises(ConfigError) as caught:
        builders.check_mode(settings)
    assert caught.value.lines == ["config error: fyers: live mode needs TRADER_FYERS__APP_ID and an access token "
                                  "(TRADER_FYERS__ACCESS_TOKEN, or run `trader login --venue fyers` to store today's)"]
    (tmp_path / "fyers_access_token").write_text("from-login\n")
    stored = load_settings({"mode": "live", "live_confirm": "yes", "venue": "fyers", "data_dir": str(tmp_path),
                            "fyers": {"app_id": "XB12345-100"}})
    builders.check_mode(stored)  # the token `trader login --venue fyers` stored is enough
    assert stored.fyers_access_token() == "from-login"


@pytest.mark.usefixtures("clean_env")
def test_paper_mode_uses_the_venue_market_only_with_that_venues_credentials(tmp_path: Path) -> None:
    kite_only = load_settings({"venue": "fyers", "data_dir": str(tmp_path), "kite": {"api_key": "k",
                                                                                       "access_token": "t"}})
    assert not builders.uses_venue_market(kite_only)  # Kite's credentials do not make a Fyers paper run
    fyers = load_settings({"venue": "fyers", "data_dir": str(tmp_path),
                           "fyers": {"app_id": "XB12345-100", "access_token": "t"}})
    assert builders.uses_venue_market(fyers)
    assert not builders.uses_venue_market(fyers.model_copy(update={"mode": "backtest"}))


@pytest.mark.usefixtures("clean_env")
def test_secrets_are_masked_and_the_run_records_the_venue_or_the_simulator(tmp_path: Path) -> None:
    settings = load_settings({"venue": "fyers", "data_dir": str(tmp_path),
                              "fyers": {"app_id": "XB12345-100", "secret_key": "s3cr3t", "access_token": "t0k"}})
    dump = masked_dump(settings)
    assert dump["fyers"]["secret_key"] == dump["fyers"]["access_token"] == "**********"
    assert "s3cr3t" not in repr(dump) and "t0k" not in repr(dump)
    assert data_source_for(settings, replay=None, venue_market=True).kind == "fyers"
    local = load_settings({"venue": "fyers", "fyers": {"data_ws_url": "ws://127.0.0.1:9/hsm"}})
    source = data_source_for(local, replay=None, venue_market=True)
    assert source.kind == "simulator" and "127.0.0.1:9" in source.path
    assert settings.intraday_product
    assert not load_settings({"venue": "fyers", "fyers": {"product": "MARGIN"}}).intraday_product


@pytest.mark.usefixtures("clean_env")
def test_the_cli_flag_sets_the_venue(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
    done = subprocess.run([sys.executable, "-m", "trader", "run", "--venue", "fyers", "--mode", "live"],
                          check=False, capture_output=True, text=True, timeout=120,
                          env={**env, "TRADER_DATA_DIR": str(tmp_path), "TRADER_LIVE_CONFIRM": "yes"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "TRADER_FYERS__APP_ID" in done.stdout + done.stderr
