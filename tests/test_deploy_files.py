"""The deployment files say what docs/operations.md says they do: configs/trader.service passes `systemd-analyze
verify` (offline, on a temp copy whose ExecStart is this venv's `trader`) and carries the notify/watchdog/restart/
hardening settings; compose.yaml parses and keeps the data on a named volume, the secrets in an env file, the port on
loopback and a stop grace above the daemon's stop budget; the Dockerfile's HEALTHCHECK is `trader healthcheck`,
the same command as compose's; configs/trader.env.example names only real settings."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from trader.config import Settings, load_settings, masked_dump

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "configs" / "trader.service"
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / "configs" / "trader.env.example"
STOP_BUDGET_MAX_S = Settings.model_fields["shutdown_timeout_seconds"].metadata  # read below as the field's `le`


def unit_entries(text: str) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values, in order]}}`` as systemd reads a unit: comments, blank lines, repeated keys."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"not a unit line: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(text: str) -> float:
    """A systemd or compose time span: ``30``, ``30s``, ``10min``, ``5m``, ``1m30s``."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts, text
    for number, unit in parts:
        total += float(number) * units[unit]
    return total


def max_stop_budget_s() -> float:
    for item in STOP_BUDGET_MAX_S:
        limit = getattr(item, "le", None)
        if limit is not None:
            return float(limit)
    raise AssertionError("shutdown_timeout_seconds has no upper bound")


# -- systemd ----------------------------------------------------------------------------------------------------------
def test_unit_settings() -> None:
    unit = unit_entries(UNIT.read_text())
    service, section = unit["Service"], unit["Unit"]

    def one(key: str) -> str:
        [value] = service[key]
        return value

    assert (one("Type"), one("NotifyAccess"), seconds(one("WatchdogSec"))) == ("notify", "main", 30)
    assert one("Restart") == "on-failure" and seconds(one("RestartSec")) > 0
    assert int(section["StartLimitBurst"][0]) >= 1 and seconds(section["StartLimitIntervalSec"][0]) > 0
    assert one("KillSignal") == "SIGTERM"
    assert seconds(one("TimeoutStopSec")) > max_stop_budget_s()  # the graceful stop fits before SIGKILL
    assert seconds(one("TimeoutStartSec")) >= 5 * 60  # the gate retries an unreachable broker for minutes
    assert one("EnvironmentFile") == "/etc/trader/trader.env"
    environment = dict(value.split("=", 1) for value in service["Environment"])
    data_dir = environment["TRADER_DATA_DIR"]
    assert one("ReadWritePaths") == data_dir and f"/var/lib/{one('StateDirectory')}" == data_dir
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
                       "PrivateDevices": "yes", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6"}.items():
        assert one(key) == value, key
    assert "MemoryDenyWriteExecute" not in service  # may break wheels that use libffi callbacks
    assert one("ExecStart").split()[1] == "run"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze checks configs/trader.service: install systemd (apt install systemd)"
    return found


