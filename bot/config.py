"""Load the TOML config once into a typed, frozen Settings object.

Every key can be overridden from the environment: `TAGBOT_WECOM__SECRET=...` sets
`[wecom] secret`. Problems are collected and reported all at once, each by its key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# The rule language (bot/rules) and the campaign checks built on it sit below config: they
# read settings through protocols and import nothing that imports config. So config runs
# them directly as it loads, and every package that reads settings may use the rules too
# (tiering, outreach), with no package importing back. (They used to live in tiering and
# outreach, reached through lazy imports behind a registry: a ring config ↔ tiering ↔ outreach.)
from bot.campaign_checks import campaign_problems
from bot.errors import ConfigError
from bot.rules.dimension import rule_problems
from bot.wecom_limits import (
    ATTACHMENTS_MAX,
    CHAT_ID_PATTERN,
    CONTACT_WAY_STATE_MAX,
    CONTACT_WAY_USERS_MAX,
    CORP_TAGS_MAX,
    JOIN_WAY_CHATS_MAX,
    JOIN_WAY_ROOM_BASE_NAME_MAX,
    MSG_TEMPLATE_TEXT_MAX_BYTES,
    TAG_NAME_MAX,
)

ENV_PREFIX = "TAGBOT_"
# `--config env` / `TAGBOT_CONFIG=env`: no file, the environment alone (containers). A file
# named env is read by its absolute path.
ENV_ONLY = "env"
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"
# The self-built app's web login page (wecom-api.md section 7.4); the simulator serves one too.
DEFAULT_WEB_LOGIN_URL = "https://login.work.weixin.qq.com/wwlogin/sso/login"
DEFAULT_OAUTH_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
_AES_KEY_LENGTH = 43
_TOKEN_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
# WeCom userids: 1-64 bytes of letters, digits and "_-@.", starting with a letter or digit.
_USERID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-@.]{0,63}$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _is_ascii_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _describe_char(c: str) -> str:
    """Name a character so that spaces, tabs and look-alikes are visible in one line."""
    if c == " ":
        return "a space"
    if c.isprintable():
        return f"{c!r} (U+{ord(c):04X})"
    return f"U+{ord(c):04X}"


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
    web_login_url: str = DEFAULT_WEB_LOGIN_URL
    oauth_url: str = DEFAULT_OAUTH_URL  # the staff sidebar's OAuth2 (snsapi_base)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_retries: int = Field(default=3, ge=0, le=10)
    # A signed callback older than this is a replay, not a re-delivery (those come in minutes).
    callback_max_age_seconds: int = Field(default=3600, ge=60)
    # Clock skew allowed the other way: WeCom's clock ahead of ours.
    callback_max_ahead_seconds: int = Field(default=300, ge=0)

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
        bad = next(((i, c) for i, c in enumerate(raw) if not _is_ascii_alnum(c)), None)
        if bad is not None:
            # Position and character only: the rest of the key stays secret.
            raise ValueError(
                f"must be exactly {_AES_KEY_LENGTH} letters or digits: character {bad[0] + 1}"
                f" of {len(raw)} is {_describe_char(bad[1])}, not a letter or digit"
            )
        if len(raw) != _AES_KEY_LENGTH:
            raise ValueError(
                f"must be exactly {_AES_KEY_LENGTH} letters or digits (got {len(raw)} characters)"
            )
        return v

    @field_validator("api_base")
    @classmethod
    def _api_base_shape(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v if v.endswith("/") else v + "/"

    @field_validator("web_login_url", "oauth_url")
    @classmethod
    def _web_login_shape(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+[^\s?#]*$", v):
            raise ValueError("must be an http(s) URL without a query string")
        return v


class DatabaseSettings(_Section):
    url: str = "sqlite:///tagbot.db"
    echo: bool = False
    # A streaming replica of `url` the nightly (full) re-tier reads its data from; "" reads
    # `url`. Touched runs and every write keep to `url` (docs/citus.md, section 6).
    analytics_url: str = ""

    @field_validator("url")
    @classmethod
    def _url_shape(cls, v: str) -> str:
        if not v.startswith(("sqlite:", "postgresql")):
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://...")
        return v

    @field_validator("analytics_url")
    @classmethod
    def _analytics_shape(cls, v: str) -> str:
        if v and not v.startswith("postgresql"):
            raise ValueError("must be postgresql+psycopg://... (a replica of url), or empty")
        return v

    @model_validator(mode="after")
    def _analytics_needs_postgresql(self) -> DatabaseSettings:
        if self.analytics_url and not self.url.startswith("postgresql"):
            raise ValueError("analytics_url needs url to be PostgreSQL: it is a replica of it")
        return self


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    admin_token: SecretStr
    public_url: str = ""  # where staff open links from alerts; defaults to http://host:port
    workers: int = Field(default=2, ge=1, le=64)
    max_callback_bytes: int = Field(default=64 * 1024, ge=1024)
    # Failed authentications per client address and window before answering 429.
    auth_failure_limit: int = Field(default=20, ge=1)
    auth_failure_window_seconds: int = Field(default=300, ge=1)
    # Proxies whose X-Forwarded-For names the client; none means the socket's address.
    trusted_proxies: tuple[str, ...] = ()
    # On SIGTERM: how long a process lets the work in hand finish before it exits anyway.
    # At most 45 s: the scheduler lease (60 s TTL) is no longer renewed while it stops.
    stop_seconds: float = Field(default=20.0, gt=0, le=45)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an IP address or network") from None
        return v

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
    tag: str = Field(min_length=1, max_length=TAG_NAME_MAX)
    when: str = Field(min_length=1)
    stay: str | None = None
    # The talking point the staff sidebar shows for this tier (Chinese, optional).
    hint: str = Field(default="", max_length=200)

    @field_validator("hint")
    @classmethod
    def _hint_text(cls, v: str) -> str:
        v = v.strip()
        if any(ord(c) < 32 for c in v):
            raise ValueError("must be one line of text (no control characters)")
        return v


class DimensionSettings(_Section):
    name: str = Field(min_length=1)
    tag_group: str = Field(min_length=1, max_length=TAG_NAME_MAX)
    min_dwell_days: int = Field(default=0, ge=0)
    tiers: tuple[TierSettings, ...] = ()
    # Instead of tiers: the tag is this text name's value (`profile.region`, `channel`).
    tag_from: str | None = Field(default=None, min_length=1)
    # WeCom allows 3,000 tags per corp; rarer values share one 其他 tag.
    max_tags: int = Field(default=50, ge=2, le=CORP_TAGS_MAX)

    @model_validator(mode="after")
    def _tiers_or_tag_from(self) -> DimensionSettings:
        if self.tiers and self.tag_from:
            raise ValueError("has both tiers and tag_from; give one of them")
        if not self.tiers and not self.tag_from:
            raise ValueError("needs tiers (a list of [[...tiers]]) or tag_from")
        return self


class TieringSettings(_Section):
    schedule: str = "0 3 * * *"
    # The day's rank population for explanations, stored once just after local midnight
    # (`bot.tiering.day_population`); "" for none (each web process builds its own).
    population_schedule: str = "5 0 * * *"
    dimensions: tuple[DimensionSettings, ...] = ()

    _cron = field_validator("schedule")(classmethod(lambda cls, v: _check_cron(v)))

    @field_validator("population_schedule")
    @classmethod
    def _population_cron(cls, v: str) -> str:
        return v if v == "" else _check_cron(v)


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
    name: str = Field(min_length=1, max_length=TAG_NAME_MAX)  # also the channel's tag
    # A staff live code (联系我) names `staff`; a group live code (加入群聊) names `groups`.
    staff: tuple[str, ...] = Field(default=(), max_length=CONTACT_WAY_USERS_MAX)
    tags: tuple[str, ...] = ()
    welcome: str = ""
    state: str | None = Field(default=None, max_length=CONTACT_WAY_STATE_MAX)
    daily_cap: int | None = Field(default=None, ge=1)
    backup: tuple[str, ...] = ()
    attachments: tuple[AttachmentSettings, ...] = ()
    # Group live code: 1–5 customer group chat ids, and WeCom's auto_create_room (open a
    # numbered group named room_base_name + room_base_id, +1, … when all are full).
    groups: tuple[str, ...] = Field(default=(), max_length=JOIN_WAY_CHATS_MAX)
    auto_create_room: bool = False
    room_base_name: str = Field(default="", max_length=JOIN_WAY_ROOM_BASE_NAME_MAX)
    room_base_id: int | None = Field(default=None, ge=0)

    @field_validator("tags")
    @classmethod
    def _tag_paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for path in v:
            group, sep, tag = path.partition("/")
            if not sep or not group or not tag:
                raise ValueError(f"tag {path!r} must be written 组名/标签名")
        return v

    @model_validator(mode="after")
    def _staff_or_groups(self) -> ChannelSettings:
        if bool(self.staff) == bool(self.groups):
            raise ValueError(
                "give either staff (a staff live code) or groups (a group live code, 群活码)"
            )
        bad = [c for c in self.groups if not re.fullmatch(CHAT_ID_PATTERN, c)]
        if bad:
            raise ValueError(f"groups: malformed chat id {', '.join(map(repr, bad))}")
        if self.groups and (self.welcome or self.daily_cap or self.backup or self.attachments):
            raise ValueError("a group live code (groups) has no welcome, daily_cap or backup")
        if not self.auto_create_room and (self.room_base_name or self.room_base_id is not None):
            raise ValueError("room_base_name and room_base_id need auto_create_room = true")
        return self

    @property
    def is_group(self) -> bool:
        """Whether this entry is a group live code (加入群聊)."""
        return bool(self.groups)


_QUIET_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
CampaignAction = Literal["group_message", "group_invite", "group_broadcast", "follow_up", "webhook"]


class CampaignSettings(_Section):
    """One `[[outreach.campaigns]]`: who (dimension + tiers or on_enter, `when`), how, when.

    Cross-key checks (the dimension and tiers exist, `when` parses against the vocabulary,
    `{name}` refused in a 群发 text) are registered by the outreach package.
    """

    name: str = Field(min_length=1, max_length=64)
    action: CampaignAction = "group_message"
    # required, except by a group_broadcast that picks its groups by group_code alone
    dimension: str = ""
    # Audience: current members of these tiers, or customers who entered this one tier
    # since the campaign's previous run.
    tiers: tuple[str, ...] = ()
    on_enter: str | None = Field(default=None, min_length=1)
    when: str | None = Field(default=None, min_length=1)
    schedule: str | None = None  # cron in [app] timezone; none: run by hand only
    holdout_pct: int = Field(default=10, ge=0, le=50)
    cooldown_days: int = Field(default=7, ge=0)
    # Yuan per reached customer (SMS, gift, staff time): the console's ROI per tier.
    cost_per_delivery: float | None = Field(default=None, gt=0, le=100_000, allow_inf_nan=False)
    # 群发 text ({staff} allowed), the follow-up's suggested action, or the webhook's note.
    text: str = ""
    attachments: tuple[AttachmentSettings, ...] = Field(default=(), max_length=ATTACHMENTS_MAX)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # group_invite: the group live code (a channel made with `channel create --group`)
    # whose QR code the invitation carries and whose groups count as joined.
    group_code: str | None = Field(default=None, min_length=1, max_length=64)
    # group_broadcast with tiers: a group qualifies when at least this % of its current
    # customer members are in the tiers.
    min_share: int = Field(default=50, ge=1, le=100)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        return None if v is None else _check_cron(v)

    @field_validator("text")
    @classmethod
    def _text_size(cls, v: str) -> str:
        if len(v.encode()) > MSG_TEMPLATE_TEXT_MAX_BYTES:
            raise ValueError(
                f"is longer than WeCom's {MSG_TEMPLATE_TEXT_MAX_BYTES:,} bytes for a 群发 text"
            )
        return v

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @model_validator(mode="after")
    def _audience_and_action(self) -> CampaignSettings:
        if self.action == "group_broadcast":
            return self._groups_audience()
        if not self.dimension:
            raise ValueError("dimension is required: the name of a [[tiering.dimensions]]")
        if bool(self.tiers) == bool(self.on_enter):
            raise ValueError("give either tiers (current members) or on_enter (one tier)")
        if self.action == "webhook" and not self.webhook_url:
            raise ValueError("action webhook needs webhook_url")
        if self.action == "group_message" and not (self.text or self.attachments):
            raise ValueError("action group_message needs text or attachments")
        if self.action == "follow_up" and not self.text:
            raise ValueError("action follow_up needs text: the suggested action for staff")
        if self.action == "group_invite" and not self.group_code:
            raise ValueError(
                "action group_invite needs group_code: the group live code (channel create"
                " --group) whose groups the customers are invited to"
            )
        if self.group_code and self.action != "group_invite":
            raise ValueError("group_code is only for actions group_invite and group_broadcast")
        if self.action == "group_invite" and len(self.attachments) >= ATTACHMENTS_MAX:
            raise ValueError(
                f"action group_invite takes at most {ATTACHMENTS_MAX - 1} attachments: the"
                f" group code's QR link is one of WeCom's {ATTACHMENTS_MAX}"
            )
        return self

    def _groups_audience(self) -> CampaignSettings:
        """group_broadcast: groups of a group code and/or groups mostly in some tiers."""
        if self.on_enter or self.when:
            raise ValueError(
                "action group_broadcast posts to customer groups: on_enter and when select"
                " customers; use tiers (with min_share) and/or group_code"
            )
        if not self.tiers and not self.group_code:
            raise ValueError(
                "action group_broadcast needs group_code (the groups of a group live code)"
                " and/or dimension with tiers (groups whose members are mostly in them)"
            )
        if self.tiers and not self.dimension:
            raise ValueError("tiers need dimension: the name of a [[tiering.dimensions]]")
        if not (self.text or self.attachments):
            raise ValueError("action group_broadcast needs text or attachments")
        return self


class OutreachSettings(_Section):
    campaigns: tuple[CampaignSettings, ...] = ()
    # "HH:MM-HH:MM" in [app] timezone (may wrap midnight); "" for none. Nothing is created
    # in these hours: runs are held and go out when they end.
    quiet_hours: str = "22:00-08:00"
    # Campaign messages per customer across campaigns (WeCom itself allows one a day).
    max_per_7d: int | None = Field(default=None, ge=1)
    max_per_30d: int | None = Field(default=None, ge=1)
    # Built-in: a 高价值 customer entering 沉睡客户 or 流失预警 alerts their staff once.
    tier_alerts: bool = True

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str) -> str:
        if v and not _QUIET_RE.match(v):
            raise ValueError(f"{v!r} must be HH:MM-HH:MM (or empty for none)")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> OutreachSettings:
        names = [c.name for c in self.campaigns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"campaign names must be unique: {', '.join(dupes)}")
        return self


class ConsoleSettings(_Section):
    """`[console]`: who may sign in to the operator console under /admin/, and for how long."""

    # WeCom userids allowed in: 管理员 may change things, 只读 may only look.
    admins: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()
    # A session ends after this long without a request, and in any case after the second.
    idle_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)
    absolute_hours: int = Field(default=24, ge=1, le=30 * 24)

    @field_validator("admins", "viewers")
    @classmethod
    def _userids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for userid in v:
            if not _USERID_RE.match(userid):
                raise ValueError(
                    f"{userid!r} is not a WeCom userid (1-64 letters, digits or _-@., "
                    "starting with a letter or digit)"
                )
        return tuple(userid.lower() for userid in v)  # WeCom userids are case-insensitive

    @model_validator(mode="after")
    def _one_role_each(self) -> ConsoleSettings:
        both = sorted(set(self.admins) & set(self.viewers))
        if both:
            raise ValueError(f"listed in both admins and viewers: {', '.join(both)}")
        if self.absolute_hours * 60 < self.idle_minutes:
            raise ValueError("absolute_hours must be at least idle_minutes")
        return self


class SidebarSettings(_Section):
    """`[sidebar]`: the staff page in the WeCom chat toolbar (聊天工具栏) under /sidebar/."""

    # A member signs in once (silent OAuth2) and stays signed in this long; the WeCom
    # client keeps the cookie until the member switches account.
    session_hours: int = Field(default=12, ge=1, le=30 * 24)


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
    console: ConsoleSettings = ConsoleSettings()
    sidebar: SidebarSettings = SidebarSettings()
    app: AppSettings = AppSettings()
    # Display names by WeCom userid (`[staff] liuyang = "刘洋"`): WeCom gives member names
    # only to some apps, and `{staff}` in a welcome should read as a person's name.
    staff: dict[str, str] = Field(default_factory=dict)

    @field_validator("staff")
    @classmethod
    def _staff_keys_folded(cls, v: dict[str, str]) -> dict[str, str]:
        # WeCom userids are case-insensitive; names are compared as written.
        return {userid.lower(): name.strip() for userid, name in v.items()}

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.app.timezone)

    def staff_display_name(self, userid: str) -> str | None:
        """Return the operator's display name for a member, or None when none is set."""
        return self.staff.get(userid.lower()) or None


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
    for userid, name in settings.staff.items():
        if not _USERID_RE.match(userid):
            problems.append(
                f"staff.{userid}: not a WeCom userid (1-64 letters, digits or _-@., "
                "starting with a letter or digit)"
            )
        if not name or len(name) > 64:
            problems.append(f"staff.{userid}: the display name must be 1 to 64 characters")
    # Checks with the rule language's knowledge: each tier rule against the vocabulary,
    # each campaign against the tiers (every problem with its key and caret).
    problems.extend(rule_problems(settings.tiering.dimensions))
    problems.extend(campaign_problems(settings.outreach.campaigns, settings.tiering.dimensions))
    return problems


