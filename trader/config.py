"""Configuration: pydantic-settings with precedence CLI flags > environment (``TRADER_*``) > TOML file > defaults.

Nested sections use ``__`` in environment names: ``TRADER_RISK__MAX_DAILY_LOSS_PCT=0.02``. Money is given in rupees
here (what a human types) and converted to paise where the domain takes over.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from trader.market.calendar import IST, MarketCalendar
from trader.market.calendar_data import CalendarError, load_calendar_data
from trader.market.instruments import resolve_underlying
from trader.risk.config import MAX_LOTS_PER_ORDER, RiskConfig, require_fraction
from trader.service_settings import AlertSettings, ControlSettings, HealthSettings, Section, mask_url
from trader.strategies.registry import BUILTINS, available, check_strategies, resolve
from trader.venue_settings import FyersSettings, KiteSettings

ENV_PREFIX = "TRADER_"
# Zerodha starts squaring off intraday (MIS) F&O positions at 15:25 IST (support.zerodha.com, "Intraday auto
# square-off timings").
ZERODHA_FO_SQUARE_OFF = time(15, 25)
KNOWN_STRATEGIES = tuple(BUILTINS)  # the built-ins; plugins resolve too (trader/strategies/registry.py)

# The built-in market's and the simulator's speed: 10 000x shows a session in about two seconds.
MAX_SPEED = 10_000.0
# Words in a setting's name that mean its value is never shown in an error (nor is an unknown setting's value).
SECRET_WORDS = ("token", "secret", "key", "password", "passwd", "credential")

_toml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("trader_toml_path", default=None)



class StrategySettings(Section):
    confidence_cutoff: float = Field(50.0, ge=0, le=100)
    lots: int = Field(1, ge=1, le=MAX_LOTS_PER_ORDER)
    fast: int = Field(9, ge=1, le=500)
    slow: int = Field(21, ge=2, le=1_000)
    bar_seconds: int = Field(60, ge=1, le=3_600)
    confirm_bars: int = Field(3, ge=1, le=100)
    stop_loss_pct: float = 0.30
    target_pct: float = Field(0.60, gt=0, le=100, description="premium gain that takes profit (0.6 = +60%)")
    market_protection: float = -1.0
    max_strikes_otm: int = Field(10, ge=0, le=30, description="how far out of the money an entry may go to fit "
                                 "the risk budget")
    first_entry_time: time = time(9, 20)
    last_entry_time: time = time(15, 0)
    exit_time: time = time(15, 10)
    # Each strategy's own parameters: the ``[strategy.<name>]`` tables (env TRADER_STRATEGY__<NAME>__<FIELD>),
    # checked against the strategy's ``Params`` model once its name is resolved (trader/strategies/registry.py).
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _capture_params(cls, data: Any) -> Any:
        """``[strategy.<name>]`` sub-tables go to ``params``; an unknown key that is not a table stays an error."""
        if not isinstance(data, dict):
            return data
        tables = {key: value for key, value in data.items()
                  if key not in cls.model_fields and isinstance(value, dict)}
        if not tables:
            return data
        rest = {key: value for key, value in data.items() if key not in tables}
        given = rest.get("params")
        params: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
        for name, table in tables.items():
            params[name] = {**params.get(name, {}), **table}
        rest["params"] = params
        return rest

    @field_validator("stop_loss_pct")
    @classmethod
    def _stop_is_fraction(cls, value: float) -> float:
        return require_fraction("stop_loss_pct", value)

    @field_validator("market_protection")
    @classmethod
    def _protection(cls, value: float) -> float:
        if value != -1 and not 0 < value <= 100:
            raise ValueError("market_protection must be -1 (automatic) or a percentage in (0, 100]; "
                             "Kite rejects 0 and a missing value")
        return value

    @model_validator(mode="after")
    def _ordering(self) -> StrategySettings:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        if not self.first_entry_time <= self.last_entry_time <= self.exit_time:
            raise ValueError("times must satisfy first_entry_time <= last_entry_time <= exit_time")
        if self.exit_time >= ZERODHA_FO_SQUARE_OFF:
            raise ValueError(f"exit_time {self.exit_time} must be before Zerodha's intraday auto square-off at "
                             f"{ZERODHA_FO_SQUARE_OFF} IST (e.g. 15:10)")
        return self


class AdoptedSettings(Section):
    """Positions that are ours at the broker after a restart but that no strategy claims (trader/strategies/adopted.py):
    ``protect`` keeps a protective stop and a time exit on them, ``hold`` only reports them."""

    policy: Literal["protect", "hold"] = "protect"
    stop_loss_pct: float | None = Field(None, description="of the average price; default: strategy.stop_loss_pct")
    exit_time: time | None = Field(None, description="IST; default: strategy.exit_time")

    @field_validator("stop_loss_pct")
    @classmethod
    def _stop_is_fraction(cls, value: float | None) -> float | None:
        return None if value is None else require_fraction("stop_loss_pct", value)

    @field_validator("exit_time")
    @classmethod
    def _before_square_off(cls, value: time | None) -> time | None:
        if value is not None and value >= ZERODHA_FO_SQUARE_OFF:
            raise ValueError(f"exit_time {value} must be before Zerodha's intraday auto square-off at "
                             f"{ZERODHA_FO_SQUARE_OFF} IST (e.g. 15:10)")
        return value


class PaperSettings(Section):
    latency_ms: int = Field(150, ge=0, le=60_000)
    slippage_ticks: int = Field(1, ge=0, le=100)


class SimSettings(Section):
    """The built-in market (paper mode without Kite credentials, and backtest)."""

    seed: int = Field(7, ge=0, le=2**63 - 1)
    speed: float = Field(1.0, ge=0, le=MAX_SPEED, description="× real time; 0 = as fast as possible")
    start: datetime | None = Field(None, description="simulated start, IST if no zone is given; default: now")
    days: int = Field(0, ge=0, le=3_650, description="sessions to simulate; 0 = until stopped")
    spot: float = Field(26_000.0, gt=0, le=10_000_000)
    annual_vol: float = Field(0.13, gt=0, lt=2)
    atm_iv: float = Field(0.13, gt=0, lt=3)
    strikes_each_side: int = Field(10, ge=1, le=50)
    tick_interval_ms: int = Field(1_000, ge=10, le=60_000)
    chain_interval_ms: int = Field(1_000, ge=10, le=3_600_000)

    @field_validator("start")
    @classmethod
    def _zone(cls, value: datetime | None) -> datetime | None:
        value = value.replace(tzinfo=IST) if value is not None and value.tzinfo is None else value
        if value is not None and value.year < 2025:
            raise ValueError("the built-in market follows the expiry rules in force since 2025; start in 2025 or later")
        return value

    @model_validator(mode="after")
    def _intervals(self) -> SimSettings:
        if self.chain_interval_ms < self.tick_interval_ms:
            raise ValueError(f"chain_interval_ms ({self.chain_interval_ms}) must be >= tick_interval_ms "
                             f"({self.tick_interval_ms})")
        return self


class RunSettings(Section):
    """Run folders (trader/runs/): every run's signals, orders, fills, equity and summary, for the report."""

    enabled: bool = Field(True, description="write data_dir/runs/<run id>/ for every backtest, paper and live run")
    dir: Path | None = Field(None, description="where run folders go; default: data_dir/runs")