def verify(unit_text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    path = directory / "trader.service"
    path.write_text(unit_text)
    return subprocess.run([systemd_analyze(), "verify", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)


def local_copy(text: str) -> str:
    """The unit with ExecStart pointing at this venv's `trader` (verify checks the binary exists)."""
    trader = Path(sys.executable).parent / "trader"
    assert trader.exists(), trader
    return text.replace("/opt/trader/.venv/bin/trader", str(trader))


def test_systemd_analyze_verify_passes_offline(tmp_path: Path) -> None:
    # Works without systemd as PID 1: verify loads the unit file and its binary, it talks to no manager.
    text = local_copy(UNIT.read_text())
    result = verify(text, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # The same check catches a typo: it reads our keys.
    result = verify(text.replace("WatchdogSec=", "WatchdogSecs=").replace("Type=notify", "Type=notifyy"), tmp_path)
    assert "Unknown key" in result.stderr and "WatchdogSecs" in result.stderr and "notifyy" in result.stderr
    result = verify(UNIT.read_text().replace("/opt/trader/.venv/bin/trader", str(tmp_path / "none")), tmp_path)
    assert result.returncode != 0 and "is not executable" in result.stderr


def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    path = tmp_path / "trader.service"
    path.write_text(local_copy(UNIT.read_text()))
    result = subprocess.run([systemd_analyze(), "security", "--offline=true", "--no-pager", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for trader\.service: (\d+\.\d+)", result.stdout + result.stderr)
    assert found, result.stdout[-2000:] + result.stderr[-2000:]
    assert float(found.group(1)) <= 3.5  # 3.0 measured ("OK"); the old Type=simple unit: 8.7


# -- Docker -----------------------------------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    rows = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def dockerfile_healthcheck() -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options and its CMD (exec form)."""
    [rest] = [rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK"]
    options_text, _, command = rest.partition("CMD ")
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", options_text))
    return options, list(yaml.safe_load(command))  # a JSON array is YAML


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def test_dockerfile_healthcheck_is_trader_healthcheck() -> None:
    options, command = dockerfile_healthcheck()
    assert command[:2] == ["trader", "healthcheck"]
    assert seconds(options["interval"]) >= 10 and seconds(options["start-period"]) >= 60
    # The CLI gives up before Docker kills it, so a slow answer is reported as exit 3, not as a killed check.
    assert float(command[command.index("--timeout") + 1]) < seconds(options["timeout"])
    instructions = dict(dockerfile_instructions())
    assert instructions["STOPSIGNAL"] == "SIGTERM" and instructions["USER"] == "trader"
    assert "TRADER_DATA_DIR=/var/lib/trader" in instructions["ENV"]
    assert "TZ=" not in DOCKERFILE.read_text()  # the daemon computes IST itself


def test_compose_file() -> None:
    document = compose()
    service = document["services"]["trader"]
    assert service["restart"] in ("unless-stopped", "on-failure", "always")
    assert seconds(service["stop_grace_period"]) > max_stop_budget_s()
    assert service.get("stop_signal", "SIGTERM") == "SIGTERM"
    # The data dir on a named volume.
    environment = service["environment"]
    data_dir = environment["TRADER_DATA_DIR"]
    volume, _, target = next(v for v in service["volumes"] if v.endswith(":" + data_dir)).partition(":")
    assert target == data_dir and volume in document["volumes"]
    # Secrets from an env file that is not in the repository.
    assert service["env_file"] == ["trader.env"]
    assert "/trader.env" in (ROOT / ".gitignore").read_text().splitlines()
    # The control port published on the host's loopback only, and the daemon told that port by environment.
    for mapping in service["ports"]:
        host, _, container_port = str(mapping).split(":")
        assert host == "127.0.0.1" and container_port == environment["TRADER_CONTROL__PORT"]
    # The same health check as the image's.
    _, image_command = dockerfile_healthcheck()
    assert service["healthcheck"]["test"] == ["CMD", *image_command]
    # Rotated logs; TZ left out on purpose, and said so.
    logging = service["logging"]
    assert logging["driver"] == "json-file" and {"max-size", "max-file"} <= set(logging["options"])
    assert "TZ" not in environment and "TZ is irrelevant" in COMPOSE.read_text()
    # The command's config file is in the image (the Dockerfile copies configs/ to /app/configs).
    command = service["command"]
    config = command[command.index("--config") + 1]
    assert config.startswith("/app/configs/") and (ROOT / "configs" / config.removeprefix("/app/configs/")).exists()
    # Every setting in the environment is a real one.
    assert_real_settings(environment)


def assert_real_settings(names: dict[str, str] | list[str]) -> None:
    dump = masked_dump(load_settings({"mode": "paper"}))
    for name in names:
        assert name.startswith("TRADER_"), name
        node: Any = dump
        for part in name.removeprefix("TRADER_").lower().split("__"):
            assert isinstance(node, dict) and part in node, f"{name}: no such setting"
            node = node[part]


@pytest.mark.usefixtures("clean_env")
def test_env_example_names_real_settings() -> None:
    names = re.findall(r"^#?\s*(TRADER_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert {"TRADER_KITE__API_KEY", "TRADER_CONTROL__TOKEN", "TRADER_ALERTS__TELEGRAM_BOT_TOKEN"} <= set(names)
    assert_real_settings(names)
    unit = unit_entries(UNIT.read_text())["Service"]
    assert_real_settings([value.split("=", 1)[0] for value in unit["Environment"] if value.startswith("TRADER_")])
    # The commented lines are examples; the uncommented ones carry no value in the example.
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith("TRADER_"):
            assert line.endswith("="), line
