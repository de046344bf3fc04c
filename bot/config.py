"""Load the TOML config once into a typed, frozen Settings object.

Every key can be overridden from the environment: `TAGBOT_WECOM__SECRET=...` sets
`[wecom] secret`. Problems are collected and reported all at once, each by its key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bot.errors import ConfigError

ENV_PREFIX = "TAGBOT_"
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"
_AES_KEY_RE = re.compile(r"^[A-Za-z0-9]{43}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_cron(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise ValueError(f"not a valid cron expression ({exc})") from None
    return value


class WeComSettings(_Section):
    corp_id: str = Field(min_length=1)
    secret: SecretStr
    agent_id: int = Field(gt=0)
    token: SecretStr
    encoding_aes_key: SecretStr
    api_base: str = DEFAULT_API_BASE
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_retries: int = Field(default=3, ge=0, le=10)

    @field_validator("secret")
    @classmethod
    def _secret_present(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value():
            raise ValueError("must not be empty")
        return v

    @field_validator("token")
    @classmethod
    def _token_shape(cls, v: SecretStr) -> SecretStr:
        if not _TOKEN_RE.match(v.get_secret_value()):
            raise ValueError("must be 1 to 32 letters or digits (WeCom callback Token)")
        return v

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key_shape(cls, v: SecretStr) -> SecretStr:
        raw = v.get_secret_value()
        if not _AES_KEY_RE.match(raw):
            raise ValueError(f"must be exactly 43 letters or digits (got {len(raw)} characters)")
        return v

    @field_validator("api_base")
    @classmethod
    def _api_base_shape(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v if v.endswith("/") else v + "/"


class DatabaseSettings(_Section):
    url: str = "sqlite:///tagbot.db"
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _url_shape(cls, v: str) -> str:
        if not v.startswith(("sqlite:", "postgresql")):
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://...")
        return v


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    admin_token: SecretStr
    public_url: str = ""  # where staff open links from alerts; defaults to http://host:port
    workers: int = Field(default=2, ge=1, le=64)
    max_callback_bytes: int = Field(default=64 * 1024, ge=1024)

    @field_validator("admin_token")
    @classmethod
    def _admin_token_strong(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return v


class LimitsSettings(_Section):
    # Per WeCom API for the whole corp, shared by every process on the database; WeCom
    # allows 10,000/min and 150,000/h (wecom-api.md section 4): keep 20 % headroom.
    calls_per_minute: int = Field(default=8000, ge=1, le=10000)
    calls_per_hour: int = Field(default=120_000, ge=1, le=150_000)
    # The share of both budgets only interactive calls (scans, welcomes, alerts) may use.
    interactive_reserve: float = Field(default=0.2, ge=0.0, le=0.9)
    # Calls a process reserves from the shared budget in one transaction, at most.
    budget_batch: int = Field(default=50, ge=1, le=1000)
    outbox_batch: int = Field(default=200, ge=1, le=5000)

    @model_validator(mode="after")
    def _bulk_gets_a_share(self) -> LimitsSettings:
        if self.calls_per_hour < self.calls_per_minute:
            raise ValueError("calls_per_hour must be at least calls_per_minute")
        if int(self.calls_per_minute * (1 - self.interactive_reserve)) < 1:
            raise ValueError("interactive_reserve leaves bulk calls no share of calls_per_minute")
        return self


class JobsSettings(_Section):
    sync_schedule: str = "30 2 * * *"
    inbox_workers: int = Field(default=4, ge=1, le=64)
    welcome_threads: int = Field(default=8, ge=1, le=128)
    outbox_workers: int = Field(default=2, ge=1, le=64)

    _cron = field_validator("sync_schedule")(classmethod(lambda cls, v: _check_cron(v)))


class TierSettings(_Section):
    tag: str = Field(min_length=1, max_length=30)
    when: str = Field(min_length=1)
    stay: str | None = None


class DimensionSettings(_Section):
    name: str = Field(min_length=1)
    tag_group: str = Field(min_length=1, max_length=30)
    min_dwell_days: int = Field(default=0, ge=0)
    tiers: tuple[TierSettings, ...] = Field(min_length=1)


class TieringSettings(_Section):
    schedule: str = "0 3 * * *"
    dimensions: tuple[DimensionSettings, ...] = ()

    _cron = field_validator("schedule")(classmethod(lambda cls, v: _check_cron(v)))


class AttachmentSettings(_Section):
    type: Literal["link", "image", "miniprogram"]
    title: str = ""
    url: str = ""
    desc: str = ""
    picurl: str = ""
    media_id: str = ""
    appid: str = ""
    page: str = ""


class ChannelSettings(_Section):
    name: str = Field(min_length=1, max_length=30)
    staff: tuple[str, ...] = Field(min_length=1, max_length=100)
    tags: tuple[str, ...] = ()
    welcome: str = ""
    state: str | None = Field(default=None, max_length=30)
    daily_cap: int | None = Field(default=None, ge=1)
    backup: tuple[str, ...] = ()
    attachments: tuple[AttachmentSettings, ...] = ()

    @field_validator("tags")
    @classmethod
    def _tag_paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for path in v:
            group, sep, tag = path.partition("/")
            if not sep or not group or not tag:
                raise ValueError(f"tag {path!r} must be written 组名/标签名")
        return v


class CampaignSettings(_Section):
    name: str = Field(min_length=1)
    model_config = ConfigDict(frozen=True, extra="allow")


class OutreachSettings(_Section):
    campaigns: tuple[CampaignSettings, ...] = ()
    quiet_hours: str = "22:00-08:00"


class AppSettings(_Section):
    timezone: str = "Asia/Shanghai"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class Settings(_Section):
    wecom: WeComSettings
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings
    limits: LimitsSettings = LimitsSettings()
    jobs: JobsSettings = JobsSettings()
    tiering: TieringSettings = TieringSettings()
    channels: tuple[ChannelSettings, ...] = ()
    outreach: OutreachSettings = OutreachSettings()
    app: AppSettings = AppSettings()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.app.timezone)


# Checks that need more than one key or knowledge from other modules (tier rules'
# metric names, for example) register here; each returns a list of "key: reason".
_extra_checks: list[Callable[[Settings], list[str]]] = []


def register_check(check: Callable[[Settings], list[str]]) -> Callable[[Settings], list[str]]:
    """Register a cross-key validation run by `load_settings` and `tagbot check-config`."""
    _extra_checks.append(check)
    return check


def _cross_checks(settings: Settings) -> list[str]:
    problems: list[str] = []
    seen_names: set[str] = set()
    seen_states: set[str] = set()
    for i, ch in enumerate(settings.channels):
        if ch.name in seen_names:
            problems.append(f"channels[{i}].name: duplicate channel name {ch.name!r}")
        seen_names.add(ch.name)
        if ch.state:
            if ch.state in seen_states:
                problems.append(f"channels[{i}].state: duplicate state {ch.state!r}")
            seen_states.add(ch.state)
    groups: set[str] = set()
    for i, dim in enumerate(settings.tiering.dimensions):
        if dim.tag_group in groups:
            problems.append(f"tiering.dimensions[{i}].tag_group: {dim.tag_group!r} used twice")
        groups.add(dim.tag_group)
    for check in _extra_checks:
        problems.extend(check(settings))
    return problems


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay `TAGBOT_SECTION__KEY=value` variables onto the parsed TOML."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return merged


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _format_errors(exc: pydantic.ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        # Drop validator-function names pydantic appends for union/function validators.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(f"{_format_loc(loc)}: {msg}")
    return problems


def settings_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate an already-parsed config (plus environment overrides) into Settings."""
    merged = _env_overrides(dict(data), os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
    problems = _cross_checks(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def resolve_config_path(path: str | os.PathLike[str] | None) -> Path:
    """Pick the config file: the explicit path, else $TAGBOT_CONFIG, else ./config.toml."""
    if path:
        return Path(path)
    return Path(os.environ.get("TAGBOT_CONFIG") or "config.toml")


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the config file; raise ConfigError listing every problem."""
    config_path = resolve_config_path(path)
    try:
        with config_path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{config_path}: config file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{config_path}: not valid TOML ({exc})"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{config_path}: not UTF-8 text ({exc.reason})"]) from None
    except OSError as exc:  # a directory, no permission, an I/O error
        raise ConfigError([f"{config_path}: cannot read ({exc.strerror or exc})"]) from None
    return settings_from_mapping(data, environ)
