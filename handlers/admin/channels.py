"""The console's 渠道活码 pages: the list with 渠道质量, a channel's page, create/edit/delete, QR."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from flask import Response, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bot.channels import group_codes, live_codes, qr_images
from bot.console import audit
from bot.console.access import ADMIN
from bot.errors import NotFoundError, ValidationError, WeComError
from bot.reports import channel_export, channel_pages, channel_stats
from bot.reports.definitions import define
from bot.tags.catalogue import TagPath
from handlers import throttle
from handlers.admin import guard
from handlers.admin.blueprint import bp
from handlers.context import runtime

guard.NAV_CHILDREN["admin.channels"] |= {
    "admin.channel",
    "admin.channel_new",
    "admin.channel_create",
    "admin.channel_edit",
    "admin.channel_update",
}

RANGES = (7, channel_pages.TREND_DAYS)  # 近7天, 近30天
# The trend's lines: a staff code's adds and losses, a group code's joins and leaves.
STAFF_SERIES = (
    ("新增", "added"),
    ("客户删员工", "lost_by_customer"),
    ("员工删客户", "lost_by_staff"),
    ("净增", "net"),
)
GROUP_SERIES = (("入群", "added"), ("主动退群", "lost_by_customer"), ("被移出", "lost_by_staff"))
_SPLIT = re.compile(r"[\s,，、;；]+")
# What WeCom's refusals mean for the operator (doc 90313); others show WeCom's own text.
WECOM_REASONS = {
    60111: "成员不存在或未激活",
    84074: "没有客户联系权限：请在企业微信管理后台把应用加入“客户联系 → 可调用接口的应用”",
    41044: "企业微信中找不到这个活码（可能已在管理后台删除）",
    41054: "成员未激活或未开通客户联系",
    40098: "成员尚未实名认证",
    -2: "连不上企业微信（网络错误或超时）",
}


def _today() -> Any:
    return channel_stats.local_today(runtime().settings.tz)


_GONE = "这个渠道活码不存在，可能已被删除。"


def _page(template: str, **context: Any) -> str:
    """Render a page with the metrics' definitions and the banner of the change just made."""
    return render_template(template, define=define, done=request.args.get("done", ""), **context)


def _channel_or_404(channel_id: int) -> channel_pages.ChannelConfig:
    with runtime().db.read() as session:
        try:
            return channel_pages.channel_config(channel_id, session=session)
        except NotFoundError:
            abort(404, description=_GONE)


def _report_or_404(channel_id: int) -> channel_pages.ChannelReport:
    with runtime().db.read() as session:
        try:
            return channel_pages.channel_report(channel_id, session=session, today=_today())
        except NotFoundError:
            abort(404, description=_GONE)


def _record(action: str, target: str, before: Any, after: Any) -> None:
    web = guard.current()
    assert web is not None  # the guard let only a signed-in 管理员 post
    rt = runtime()
    with rt.db.write() as session:
        audit.record(
            session=session,
            actor=web.actor,
            role=web.role,
            action=action,
            target=target,
            before=before,
            after=after,
            address=throttle.client_address(rt.settings.server),
        )


def wecom_message(exc: WeComError) -> str:
    """Say in Chinese what WeCom refused, with its code."""
    reason = WECOM_REASONS.get(exc.errcode, exc.errmsg or "未知错误")
    return f"企业微信拒绝了这次操作（错误码 {exc.errcode}：{reason}），没有做任何修改。"


# --- the list ---------------------------------------------------------------------


@bp.get("/channels", endpoint="channels")
def channel_list() -> ResponseReturnValue:
    """渠道活码: every live code with its counts and 渠道质量 for a chosen dimension."""
    rt = runtime()
    dimensions = [d for d in rt.settings.tiering.dimensions if d.tiers]
    names = [d.name for d in dimensions]
    chosen = request.args.get("dimension") or (names[0] if names else None)
    if chosen is not None and chosen not in names:
        abort(404, description=f"没有名为 {chosen} 的分层维度。")
    order = next((tuple(t.tag for t in d.tiers) for d in dimensions if d.name == chosen), ())
    with rt.db.read() as session:
        page = channel_pages.channel_list(
            session=session, today=_today(), dimension=chosen, tier_order=order
        )
    return _page("admin/channels.html", page=page, dimensions=dimensions, chosen=chosen)


# --- a channel's page -------------------------------------------------------------


