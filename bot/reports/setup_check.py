"""The chat-toolbar sidebar's setup self-check: what is configured and what is not, yet.

What the sidebar needs (wecom-api.md §7.1): the self-built app's AgentId and Secret, a token fetched with them, the 客户联系
permission (a sync that worked proves it), and an HTTPS public address whose host is
the app's 可信域名. What only WeCom's admin console knows is marked to confirm by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import Settings, is_example_url
from bot.db.models import WeComToken
from bot.job_runs import Run
from bot.wecom.tokens import token_key

OK = "ok"
MISSING = "missing"
MANUAL = "manual"  # only WeCom's admin console can tell: confirm there
STATE_LABELS = {OK: "就绪", MISSING: "未就绪", MANUAL: "需在企业微信后台确认"}
SIDEBAR_PATH = "/sidebar/"


@dataclass(frozen=True)
class Check:
    """One item of the checklist."""

    key: str
    label: str
    state: str  # ok | missing | manual
    detail: str

    @property
    def state_label(self) -> str:
        return STATE_LABELS[self.state]


def _public_host(settings: Settings) -> str | None:
    url = settings.server.public_url.strip()
    if not url.startswith("https://") or is_example_url(url):
        return None
    return urlsplit(url).netloc or None


def sidebar_checks(settings: Settings, *, session: Session, last_sync: Run | None) -> list[Check]:
    """Return the sidebar's checklist from the running config and the database (reads only)."""
    w = settings.wecom
    token = session.scalar(
        select(WeComToken.updated_at).where(
            WeComToken.key == token_key(w.corp_id, w.secret.get_secret_value())
        )
    )
    host = _public_host(settings)
    base = settings.server.public_url.rstrip("/")
    checks = [
        Check("agent_id", "自建应用 AgentId", OK if w.agent_id > 0 else MISSING, f"{w.agent_id}"),
        Check(
            "secret",
            "自建应用 Secret",
            OK if w.secret.get_secret_value() else MISSING,
            "已填写（不显示）" if w.secret.get_secret_value() else "[wecom] secret 为空",
        ),
        Check(
            "token",
            "用 Secret 取得 access_token",
            OK if token is not None else MISSING,
            "已成功获取"
            if token is not None
            else "还没有成功调用过企业微信：检查 corp_id 与 secret",
        ),
        Check(
            "contact_permission",
            "客户联系 → 可调用接口的应用",
            OK
            if last_sync is not None and last_sync.outcome == "ok"
            else (MISSING if last_sync is not None else MANUAL),
            "最近一次同步成功，说明应用有客户联系权限"
            if last_sync is not None and last_sync.outcome == "ok"
            else (
                "最近一次同步失败：确认应用已勾选在“可调用接口的应用”中"
                if last_sync is not None
                else "尚未同步：运行 tagbot sync 后可判断"
            ),
        ),
        Check(
            "public_url",
            "对外 HTTPS 地址（[server] public_url）",
            OK if host else MISSING,
            base
            if host
            else "可信域名须为已备案的 HTTPS 域名：在 [server] public_url 填写，如 https://bot.你的域名",
        ),
    ]
    if host:
        checks += [
            Check(
                "trusted_domain",
                "可信域名（应用 → 网页授权及JS-SDK）",
                MANUAL,
                f"填 {urlsplit(base).hostname}，并按提示在域名根目录放置校验文件",
            ),
            Check(
                "redirect_domain",
                "授权回调域（应用 → 企业微信授权登录）",
                MANUAL,
                f"填 {host}（含端口，不带 https://）",
            ),
            Check(
                "toolbar_page",
                "配置到聊天工具栏的页面地址",
                MANUAL,
                f"页面内容选“自定义”，填 {base}{SIDEBAR_PATH}，配置到客户联系聊天工具栏",
            ),
        ]
    return checks
