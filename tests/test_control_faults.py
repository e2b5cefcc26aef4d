"""Fault injection against the control surface: malformed, ambiguous or forged input from outside (HTTP requests,
the token file, a server the CLI talks to) is refused or survived without acting on a guess, leaking the token or
failing with a traceback."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from test_control_http import ORDER, paper_settings, running

from trader.config import ConfigError
from trader.control.token import TOKEN_FILE_NAME, load_token, read_token_file
from trader.events import TradingState

pytestmark = pytest.mark.usefixtures("clean_env")


async def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes no HTTP client library would send; (status, headers, body) of the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


async def test_an_authorization_header_that_is_not_utf8_is_a_json_401(tmp_path: Path) -> None:
    async with running(tmp_path) as daemon:
        status, headers, body = await raw_request(
            daemon.url, b"POST /halt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe" + daemon.token.encode()
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        assert status == 401 and headers["content-type"].startswith("application/json")
        assert b'"unauthorized"' in body and daemon.token.encode() not in body
        assert daemon.app.risk.state is TradingState.ACTIVE


async def test_a_body_naming_a_field_twice_is_refused_not_guessed(tmp_path: Path) -> None:
    async with running(tmp_path) as daemon:
        # orjson (like most parsers) keeps the last value: this "dry run" would place a real order.
        body = b'{"side": "BUY", "instrument": "NIFTY ATM CE", "lots": 1, "dry_run": true, "dry_run": false}'
        status, answer = await daemon.call("POST", "/orders", data=body)
        assert status == 400 and answer["error"]["field"] == "dry_run"
        assert "twice" in answer["error"]["message"]
        assert not daemon.app.ledger.orders  # nothing was placed
        status, answer = await daemon.call("POST", "/halt", data=b'{"reason": "a", "reason": "b"}')
        assert status == 400 and answer["error"]["field"] == "reason"
        assert daemon.app.risk.state is TradingState.ACTIVE
        # Nested far too deep for a second look: still a 400, never a 500.
        status, answer = await daemon.call("POST", "/orders", data=b'{"side": ' + b"[" * 1000 + b"]" * 1000 + b"}")
        assert status == 400 and answer["error"]["code"] == "bad_request"
        status, answer = await daemon.call("POST", "/orders", {**ORDER, "dry_run": True})  # one of each: fine
        assert status == 200 and answer["order"] is None


def test_a_tampered_token_file_stops_the_start_without_following_it_or_hanging(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = paper_settings(tmp_path)
    path = tmp_path / TOKEN_FILE_NAME
    other = tmp_path / "kite_access_token"  # any other 0600 file with one word in it
    other.write_text("another-secret-of-the-user-0123456789\n")
    os.chmod(other, 0o600)
    path.symlink_to(other)
    with pytest.raises(ConfigError, match="symbolic link"):
        load_token(settings)
    path.unlink()
    path.symlink_to(tmp_path / "nowhere")  # dangling: not followed to create a file there either
    with pytest.raises(ConfigError, match="symbolic link"):
        load_token(settings)
    assert not (tmp_path / "nowhere").exists()
    path.unlink()

    os.mkfifo(path, 0o600)  # a reader of a FIFO waits for a writer forever: the daemon would never start
    outcome: list[BaseException | str] = []

    def read() -> None:
        try:
            outcome.append(read_token_file(path))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO token file blocked"
    [error] = outcome
    assert isinstance(error, ConfigError) and "not a regular file" in str(error)
    path.unlink()

    # A huge file is not read whole into memory, and is no token.
    with path.open("wb") as out:
        out.write(b"a" * 40)
        out.truncate(64 * 1024 * 1024)
    os.chmod(path, 0o600)
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, size: int) -> bytes:
        reads.append(size)
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(ConfigError, match="usable token"):
        read_token_file(path)
    assert reads and max(reads) <= 64 * 1024
    monkeypatch.undo()
    path.unlink()

    # A file someone else made (and may read the token of) is not trusted.
    path.write_text("x" * 43)
    os.chmod(path, 0o600)
    monkeypatch.setattr(os, "geteuid", lambda: path.stat().st_uid + 1)
    with pytest.raises(ConfigError, match="belongs to user id"):
        read_token_file(path)