def _is_example_word(value: str) -> bool:
    folded = re.sub(r"[^a-z0-9]", "", value.lower())
    return folded.startswith(("replacewith", "changeme"))


# Keys whose config.example.toml value is a stand-in, how to recognise one, and where the
# real value is found. A placeholder would pass every shape check and fail only at WeCom.
_PLACEHOLDERS: dict[tuple[str, str], tuple[Callable[[str], bool], str]] = {
    ("wecom", "corp_id"): (
        lambda v: re.fullmatch(r"ww0+", v) is not None or _is_example_word(v),
        "paste the corp ID (管理后台 → 我的企业 → 企业信息 → 企业ID)",
    ),
    ("wecom", "secret"): (
        _is_example_word,
        "paste the secret of the self-built app (应用管理 → 自建应用 → Secret)",
    ),
    ("wecom", "token"): (
        _is_example_word,
        "paste the callback Token (客户联系 → API → 接收事件服务器 → Token)",
    ),
    ("wecom", "encoding_aes_key"): (
        _is_example_word,
        "paste the EncodingAESKey generated beside the Token (客户联系 → API → 接收事件服务器)",
    ),
    ("server", "admin_token"): (
        _is_example_word,
        "set a long random string, e.g. from "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`",
    ),
}


def _placeholder_problems(merged: Mapping[str, Any]) -> list[str]:
    """Report every key that still holds config.example.toml's stand-in value."""
    problems = []
    for (section, key), (is_placeholder, hint) in _PLACEHOLDERS.items():
        node = merged.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str) and is_placeholder(value):
            problems.append(f"{section}.{key}: still the example's placeholder — {hint}")
    return problems


# Domains reserved for examples (RFC 2606): a link to one is a stand-in, never a real page.
_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
_EXAMPLE_TLDS = ("example", "invalid", "test")


def is_example_url(url: str) -> bool:
    """Tell whether a URL points at a domain reserved for examples (example.com, *.test)."""
    from urllib.parse import urlsplit

    host = (urlsplit(url.strip()).hostname or "").rstrip(".")
    if host in _EXAMPLE_DOMAINS or host.endswith(tuple("." + d for d in _EXAMPLE_DOMAINS)):
        return True
    return host.rpartition(".")[2] in _EXAMPLE_TLDS


def channel_example_values(settings: Settings) -> list[str]:
    """List, by key, the `[[channels]]` links that still point at an example domain.

    Config channels are created in WeCom when serve or worker starts: the example's
    公众号文章 would go live with its https://example.com/welcome link.
    """
    found = []
    for i, channel in enumerate(settings.channels):
        for j, attachment in enumerate(channel.attachments):
            for field in ("url", "picurl"):
                value = getattr(attachment, field)
                if value and is_example_url(value):
                    found.append(
                        f"channels[{i}].attachments[{j}].{field}: {value} is an example link"
                        f" (示例链接) — put the real one, or delete the channel {channel.name!r}:"
                        " config channels are created in WeCom when serve or worker starts"
                    )
    return found


def _env_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Overlay `TAGBOT_SECTION__KEY=value` variables onto the parsed TOML.

    Return the merged mapping and, by dotted key, the variable each override came from.
    """
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    sources: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        sources[".".join(path)] = name
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = _env_value(path, value)
    return merged, sources


def _field_annotation(path: list[str]) -> Any:
    """Return the type Settings declares at a dotted key path, or None past a model's fields."""
    model: Any = Settings
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = info.annotation
    return model


def _env_value(path: list[str], value: str) -> Any:
    """Read a list key from one variable, comma-separated: `TAGBOT_CONSOLE__ADMINS=zhangsan,lisi`.

    Userids and networks never contain a comma, and a container is configured from its
    environment alone, so `trusted_proxies`, `admins` and `viewers` must be settable there.
    """
    if _field_annotation(path) == tuple[str, ...]:
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def _with_source(problem: str, env_sources: Mapping[str, str], file_label: str | None) -> str:
    """Append where a problem's value came from: an environment variable or the file."""
    # A multi-line problem (a rule with its caret) gets the note on its first line.
    first, newline, rest = problem.partition("\n")
    key, sep, reason = first.partition(": ")
    if not sep:
        return problem
    note = None
    for source_key, variable in env_sources.items():
        if key == source_key or key.startswith((source_key + ".", source_key + "[")):
            note = f"[from {variable}]"
            break
    else:
        if file_label is None:
            return problem
        if file_label == ENV_ONLY:
            note = f"[set {_env_name(key)}: `--config {ENV_ONLY}` reads no file]"
            return f"{first} {note}{newline}{rest}"
        if reason == "is required" and "[" not in key:
            note = f"[neither in {file_label} nor {_env_name(key)}]"
        else:
            note = f"[in {file_label}]"
    return f"{first} {note}{newline}{rest}"


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
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    source: str | None = None,
) -> Settings:
    """Validate an already-parsed config (plus environment overrides) into Settings.

    `source` names the file the mapping was read from; problems then say whether a value
    came from it or from an environment variable.
    """
    merged, env_sources = _env_overrides(dict(data), os.environ if environ is None else environ)
    placeholders = _placeholder_problems(merged)

    def refuse(problems: list[str]) -> ConfigError:
        return ConfigError([_with_source(p, env_sources, source) for p in problems])

    def with_placeholders(problems: list[str]) -> list[str]:
        # A key already refused for its shape needs no second line.
        refused = {p.partition(": ")[0] for p in problems}
        return problems + [p for p in placeholders if p.partition(": ")[0] not in refused]

    try:
        settings = Settings.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise refuse(with_placeholders(_format_errors(exc))) from None
    problems = with_placeholders(_cross_checks(settings))
    if problems:
        raise refuse(problems)
    return settings


def resolve_config_path(path: str | os.PathLike[str] | None) -> Path:
    """Pick the config file: the explicit path, else $TAGBOT_CONFIG, else ./config.toml."""
    if path:
        return Path(path)
    return Path(os.environ.get("TAGBOT_CONFIG") or "config.toml")


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the config file; raise ConfigError listing every problem.

    The path `env` reads no file: every key then comes from `TAGBOT_*` variables (containers).
    """
    config_path = resolve_config_path(path)
    if str(config_path) == ENV_ONLY:
        return settings_from_mapping({}, environ, source=ENV_ONLY)
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
    settings = settings_from_mapping(data, environ, source=str(config_path))
    return _anchor_sqlite(settings, Path(os.path.abspath(config_path)).parent)


def _anchor_sqlite(settings: Settings, folder: Path) -> Settings:
    """Read a relative SQLite path from the config file's folder, not the working directory.

    `cd sub && tagbot --config ../config.toml ...` must open the same file as the config's
    own folder does (before, it opened sub/tagbot.db, a new empty file).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from bot.db.session import sqlite_file

    url = settings.database.url
    try:
        path = sqlite_file(url)
    except ArgumentError:  # not a URL SQLAlchemy reads: connecting will say so
        return settings
    if path is None or path.is_absolute():
        return settings
    anchored = make_url(url).set(database=str(folder / path))
    database = settings.database.model_copy(
        update={"url": anchored.render_as_string(hide_password=False)}
    )
    return settings.model_copy(update={"database": database})
