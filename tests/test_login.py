"""`trader login` against the simulator's Kite login flow; the token lands in an owner-only file."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import aiohttp
import pytest

from trader.cli import main
from trader.login import request_token_from
from trader.sim import ExchangeSimulator

from helpers import T0

pytestmark = pytest.mark.usefixtures("quiet_logs")



def test_request_token_from_token_or_redirect_url() -> None:
    assert request_token_from(" abc123 ") == "abc123"
    url = "http://127.0.0.1/callback?request_token=ff00aa&action=login&type=login&status=success"
    assert request_token_from(url) == "ff00aa"
    with pytest.raises(ValueError, match="not a request token"):
        request_token_from("http://127.0.0.1/callback?status=cancelled")


async def test_login_stores_a_working_access_token_with_mode_0600(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sim = ExchangeSimulator(start_ns=T0, wall_ns=lambda: T0)
    base = await sim.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/connect/login", params={"api_key": "sim_api_key", "v": "3"},
                                allow_redirects=False) as response:
                assert response.status == 302
                redirect = response.headers["Location"]
        for key, value in {"TRADER_KITE__API_KEY": "sim_api_key", "TRADER_KITE__API_SECRET": "sim_api_secret",
                           "TRADER_KITE_API_ROOT": base, "TRADER_DATA_DIR": str(tmp_path)}.items():
            monkeypatch.setenv(key, value)
        token_file = tmp_path / "kite_access_token"
        token_file.write_text("stale\n")
        os.chmod(token_file, 0o644)
        assert await asyncio.to_thread(main, ["login", "--request-token", redirect]) == 0
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/user/profile", headers={"X-Kite-Version": "3",
                                                                 "Authorization": f"token sim_api_key:{token}"}) as r:
                assert r.status == 200
        # The same request token is single-use: a second exchange fails cleanly.
        assert await asyncio.to_thread(main, ["login", "--request-token", redirect]) == 1
    finally:
        await sim.stop()


def test_login_without_credentials_explains_what_to_set(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for key in list(os.environ):
        if key.startswith("TRADER_"):
            monkeypatch.delenv(key)
    assert main(["login", "--request-token", "abc"]) == 2
    err = capsys.readouterr().err
    assert "TRADER_KITE__API_KEY" in err and "TRADER_KITE__API_SECRET" in err