@bp.get("/channels/<int:channel_id>", endpoint="channel")
def channel_page(channel_id: int) -> ResponseReturnValue:
    """A channel's page: totals, the trend, the 数据报表 table, its settings and QR code."""
    report = _report_or_404(channel_id)
    days = report.days
    charts = {
        "trend": {
            "kind": "line",
            "categories": [d.day.strftime("%m-%d") for d in days],
            "series": [
                {"name": name, "values": [getattr(d, key) for d in days]}
                for name, key in (GROUP_SERIES if report.config.is_group else STAFF_SERIES)
            ],
            "range": RANGES[0],
        }
    }
    return _page("admin/channel.html", report=report, charts=charts, ranges=RANGES)


@bp.get("/channels/<int:channel_id>/export.xlsx", endpoint="channel_export")
def channel_export_xlsx(channel_id: int) -> ResponseReturnValue:
    """The channel's 数据报表 (last 30 days) as .xlsx."""
    report = _report_or_404(channel_id)
    name = f"渠道数据报表-{qr_images.file_name(report.config.name)}.xlsx"
    return Response(
        channel_export.report_xlsx(report),
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": _attachment(name, "channel-report.xlsx")},
    )


def _attachment(name: str, ascii_name: str) -> str:
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


# --- QR images --------------------------------------------------------------------


@bp.get("/channels/<int:channel_id>/qr.png", endpoint="channel_qr")
def channel_qr(channel_id: int) -> ResponseReturnValue:
    """The live code's QR image (fetched from WeCom once); ?download=1 to save it."""
    config = _channel_or_404(channel_id)
    if not config.qr_code:
        abort(404, description="这个渠道还没有二维码（企业微信中没有对应的活码）。")
    try:
        image = qr_images.qr_png(runtime().wecom, config.qr_code)
    except WeComError:
        abort(502, description="暂时无法从企业微信下载二维码，请稍后重试。")
    headers = {"Cache-Control": "private, max-age=3600"}
    if request.args.get("download"):
        name = f"{qr_images.file_name(config.name)}.png"
        headers["Content-Disposition"] = _attachment(name, f"channel-{channel_id}.png")
    return Response(image, mimetype="image/png", headers=headers)


@bp.get("/channels/qr.zip", endpoint="channel_qr_zip")
def channel_qr_zip() -> ResponseReturnValue:
    """Every live code's QR image in one zip, <渠道名>.png each."""
    rt = runtime()
    with rt.db.read() as session:
        configs = channel_pages.all_configs(session=session)
    if not configs:
        abort(404, description="还没有渠道活码，没有可下载的二维码。")
    made = qr_images.qr_zip(rt.wecom, [(c.name, c.qr_code) for c in configs])
    return Response(
        made.data,
        mimetype="application/zip",
        headers={"Content-Disposition": _attachment("渠道活码二维码.zip", "channel-qr-codes.zip")},
    )


# --- create, edit, delete ---------------------------------------------------------


@dataclass
class ChannelForm:
    """What the create/edit form holds, as typed."""

    name: str = ""
    state: str = ""
    staff: str = ""
    backup: str = ""
    tags: str = ""
    welcome: str = ""
    daily_cap: str = ""
    verify: bool = False
    create_tags: bool = False
    groups: str = ""  # a group code's chat ids
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_request(cls) -> ChannelForm:
        f = request.form
        return cls(
            name=f.get("name", "").strip(),
            state=f.get("state", "").strip(),
            staff=f.get("staff", ""),
            backup=f.get("backup", ""),
            tags=f.get("tags", ""),
            welcome=f.get("welcome", "").replace("\r\n", "\n"),
            daily_cap=f.get("daily_cap", "").strip(),
            verify=f.get("verify") == "1",
            create_tags=f.get("create_tags") == "1",
            groups=f.get("groups", ""),
        )

    @classmethod
    def from_config(cls, c: channel_pages.ChannelConfig) -> ChannelForm:
        return cls(
            name=c.name,
            state=c.state,
            staff=", ".join(c.staff),
            backup=", ".join(c.backup),
            tags="\n".join(c.tags),
            welcome=c.welcome,
            daily_cap="" if c.daily_cap is None else str(c.daily_cap),
            verify=not c.skip_verify,
            groups=", ".join(c.groups),
        )

    def users(self, text: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(u for u in _SPLIT.split(text) if u))

    def tag_paths(self) -> tuple[TagPath, ...]:
        lines = [t.strip() for t in re.split(r"[\n,，]+", self.tags)]
        return tuple(dict.fromkeys(TagPath.parse(t) for t in lines if t))

    def cap(self) -> int | None:
        if not self.daily_cap:
            return None
        if not self.daily_cap.isdigit() or int(self.daily_cap) < 1:
            raise ValidationError(f"每日上限须为正整数，而不是 {self.daily_cap!r}")
        return int(self.daily_cap)


