"""Issue #8, found by fault injection (item 10): non-finite and absurd settings are refused, secrets never echoed.

``inf`` for the capital, ``max_order_value``, ``min_margin_buffer`` or ``--speed`` used to pass validation and crash
later with ``OverflowError``; a 20-digit ``max_lots_per_trade`` crashed ``check-config``; a misspelled secret setting
echoed the secret in its error. Every number setting now has a finite range, named in the error with the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from trader.cli import main
from trader.config import ConfigError, Settings, env_name, load_settings

pytestmark = pytest.mark.usefixtures("quiet_logs")


def number_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, type]]:
    """Every int and float setting, as (dotted path, type), sections included: the audit covers new ones too."""
    found: list[tuple[str, type]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(number_fields(annotation, f"{prefix}{name}."))
        elif annotation is int or annotation is float:
            found.append((f"{prefix}{name}", int if annotation is int else float))
    return found


NUMBER_FIELDS = number_fields(Settings)


def nested(path: str, value: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    node = result
    *sections, leaf = path.split(".")
    for section in sections:
        node = node.setdefault(section, {})
    node[leaf] = value
    return result


def refusal(overrides: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(overrides)
    return raised.value.lines


def test_the_audit_sees_the_settings_named_in_the_issue() -> None:
    paths = {path for path, _ in NUMBER_FIELDS}
    assert {"risk.initial_capital", "risk.max_order_value", "risk.min_margin_buffer", "sim.speed",
            "risk.max_lots_per_trade", "heartbeat_seconds", "strategy.lots"} <= paths


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("path", [path for path, kind in NUMBER_FIELDS if kind is float])
def test_non_finite_numbers_are_refused_naming_the_field(clean_env: pytest.MonkeyPatch, path: str,
                                                         value: float) -> None:
    lines = refusal(nested(path, value))
    assert any(line.startswith(f"config error: {path}: ") and env_name(path) in line for line in lines), lines


@pytest.mark.parametrize("path", [path for path, _ in NUMBER_FIELDS])
def test_absurdly_large_numbers_are_refused_naming_the_field(clean_env: pytest.MonkeyPatch, path: str) -> None:
    kind = dict(NUMBER_FIELDS)[path]
    value: int | float = 10**20 if kind is int else 1e20  # 20 digits
    lines = refusal(nested(path, value))
    assert any(line.startswith(f"config error: {path}: ") and env_name(path) in line for line in lines), lines


def test_a_negative_seed_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    # numpy's generator cannot take one: it used to crash the built-in market at start.
    assert refusal({"sim": {"seed": -1}})[0].startswith("config error: sim.seed: ")


@pytest.mark.parametrize("argv", [
    ["check-config", "--capital", "inf"],
    ["check-config", "--capital", "1e300"],
    ["check-config", "--speed", "inf"],
    ["check-config", "--speed", "nan"],
    ["run", "--capital", "inf"],
    ["run", "--speed", "inf"],
], ids=" ".join)
def test_the_command_line_refuses_them_with_exit_2(clean_env: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    clean_env.setenv("TRADER_DATA_DIR", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("config error: ")
    assert ("--capital" in err) if "--capital" in argv else ("--speed" in err)


def test_a_20_digit_max_lots_per_trade_does_not_crash_check_config(
        clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("TRADER_RISK__MAX_LOTS_PER_TRADE", "99999999999999999999")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: risk.max_lots_per_trade: ") and "TRADER_RISK__MAX_LOTS_PER_TRADE" in err


@pytest.mark.parametrize("argv", [["sim", "--speed", "inf"], ["sim", "--speed", "nan"], ["sim", "--speed", "1e9"],
                                  ["sim", "--seed", "-1"]], ids=" ".join)
def test_the_simulator_refuses_them_too(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"config error: {argv[1]} ")


SECRET = "s3cr3t-Value-9f8e7d"


@pytest.mark.parametrize("variable", [
    "TRADER_KITE__ACESS_TOKEN",  # misspelled: an unknown setting
    "TRADER_KITE__API_SECRT",  # misspelled so far that the name no longer says "secret"
    "TRADER_KITE__PASSWORD",
    "TRADER_RISK__API_KEY",
])
def test_a_misspelled_secret_setting_never_echoes_the_secret(clean_env: pytest.MonkeyPatch, variable: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv(variable, SECRET)
    assert main(["check-config"]) == 2
    captured = capsys.readouterr()
    assert "unknown setting" in captured.err
    assert SECRET not in captured.err + captured.out


def test_a_secret_of_the_wrong_type_in_the_file_is_not_echoed(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "trader.toml"
    config.write_text("[kite]\napi_secret = 987654321987\naccess_token = [\"s3cr3t\", 1]\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config_file=config)
    text = "\n".join(raised.value.lines)
    assert "kite.api_secret" in text and "kite.access_token" in text
    assert "987654321987" not in text and "s3cr3t" not in text


def test_other_values_are_still_shown(clean_env: pytest.MonkeyPatch) -> None:
    # Not a secret: the value helps to find the typo.
    [line] = refusal({"risk": {"max_order_value": -5}})
    assert "(got -5)" in line
