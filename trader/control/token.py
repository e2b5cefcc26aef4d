"""The control API's bearer token: from the settings (``TRADER_CONTROL__TOKEN``), else from a file in the data dir.

On the first start without a configured token the daemon creates ``<data_dir>/control_token`` (owner-only, 0600)
holding ``secrets.token_urlsafe(32)``, prints the token once to stderr with the file's path, and logs
``control_token_created`` with the path only. Later starts and the operator CLI read the same file. A file anyone
but its owner may read, or an empty or malformed one, stops the start with a message that says how to fix it: the
token lets whoever holds it place orders.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import TextIO

from trader.config import ConfigError, Settings
from trader.logging import get_logger
from trader.service_settings import MIN_TOKEN_CHARS, usable_token

log = get_logger("trader.control")

TOKEN_FILE_NAME = "control_token"
_MAX_TOKEN_BYTES = 4_096


def token_file(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE_NAME


def configured_token(settings: Settings) -> str:
    return settings.control.token.get_secret_value()


def read_token_file(path: Path) -> str:
    """The token saved in ``path``; ``ConfigError`` if the file is a symbolic link, not a regular file, not the
    user's own, open to others, empty, malformed or unreadable (``FileNotFoundError`` if it does not exist). At most
    a few kilobytes are read, and a FIFO put in its place never blocks the start."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError([
                f"start-up error: control token file {path} is a symbolic link: the token is read only from a "
                "regular file of the daemon's own; delete the link to have a new token made at the next start, or "
                "set TRADER_CONTROL__TOKEN"]) from None
        raise ConfigError([f"start-up error: control token file {path} cannot be read ({exc.strerror})"]) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"start-up error: control token file {path} is not a regular file; delete it to "
                               "have a new token made at the next start, or set TRADER_CONTROL__TOKEN"])
        if info.st_uid != os.geteuid():
            raise ConfigError([
                f"start-up error: control token file {path} belongs to user id {info.st_uid}, not to the user "
                f"running the daemon ({os.geteuid()}): whoever made it may know the token; delete it to have a new "
                "token made at the next start"])
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise ConfigError([
                f"start-up error: control token file {path} has permissions {stat.S_IMODE(info.st_mode):04o}: "
                f"anyone who can read it can place orders; run `chmod 600 {path}` (or delete it to have a new token "
                "made at the next start)"])
        raw = os.read(fd, _MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"start-up error: control token file {path} cannot be read ({exc.strerror})"]) from None
    finally:
        os.close(fd)
    token = raw.decode("utf-8", errors="replace").strip()
    if not token:
        raise ConfigError([f"start-up error: control token file {path} is empty; delete it to have a new token made "
                           "at the next start, or set TRADER_CONTROL__TOKEN"])
    if len(raw) > _MAX_TOKEN_BYTES or not usable_token(token):
        raise ConfigError([f"start-up error: control token file {path} does not hold a usable token (at least "
                           f"{MIN_TOKEN_CHARS} printable characters without spaces); delete it to have a new one "
                           "made at the next start"])
    return token


def load_token(settings: Settings, *, stderr: TextIO | None = None) -> tuple[str, Path | None]:
    """The daemon's token and the file it lives in (None when it comes from the settings); creates the file on the
    first start. Raises ``ConfigError`` for a file that cannot be used."""
    configured = configured_token(settings)
    if configured:
        return configured, None
    path = token_file(settings)
    try:
        return read_token_file(path), path
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it a moment ago: use that one
        return read_token_file(path), path
    except OSError as exc:
        raise ConfigError([f"start-up error: cannot create the control token file {path} ({exc.strerror}); make "
                           "the data dir writable, or set TRADER_CONTROL__TOKEN"]) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    print(f"control API token (made once, saved in {path}, readable only by you; `trader status` reads it from "
          f"there): {token}", file=stderr or sys.stderr, flush=True)
    log.info("control_token_created", path=str(path))
    return token, path
