"""Shared fixtures."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings

from trader import logging as trader_logging
from trader.logging import configure_logging

# Property tests explore the same examples on every run: CI results never depend on a random draw.
settings.register_profile("trader", derandomize=True, deadline=None)
settings.load_profile("trader")


@pytest.fixture(autouse=True)
def restore_log_setup() -> Iterator[None]:
    """A test that configures the log (a CLI main run in-process binds the log to that test's captured stdout) must
    not leave it bound there: the stream is closed after the test, and the next test's daemon would log into it."""
    saved = structlog.get_config()
    saved_guard = trader_logging._guard  # the module's one output guard goes with its set-up
    yield
    structlog.configure(**saved)
    trader_logging._guard = saved_guard


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Send the daemon's JSON logs to a throwaway stream for the test, then restore the previous set-up."""
    saved = structlog.get_config()
    configure_logging("ERROR", io.StringIO())
    yield
    structlog.configure(**saved)


# A daemon under test (in process or a subprocess, which inherits the environment) never binds the control API's
# fixed port 8780: two tests, or a developer's daemon, would collide. Port 0 takes a free port; tests that talk to the
# API read the port it logged (``control_api_listening``) or the server object.
CONTROL_PORT_ENV = {"TRADER_CONTROL__PORT": "0"}
DATA_DIR_ENV = "TRADER_DATA_DIR"


@pytest.fixture(autouse=True)
def free_control_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CONTROL_PORT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(autouse=True, scope="session")
def own_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests that do not choose a data_dir share a temporary one, never the checkout's ./data: every run writes a run
    folder (data_dir/runs/), and a backtest built with the default settings would litter the repo. Session-wide so
    module-scoped fixtures that run an App see it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test run under systemd (a CI runner's unit) must not have its daemons notify that unit's manager."""
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No TRADER_* variable from the developer's shell leaks into the settings under test (but the control API
    still takes a free port, and the data_dir stays the test's own)."""
    for key in list(os.environ):
        if key.startswith("TRADER_") and key not in CONTROL_PORT_ENV and key != DATA_DIR_ENV:
            monkeypatch.delenv(key)
    return monkeypatch