def _check_people_and_tags(
    form: ChannelForm, staff: tuple[str, ...] | None, tags: Sequence[TagPath]
) -> None:
    """Refuse members the last sync did not list and, unless asked, tags WeCom lacks."""
    with runtime().db.read() as session:
        if staff is not None:
            live_codes.check_staff_known(staff, session=session)
        unknown = channel_pages.unknown_tags(tags, session=session) if tags else []
    if unknown and not form.create_tags:
        raise ValidationError(
            "企业微信中没有这些标签："
            + "、".join(str(p) for p in unknown)
            + "。请检查拼写，或勾选“在企业微信中新建不存在的标签”。"
        )


def _form_page(
    form: ChannelForm, *, config: channel_pages.ChannelConfig | None, status: int = 200
) -> ResponseReturnValue:
    with runtime().db.read() as session:
        tags = channel_pages.known_tags(session=session)
        staff = channel_pages.known_staff(session=session)
    return (
        render_template(
            "admin/channel_form.html",
            form=form,
            config=config,
            known_tags=tags,
            known_staff=staff,
        ),
        status,
    )


def _failed(
    form: ChannelForm, exc: Exception, config: channel_pages.ChannelConfig | None
) -> ResponseReturnValue:
    if isinstance(exc, WeComError):
        form.errors.append(wecom_message(exc))
        return _form_page(form, config=config, status=502)
    form.errors.append(str(exc))
    return _form_page(form, config=config, status=422)


def _viewer_refused() -> ResponseReturnValue | None:
    web = guard.current()
    if web is not None and web.role != ADMIN:
        return guard.refuse(
            403, "只读账号不能修改", "你是只读账号，只能查看渠道活码，不能新建或修改。"
        )
    return None


@bp.get("/channels/new", endpoint="channel_new")
def channel_new() -> ResponseReturnValue:
    """The form to create a live code (管理员)."""
    return _viewer_refused() or _form_page(ChannelForm(), config=None)


@bp.post("/channels/new", endpoint="channel_create")
def channel_create() -> ResponseReturnValue:
    """Create a live code in WeCom and the channel (the service the CLI uses)."""
    rt = runtime()
    form = ChannelForm.from_request()
    if form.users(form.groups):
        return _create_group_code(form)
    try:
        spec = live_codes.check_spec(
            live_codes.ChannelSpec(
                name=form.name,
                staff=form.users(form.staff),
                tags=form.tag_paths(),
                welcome=form.welcome,
                state=form.state or None,
                daily_cap=form.cap(),
                backup=form.users(form.backup),
                skip_verify=not form.verify,
            )
        )
        _check_people_and_tags(form, spec.staff + spec.backup, spec.tags)
        live_codes.create(spec, db=rt.db, wecom=rt.wecom, source="console", tz=rt.settings.tz)
    except (ValidationError, NotFoundError, WeComError) as exc:
        return _failed(form, exc, None)
    with rt.db.read() as session:
        created = channel_pages.config_named(spec.name, session=session)
    _record("channel_created", created.name, None, created.audit())
    return redirect(url_for("admin.channel", channel_id=created.id, done="created"), code=303)


def _create_group_code(form: ChannelForm) -> ResponseReturnValue:
    """Create a group live code (群活码): a 加入群聊 join way to the form's groups."""
    rt = runtime()
    try:
        if form.users(form.staff) or form.users(form.backup) or form.welcome or form.daily_cap:
            raise ValidationError(
                "群活码没有接待成员、欢迎语、每日上限：请留空这几项，或清空客户群。"
            )
        spec = group_codes.check_spec(
            group_codes.GroupCodeSpec(
                name=form.name,
                chat_ids=form.users(form.groups),
                tags=form.tag_paths(),
                state=form.state or None,
            )
        )
        _check_people_and_tags(form, None, spec.tags)
        group_codes.create(spec, db=rt.db, wecom=rt.wecom, source="console", tz=rt.settings.tz)
    except (ValidationError, NotFoundError, WeComError) as exc:
        return _failed(form, exc, None)
    with rt.db.read() as session:
        created = channel_pages.config_named(spec.name, session=session)
    _record("channel_created", created.name, None, created.audit())
    return redirect(url_for("admin.channel", channel_id=created.id, done="created"), code=303)


