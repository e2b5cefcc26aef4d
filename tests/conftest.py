"""Shared fixtures."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings

from trader.logging import configure_logging

# Property tests explore the same examples on every run: CI results never depend on a random draw.
settings.register_profile("trader", derandomize=True, deadline=None)
settings.load_profile("trader")


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Send the daemon's JSON logs to a throwaway stream for the test, then restore the previous set-up."""
    saved = structlog.get_config()
    configure_logging("ERROR", io.StringIO())
    yield
    structlog.configure(**saved)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No TRADER_* variable from the developer's shell leaks into the settings under test."""
    for key in list(os.environ):
        if key.startswith("TRADER_"):
            monkeypatch.delenv(key)
    return monkeypatch