class RecorderSettings(Section):
    """Recording of every tick a paper or live run receives, with the day's instrument master, to Parquet under
    ``<data_dir>/ticks/<mode>/<YYYY-MM-DD>/`` for replay (docs/data.md, "Recording")."""

    enabled: bool | None = Field(None, description="default: on in paper and live, off in backtest")
    batch_rows: int = Field(20_000, ge=100, le=1_000_000, description="ticks per part file (the most a crash loses)")
    batch_seconds: float = Field(5.0, gt=0, le=600, description="wall seconds a tick may wait for its part file")
    max_batches: int = Field(8, ge=1, le=1_000, description="batches queued for the disk before one is dropped")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
                                      frozen=True, allow_inf_nan=False)

    mode: Literal["backtest", "paper", "live"] = "paper"
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["NSE:NIFTY50-INDEX"])
    strategies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["ema_crossover_enhanced"])
    auto_execution: bool | None = Field(None, description="default: on in paper/backtest, off in live")
    live_confirm: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: one human line per event when stdout is a terminal, JSON lines otherwise (systemd, Docker, a pipe).
    log_format: Literal["auto", "json", "human"] = "auto"
    heartbeat_seconds: float = Field(5.0, gt=0, le=3600)
    # SIGTERM must end the process within 10 s (systemd/Docker stop timeouts); draining gets at most 9.
    shutdown_timeout_seconds: float = Field(8.0, gt=0, le=9)
    data_dir: Path = Path("data")
    risk: RiskConfig = RiskConfig()
    strategy: StrategySettings = StrategySettings()
    adopted: AdoptedSettings = AdoptedSettings()
    paper: PaperSettings = PaperSettings()
    sim: SimSettings = SimSettings()
    # The live broker: its market data in live mode (and in paper mode when its credentials are set), its orders in
    # live mode. TRADER_VENUE=fyers takes the [fyers] section; kite the [kite] section and the kite_* settings.
    venue: Literal["kite", "fyers"] = "kite"
    kite: KiteSettings = KiteSettings()
    fyers: FyersSettings = FyersSettings()
    runs: RunSettings = RunSettings()
    recorder: RecorderSettings = RecorderSettings()
    control: ControlSettings = ControlSettings()
    health: HealthSettings = HealthSettings()
    alerts: AlertSettings = AlertSettings()
    # TRADER_KITE_API_ROOT / TRADER_KITE_WS_ROOT: point both at `trader sim` for a rehearsal without money.
    kite_api_root: str = "https://api.kite.trade"
    kite_ws_root: str = "wss://ws.kite.trade"
    kite_product: Literal["MIS", "NRML"] = "MIS"
    kite_timeout_seconds: float = Field(7.0, gt=0, le=60, description="per REST request, as the official client")
    # Kite market data: an exchange timestamp further than this from the exchange clock is dropped (counted as
    # ticks_stale or ticks_invalid) and never moves the clock. The real exchange agrees with wall time to a second.
    exchange_time_tolerance_seconds: float = Field(600.0, ge=1, le=86_400)
    kite_token_poll_seconds: float = Field(5.0, gt=0, le=300, description="how often the token file is read again "
                                           "once Kite refused the access token")
    broker_unreachable_halt_seconds: float = Field(60.0, gt=0, le=3600, description="entries stop once the broker's "
                                                   "WebSocket has been down this long")
    # TRADER_CALENDAR_FILE: NSE holidays, special sessions and session hours that extend or override the shipped
    # trader/market/data/nse_calendar.toml (same format, documented at its top), e.g. next year's holiday list.
    calendar_file: Path | None = None

    @field_validator("kite_api_root", "kite_ws_root")
    @classmethod
    def _url(cls, value: str, info: Any) -> str:
        schemes = ("http://", "https://") if info.field_name == "kite_api_root" else ("ws://", "wss://")
        if not value.startswith(schemes):
            raise ValueError(f"must start with {' or '.join(schemes)}, e.g. {schemes[-1]}127.0.0.1:8000")
        return value.rstrip("/")

    @field_validator("calendar_file")
    @classmethod
    def _calendar_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_calendar_data(value)  # a CalendarError names the file, the field in it and the fix
        return value

    def market_calendar(self, *, warn_clock: Callable[[], int] | None = None) -> MarketCalendar:
        """The shipped calendar with ``calendar_file`` over it; ``warn_clock`` as in ``MarketCalendar``."""
        try:
            data = load_calendar_data(self.calendar_file)
        except CalendarError as exc:
            raise ConfigError([f"config error: calendar_file: {exc}; set it with TRADER_CALENDAR_FILE or "
                               "--calendar-file"]) from None
        return MarketCalendar(data, warn_clock=warn_clock)

    @property
    def runs_dir(self) -> Path:
        """Where run folders go (``runs.dir``, default ``data_dir/runs``)."""
        return self.runs.dir if self.runs.dir is not None else self.data_dir / "runs"

    @property
    def kite_token_file(self) -> Path:
        """Where `trader login` keeps the day's access token (owner-only, 0600)."""
        return self.data_dir / "kite_access_token"

    def kite_access_token(self) -> str:
        """The access token from the environment, else from the file `trader login` wrote ("" if neither)."""
        token = self.kite.access_token.get_secret_value()
        if token:
            return token
        try:
            return self.kite_token_file.read_text().strip()
        except OSError:
            return ""

    @property
    def fyers_token_file(self) -> Path:
        """Where `trader login --venue fyers` keeps the day's access token (owner-only, 0600)."""
        return self.data_dir / "fyers_access_token"

    def fyers_access_token(self) -> str:
        """The Fyers access token from the environment, else from the file `trader login --venue fyers` wrote."""
        token = self.fyers.access_token.get_secret_value()
        if token:
            return token
        try:
            return self.fyers_token_file.read_text().strip()
        except OSError:
            return ""

    @field_validator("symbols", "strategies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("symbols")
    @classmethod
    def _known_symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one symbol, e.g. NSE:NIFTY50-INDEX")
        for symbol in value:
            resolve_underlying(symbol)  # raises ValueError listing the accepted forms
        return value

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: list[str]) -> list[str]:
        """Each name resolves (a built-in, an installed entry point or a dotted path: trader/strategies/registry.py);
        its parameters are checked by ``load_settings`` once the whole configuration is read."""
        if not value:
            raise ValueError(f"give at least one strategy; available: {', '.join(available())}")
        for name in value:
            resolve(name)  # a ValueError that lists the built-in and installed strategies
        return value

    @field_validator("mode", "venue", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.strategy.lots > self.risk.max_lots_per_trade:
            raise ValueError(f"strategy.lots ({self.strategy.lots}) exceeds risk.max_lots_per_trade "
                             f"({self.risk.max_lots_per_trade}): every entry would be refused")
        if self.mode == "backtest" and self.sim.days == 0:
            raise ValueError("backtest mode needs a bounded run: set --days N (sim.days >= 1)")
        return self

    @property
    def has_kite_credentials(self) -> bool:
        return bool(self.kite.api_key and self.kite_access_token())

    @property
    def has_fyers_credentials(self) -> bool:
        return bool(self.fyers.app_id and self.fyers_access_token())

    @property
    def intraday_product(self) -> bool:
        """Live orders are intraday (Kite MIS, Fyers INTRADAY): the broker squares them off before the close."""
        return self.fyers.product == "INTRADAY" if self.venue == "fyers" else self.kite_product == "MIS"

    @property
    def has_venue_credentials(self) -> bool:
        """The chosen venue's app key and an access token are set: paper mode then trades on its market data."""
        return self.has_fyers_credentials if self.venue == "fyers" else self.has_kite_credentials

    @property
    def effective_auto_execution(self) -> bool:
        if self.auto_execution is not None:
            return self.auto_execution
        return self.mode != "live"

    @property
    def records_ticks(self) -> bool:
        """Whether received ticks are recorded: ``recorder.enabled``, by default on in paper and live."""
        return self.recorder.enabled if self.recorder.enabled is not None else self.mode != "backtest"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _toml_path.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


class ConfigError(Exception):
    """Bad configuration: one line per problem, each naming the field and how to fix it."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


# CLI flag for each field a flag can set, so an error can say where to fix it.
CLI_FLAGS: dict[str, str] = {
    "mode": "--mode",
    "symbols": "--symbols",
    "strategies": "--strategies",
    "auto_execution": "--auto-execution",
    "log_level": "--log-level",
    "log_format": "--log-format",
    "risk.initial_capital": "--capital",
    "risk.max_daily_loss_pct": "--max-daily-loss",
    "strategy.confidence_cutoff": "--confidence-cutoff",
    "sim.speed": "--speed",
    "sim.seed": "--seed",
    "sim.days": "--days",
    "sim.start": "--start",
    "venue": "--venue",
    "calendar_file": "--calendar-file",
}


def env_name(field_path: str) -> str:
    return ENV_PREFIX + field_path.replace(".", "__").upper()


def looks_secret(path: str) -> bool:
    """True for a setting whose name says its value is a secret (``kite.access_token``, ``...password``)."""
    return any(word in path.lower() for word in SECRET_WORDS)


def _describe(error: Any) -> str:
    path = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    where = [env_name(path)]
    if path in CLI_FLAGS:
        where.insert(0, CLI_FLAGS[path])
    shown = error.get("input")
    given = f" (got {shown!r})" if shown is not None and not isinstance(shown, dict | SecretStr) else ""
    if error["type"] == "extra_forbidden" or looks_secret(path):
        # An unknown setting may be a misspelled secret whose name no longer says so: never show its value.
        given = ""
        if looks_secret(path) and isinstance(shown, str | int | float) and str(shown) and str(shown) in message:
            message = message.replace(str(shown), "***")
    if error["type"] == "extra_forbidden":
        return f"config error: {path}: unknown setting{given}; check the spelling against configs/paper.toml"
    if not path:  # a rule across fields: the message names them
        return f"config error: {message}"
    return f"config error: {path}: {message}{given}; set it with {' or '.join(where)}"


def load_settings(overrides: dict[str, Any] | None = None, config_file: Path | None = None) -> Settings:
    """Build the effective settings; raise ConfigError with one line per problem."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError([f"config error: config file {config_file} does not exist; pass an existing "
                           "TOML file to --config (see configs/paper.toml)"])
    token = _toml_path.set(config_file)
    try:
        settings = Settings(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()]) from None
    except ValueError as exc:  # e.g. a TOML syntax error
        raise ConfigError([f"config error: {exc}"]) from None
    finally:
        _toml_path.reset(token)
    lines = check_strategies(settings)[1]
    if lines:
        raise ConfigError(lines)
    return settings


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets masked (for ``trader check-config``)."""
    data = settings.model_dump(mode="json")
    for section, keys in (("kite", ("api_secret", "access_token")), ("fyers", ("secret_key", "access_token"))):
        table = data.get(section, {})
        for key in keys:
            if table.get(key):
                table[key] = "**********"
    control = data.get("control", {})
    if control.get("token"):
        control["token"] = "**********"
    for table in data.get("strategy", {}).get("params", {}).values():  # a plugin's own secrets, by their names
        for key in table:
            if looks_secret(key) and table[key]:
                table[key] = "**********"
    alerts = data.get("alerts", {})
    for key in ("telegram_bot_token", "webhook_secret"):
        if alerts.get(key):
            alerts[key] = "**********"
    if alerts.get("webhook_url"):  # chat-service hook URLs carry their secret in the path
        alerts["webhook_url"] = mask_url(alerts["webhook_url"])
    return data