def _update_group_code(
    form: ChannelForm, before: channel_pages.ChannelConfig
) -> ResponseReturnValue:
    """Change a group code's groups and tags (the join way keeps its QR code)."""
    rt = runtime()
    try:
        groups, tags = form.users(form.groups), form.tag_paths()
        changes: dict[str, Any] = {}
        if groups != before.groups:
            changes["chat_ids"] = groups
        if {str(t) for t in tags} != set(before.tags):
            changes["tags"] = list(tags)
        _check_people_and_tags(form, None, changes.get("tags", ()))
        if not changes:
            return redirect(url_for("admin.channel", channel_id=before.id, done="same"), code=303)
        group_codes.update(before.name, db=rt.db, wecom=rt.wecom, tz=rt.settings.tz, **changes)
    except (ValidationError, NotFoundError, WeComError) as exc:
        return _failed(form, exc, before)
    after = _channel_or_404(before.id)
    _record("channel_updated", after.name, before.audit(), after.audit())
    return redirect(url_for("admin.channel", channel_id=before.id, done="updated"), code=303)


@bp.get("/channels/<int:channel_id>/edit", endpoint="channel_edit")
def channel_edit(channel_id: int) -> ResponseReturnValue:
    """The form to change a live code (管理员)."""
    config = _channel_or_404(channel_id)
    return _viewer_refused() or _form_page(ChannelForm.from_config(config), config=config)


def _changes(form: ChannelForm, before: channel_pages.ChannelConfig) -> dict[str, Any]:
    """Return the service's keyword arguments for what the form changed, nothing else."""
    changes: dict[str, Any] = {}
    staff, backup = form.users(form.staff), form.users(form.backup)
    if staff != before.staff:
        changes["staff"] = staff
    if backup != before.backup:
        changes["backup"] = backup
    tags = form.tag_paths()
    if {str(t) for t in tags} != set(before.tags):
        changes["tags"] = list(tags)
    if form.welcome != before.welcome:
        changes["welcome_text"] = form.welcome
    cap = form.cap()
    if cap != before.daily_cap:
        changes["daily_cap"] = cap
    if form.verify == before.skip_verify:  # skip_verify is the opposite of verify
        changes["skip_verify"] = not form.verify
    return changes


@bp.post("/channels/<int:channel_id>/edit", endpoint="channel_update")
def channel_update(channel_id: int) -> ResponseReturnValue:
    """Change a live code in WeCom and the channel; only what changed is sent."""
    rt = runtime()
    before = _channel_or_404(channel_id)
    form = ChannelForm.from_request()
    form.name, form.state = before.name, before.state  # neither changes after creation
    if before.is_group:
        return _update_group_code(form, before)
    try:
        changes = _changes(form, before)
        staff = None
        if "staff" in changes or "backup" in changes:
            staff = changes.get("staff", before.staff) + changes.get("backup", before.backup)
        _check_people_and_tags(form, staff, changes.get("tags", ()))
        if not changes:
            return redirect(url_for("admin.channel", channel_id=channel_id, done="same"), code=303)
        _, new_qr = live_codes.update(
            before.name, db=rt.db, wecom=rt.wecom, tz=rt.settings.tz, **changes
        )
    except (ValidationError, NotFoundError, WeComError) as exc:
        return _failed(form, exc, before)
    after = _channel_or_404(channel_id)
    _record("channel_updated", after.name, before.audit(), after.audit())
    done = "updated-new-qr" if new_qr else "updated"
    return redirect(url_for("admin.channel", channel_id=channel_id, done=done), code=303)


@bp.post("/channels/<int:channel_id>/delete", endpoint="channel_delete")
def channel_delete(channel_id: int) -> ResponseReturnValue:
    """Delete the live code in WeCom and the channel (its printed QR codes stop working)."""
    rt = runtime()
    before = _channel_or_404(channel_id)
    if request.form.get("confirm") != before.name:
        return render_template(
            "admin/error.html",
            title="没有删除",
            message="请在确认框中输入渠道名称后再删除。",
        ), 422
    try:
        live_codes.delete(before.name, db=rt.db, wecom=rt.wecom)
    except WeComError as exc:
        return render_template(
            "admin/error.html", title="删除失败", message=wecom_message(exc)
        ), 502
    except NotFoundError:
        abort(404, description=_GONE)
    _record("channel_deleted", before.name, before.audit(), None)
    return redirect(url_for("admin.channels", done="deleted"), code=303)
