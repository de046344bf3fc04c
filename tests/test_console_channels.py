"""The console's 渠道活码 pages with the Flask client, against the database and the simulator."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import delete, func, select

from bot.channels import live_codes
from bot.config import DimensionSettings
from bot.db import Database
from bot.db.models import (
    Channel,
    ChannelDay,
    ChannelTierMix,
    ConsoleAudit,
    Customer,
    FollowRelation,
    Order,
    TierAssignment,
)
from bot.db.types import utcnow
from bot.reports import channel_pages, channel_stats
from bot.rules.dimension import load_dimensions
from bot.sync import run_sync
from bot.tiering import channel_mix
from bot.tiering.run import retier
from handlers.app import create_app
from tests.support.console import (
    DIMENSION,
    HOSTILE,
    console_settings,
    csrf_of,
    seed_overview,
    sign_in_with_token,
    sign_in_with_wecom,
)
from wecom_sim import Simulator

SHANGHAI = ZoneInfo("Asia/Shanghai")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def console(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    """The console on the simulator, whose corp has alice, bob and the console's members."""
    for userid, name in (("boss", "老板"), ("watcher", "观察员"), ("alice", "Alice")):
        simulator.add_staff(userid, name)
    simulator.add_staff("bob", "鲍勃")
    app = create_app(console_settings(db_url, simulator))
    yield app
    app.extensions["tagbot"].close()


@pytest.fixture
def admin(console: Flask) -> FlaskClient:
    web = console.test_client()
    assert sign_in_with_token(web).status_code == 303
    return web


def _synced(console: Flask) -> None:
    rt = console.extensions["tagbot"]
    run_sync(db=rt.db, wecom=rt.wecom)


def _row(page: str, channel_id: int) -> str:
    found = re.search(rf'<tr data-channel="{channel_id}">(.*?)</tr>', page, re.S)
    assert found, f"no row for channel {channel_id}"
    return found.group(1)


def _cell(row: str, key: str) -> str:
    found = re.search(rf'data-key="{key}">(.*?)</(?:td|span)>', row, re.S)
    assert found, f"no cell {key}"
    return re.sub(r"<[^>]+>", " ", found.group(1)).split()[0]


def _form(web: FlaskClient, path: str) -> str:
    page = web.get(path)
    assert page.status_code == 200
    return csrf_of(page.get_data(as_text=True))


def _create(web: FlaskClient, **fields: Any) -> Any:
    data = {"csrf_token": _form(web, "/admin/channels/new"), "staff": "alice", **fields}
    return web.post("/admin/channels/new", data=data)


def _channel(db: Database, name: str) -> Channel | None:
    with db.read() as session:
        return session.scalars(select(Channel).where(Channel.name == name)).one_or_none()


def _ways_by_state(simulator: Simulator) -> dict[str, Any]:
    return {w.state: w for w in simulator.contact_ways.values()}


# --- the list -----------------------------------------------------------------------


def test_a_fresh_install_shows_what_to_do_next(admin: FlaskClient) -> None:
    page = admin.get("/admin/channels")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'id="empty-state"' in text
    assert "tagbot sync" in text
    assert "新建渠道活码" in text
    assert 'id="qr-zip"' not in text
    assert admin.get("/admin/channels/qr.zip").status_code == 404


def test_the_list_shows_the_rollups_counts_and_the_tier_mix_of_each_channel(
    admin: FlaskClient, db: Database
) -> None:
    seeded = seed_overview(db, now=utcnow(), tz=SHANGHAI)
    channel_stats.rollup(db, tz=SHANGHAI, orders=True)
    with db.read() as session:
        channel = session.scalars(select(Channel)).one()
        people = session.scalar(
            select(func.count(func.distinct(FollowRelation.customer_id))).where(
                FollowRelation.channel_id == channel.id
            )
        )
        tiers = dict(
            session.execute(
                select(TierAssignment.tier, func.count())
                .where(TierAssignment.dimension == "value")
                .group_by(TierAssignment.tier)
            ).all()
        )
    page = admin.get("/admin/channels")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    row = _row(text, channel.id)
    assert "门店码" in row
    assert _cell(row, "customers") == str(people) == "7"
    assert _cell(row, "added_today") == str(seeded.added_today)
    assert _cell(row, "lost_by_customer") == str(seeded.lost_by_customer)
    assert _cell(row, "lost_by_staff") == str(seeded.lost_by_staff)
    assert _cell(row, "net") == "0"  # 2 added, 2 lost
    # Customers 2 and 3 paid (50 yuan each) after their add; 0 and 1 were added after paying.
    assert _cell(row, "conversion") == f"{2 / 7 * 100:.1f}%"
    assert _cell(row, "revenue") == "¥100.00"
    mix = dict(re.findall(r'data-tier="([^"]+)" data-customers="(\d+)"', row))
    assert mix == {
        "高价值": str(tiers["高价值"]),
        "普通": str(tiers["普通"]),
        "无层级": str(7 - sum(tiers.values())),
    }
    assert list(mix) == ["高价值", "普通", "无层级"]  # the dimension's order, 无层级 last
    assert 'id="quality-legend"' in text
    assert text.count("ⓘ") >= 8
    assert admin.get("/admin/channels?dimension=nope").status_code == 404


def test_the_tier_mix_follows_a_new_retier_after_the_rollup(
    admin: FlaskClient, db: Database
) -> None:
    seed_overview(db, now=utcnow(), tz=SHANGHAI)
    with db.read() as session:
        channel_id = session.scalars(select(Channel.id)).one()
    first = dict(
        re.findall(
            r'data-tier="([^"]+)" data-customers="(\d+)"',
            _row(admin.get("/admin/channels").get_data(as_text=True), channel_id),
        )
    )
    with db.write() as session:
        session.execute(
            TierAssignment.__table__.update()
            .where(TierAssignment.tier == "普通")
            .values(tier="高价值")
        )
    channel_stats.rollup(db, tz=SHANGHAI, now=utcnow() + timedelta(seconds=1))
    second = dict(
        re.findall(
            r'data-tier="([^"]+)" data-customers="(\d+)"',
            _row(admin.get("/admin/channels").get_data(as_text=True), channel_id),
        )
    )
    assert first["高价值"] == "1"
    assert first["普通"] == "3"
    assert second["高价值"] == "4"
    assert "普通" not in second


# --- a channel's page and its export ------------------------------------------------


def test_a_channels_page_shows_its_days_and_the_xlsx_holds_the_same(
    admin: FlaskClient, db: Database
) -> None:
    seed_overview(db, now=utcnow(), tz=SHANGHAI)
    with db.read() as session:
        channel_id = session.scalars(select(Channel.id)).one()
        days = {
            d.day.isoformat(): d
            for d in session.scalars(select(ChannelDay).where(ChannelDay.channel_id == channel_id))
        }
    page = admin.get(f"/admin/channels/{channel_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'data-chart="trend"' in text
    assert 'id="chart-data"' in text
    shown = re.findall(
        r'<tr data-day="([\d-]+)"><td class="time">[^<]+</td>'
        r'<td class="num">(\d+)</td><td class="num">(\d+)</td><td class="num">(\d+)</td>',
        text,
    )
    assert len(shown) == 30
    for day, added, by_customer, by_staff in shown:
        row = days.get(day)
        want = (row.added, row.lost_by_customer, row.lost_by_staff) if row else (0, 0, 0)
        assert (int(added), int(by_customer), int(by_staff)) == want
    assert sum(int(a) for _, a, _, _ in shown) == sum(d.added for d in days.values())

    export = admin.get(f"/admin/channels/{channel_id}/export.xlsx")
    assert export.status_code == 200
    assert "filename*=UTF-8''" in export.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(export.data)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == (
        "日期",
        "新增",
        "流失·客户删员工",
        "流失·员工删客户",
        "流失·其他",
        "流失合计",
        "净增",
    )
    assert [(r[0], r[1], r[2], r[3]) for r in rows[1:]] == [
        (d, int(a), int(c), int(s)) for d, a, c, s in shown
    ]
    assert admin.get("/admin/channels/999999").status_code == 404


# --- create, edit, delete through the simulator --------------------------------------


def test_an_admin_creates_edits_and_deletes_a_channel_in_wecom_with_an_audit(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    _synced(console)
    made = _create(
        admin,
        name="春季海报",
        tags="来源/春季海报",
        create_tags="1",
        welcome="你好 {name}",
        daily_cap="20",
    )
    assert made.status_code == 303, made.get_data(as_text=True)
    channel = _channel(db, "春季海报")
    assert channel is not None
    assert channel.source == "console"
    way = _ways_by_state(simulator)[channel.state]
    assert (way.user, way.config_id) == (["alice"], channel.config_id)
    assert "春季海报" in simulator.tag_catalogue()["来源"]
    page = admin.get(made.headers["Location"]).get_data(as_text=True)
    assert "渠道活码已创建" in page
    assert "你好 {name}" in page

    token = _form(admin, f"/admin/channels/{channel.id}/edit")
    edited = admin.post(
        f"/admin/channels/{channel.id}/edit",
        data={
            "csrf_token": token,
            "staff": "alice, bob",
            "tags": "来源/春季海报",
            "welcome": "你好 {name}",
            "daily_cap": "20",
        },
    )
    assert edited.status_code == 303
    assert edited.headers["Location"].endswith("done=updated-new-qr")  # one member -> two
    after = _channel(db, "春季海报")
    assert after is not None
    assert after.config_id != channel.config_id
    ways = _ways_by_state(simulator)
    assert ways[channel.state].user == ["alice", "bob"]
    assert channel.config_id not in simulator.contact_ways  # the old code is gone

    token = _form(admin, f"/admin/channels/{channel.id}")
    refused = admin.post(
        f"/admin/channels/{channel.id}/delete", data={"csrf_token": token, "confirm": "别的"}
    )
    assert refused.status_code == 422
    assert _channel(db, "春季海报") is not None
    deleted = admin.post(
        f"/admin/channels/{channel.id}/delete", data={"csrf_token": token, "confirm": "春季海报"}
    )
    assert deleted.status_code == 303
    assert _channel(db, "春季海报") is None
    assert channel.state not in _ways_by_state(simulator)

    with db.read() as session:
        entries = session.scalars(
            select(ConsoleAudit)
            .where(ConsoleAudit.action.like("channel_%"))
            .order_by(ConsoleAudit.id)
        ).all()
    assert [(e.action, e.target, e.role) for e in entries] == [
        ("channel_created", "春季海报", "admin"),
        ("channel_updated", "春季海报", "admin"),
        ("channel_deleted", "春季海报", "admin"),
    ]
    created, updated, gone = entries
    assert created.before is None
    assert created.after is not None
    assert created.after["staff"] == ["alice"]
    assert created.after["daily_cap"] == 20
    assert updated.before is not None
    assert updated.after is not None
    assert (updated.before["staff"], updated.after["staff"]) == (["alice"], ["alice", "bob"])
    assert gone.before is not None
    assert gone.before["staff"] == ["alice", "bob"]
    assert gone.after is None
    system = admin.get("/admin/system").get_data(as_text=True)
    assert "创建渠道活码" in system
    assert "删除渠道活码" in system


def test_an_edit_sends_wecom_only_what_changed(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    _synced(console)
    assert _create(admin, name="门店", staff="alice bob").status_code == 303
    channel = _channel(db, "门店")
    assert channel is not None
    calls = dict(simulator.calls)
    token = _form(admin, f"/admin/channels/{channel.id}/edit")
    same = admin.post(
        f"/admin/channels/{channel.id}/edit", data={"csrf_token": token, "staff": "alice, bob"}
    )
    assert same.headers["Location"].endswith("done=same")
    assert simulator.calls == calls  # nothing changed: WeCom not called
    verify = admin.post(
        f"/admin/channels/{channel.id}/edit",
        data={"csrf_token": token, "staff": "alice, bob", "verify": "1"},
    )
    assert verify.headers["Location"].endswith("done=updated")
    way = _ways_by_state(simulator)[channel.state]
    assert (way.skip_verify, way.user) == (False, ["alice", "bob"])


def test_a_viewer_cannot_create_edit_or_delete(
    console: Flask, simulator: Simulator, db: Database
) -> None:
    _synced(console)
    rt = console.extensions["tagbot"]
    live_codes.create(
        live_codes.ChannelSpec(name="门店", staff=("alice",)), db=rt.db, wecom=rt.wecom
    )
    channel = _channel(db, "门店")
    assert channel is not None
    watcher = console.test_client()
    sign_in_with_wecom(watcher, simulator, "watcher")
    page = watcher.get("/admin/channels").get_data(as_text=True)
    assert 'id="new-channel"' not in page
    detail = watcher.get(f"/admin/channels/{channel.id}").get_data(as_text=True)
    assert 'id="edit"' not in detail
    assert 'id="delete"' not in detail
    token = csrf_of(detail)
    assert watcher.get("/admin/channels/new").status_code == 403
    assert watcher.get(f"/admin/channels/{channel.id}/edit").status_code == 403
    for path, data in (
        ("/admin/channels/new", {"name": "偷偷建", "staff": "alice"}),
        (f"/admin/channels/{channel.id}/edit", {"staff": "bob"}),
        (f"/admin/channels/{channel.id}/delete", {"confirm": "门店"}),
    ):
        refused = watcher.post(path, data={"csrf_token": token, **data})
        assert refused.status_code == 403
        assert "只读账号不能修改" in refused.get_data(as_text=True)
    assert len(simulator.contact_ways) == 1
    assert _ways_by_state(simulator)[channel.state].user == ["alice"]
    assert _channel(db, "偷偷建") is None


def test_a_post_without_the_csrf_field_is_refused(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    _synced(console)
    refused = admin.post("/admin/channels/new", data={"name": "无令牌", "staff": "alice"})
    assert refused.status_code == 403
    assert "CSRF" in refused.get_data(as_text=True)
    assert _channel(db, "无令牌") is None
    assert not simulator.contact_ways


def test_a_wecom_refusal_is_shown_on_the_form_and_nothing_is_written(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    _synced(console)
    tags_before = simulator.tag_catalogue()
    simulator.inject_fault("externalcontact/add_contact_way", 84074)
    answer = _create(admin, name="会失败", tags="来源/会失败", create_tags="1", welcome="hi")
    assert answer.status_code == 502
    text = answer.get_data(as_text=True)
    assert 'id="form-errors"' in text
    assert "错误码 84074" in text
    assert "客户联系" in text
    assert 'value="会失败"' in text  # what was typed stays in the form
    assert _channel(db, "会失败") is None
    assert not simulator.contact_ways
    assert simulator.tag_catalogue() == tags_before  # no tag made for a channel that isn't
    with db.read() as session:
        assert not session.scalars(
            select(ConsoleAudit.id).where(ConsoleAudit.action == "channel_created")
        ).first()


def test_unknown_staff_and_unknown_tags_are_refused_precisely(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    before = admin.post(
        "/admin/channels/new",
        data={"csrf_token": _form(admin, "/admin/channels/new"), "name": "x", "staff": "alice"},
    )
    assert before.status_code == 422
    assert "tagbot sync" in before.get_data(as_text=True)  # no staff known yet
    _synced(console)
    staff = _create(admin, name="门店", staff="alice, nobody9")
    assert staff.status_code == 422
    assert "nobody9" in staff.get_data(as_text=True)
    tags = _create(admin, name="门店", tags="来源/没有这个")
    assert tags.status_code == 422
    text = tags.get_data(as_text=True)
    assert "企业微信中没有这些标签：来源/没有这个" in text
    malformed = _create(admin, name="门店", tags="没有斜杠")
    assert malformed.status_code == 422
    assert "组名/标签名" in malformed.get_data(as_text=True)
    cap = _create(admin, name="门店", daily_cap="-3")
    assert cap.status_code == 422
    assert "每日上限" in cap.get_data(as_text=True)
    assert not simulator.contact_ways
    assert _channel(db, "门店") is None


def test_a_hostile_channel_name_stays_text(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    _synced(console)
    assert _create(admin, name=HOSTILE, welcome=HOSTILE).status_code == 303
    channel = _channel(db, HOSTILE)
    assert channel is not None
    for path in ("/admin/channels", f"/admin/channels/{channel.id}"):
        text = admin.get(path).get_data(as_text=True)
        assert HOSTILE not in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text
    answer = admin.get(f"/admin/channels/{channel.id}/qr.png?download=1")
    assert "<" not in answer.headers["Content-Disposition"].split("filename*=")[0]


# --- QR codes -------------------------------------------------------------------------


def test_qr_codes_download_as_png_and_all_of_them_as_a_zip(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    _synced(console)
    for name in ("门店/一号", "门店二号"):
        assert _create(admin, name=name).status_code == 303
    first = _channel(db, "门店/一号")
    assert first is not None
    png = admin.get(f"/admin/channels/{first.id}/qr.png?download=1")
    assert png.status_code == 200
    assert png.mimetype == "image/png"
    assert png.data.startswith(PNG)
    assert png.data == simulator_png(simulator, first.config_id)
    assert "filename*=UTF-8''" in png.headers["Content-Disposition"]
    archive = admin.get("/admin/channels/qr.zip")
    assert archive.status_code == 200
    assert archive.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.data)) as z:
        assert sorted(z.namelist()) == ["门店_一号.png", "门店二号.png"]
        assert all(z.read(n).startswith(PNG) for n in z.namelist())


def simulator_png(simulator: Simulator, config_id: str | None) -> bytes:
    import urllib.request

    way = simulator.contact_ways[str(config_id)]
    with urllib.request.urlopen(way.qr_code) as answer:
        return bytes(answer.read())


def test_a_code_whose_image_cannot_be_fetched_is_named_in_the_zip(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    _synced(console)
    assert _create(admin, name="好的").status_code == 303
    with db.write() as session:
        session.add(Channel(name="没有码", state="nocode", qr_code=""))
    archive = admin.get("/admin/channels/qr.zip")
    with zipfile.ZipFile(io.BytesIO(archive.data)) as z:
        assert sorted(z.namelist()) == ["好的.png", "未能下载.txt"]
        assert "没有码" in z.read("未能下载.txt").decode("utf-8")
    nocode = _channel(db, "没有码")
    assert nocode is not None
    assert admin.get(f"/admin/channels/{nocode.id}/qr.png").status_code == 404


def _mix(db: Database) -> dict[int, dict[str | None, int]]:
    with db.read() as session:
        return channel_pages.channel_quality(session=session, dimension="value")


def test_a_touched_retier_moves_its_customers_in_the_mix_as_a_recount_would(
    db: Database,
) -> None:
    now = utcnow()
    seed_overview(db, now=now, tz=SHANGHAI)
    before = {"高价值": 1, "普通": 3, None: 3}
    assert next(iter(_mix(db).values())) == before
    with db.write() as session:
        moved = session.scalar(select(Customer).where(Customer.external_userid == "wm002"))
        assert moved is not None
        session.add(
            Order(
                order_id="mix-order",
                customer_id=moved.id,
                external_userid=moved.external_userid,
                amount=Decimal(5000),
                paid_at=now - timedelta(hours=1),
                status="paid",
            )
        )
        moved_id = moved.id
    dims = load_dimensions([DimensionSettings.model_validate(DIMENSION)])
    report = retier(db, dims, tz=SHANGHAI.key, as_of=now, customer_ids=[moved_id])
    assert report.transitions == 1  # 普通 → 高价值, read from the kept mix and its move
    after = {"高价值": 2, "普通": 2, None: 3}
    assert next(iter(_mix(db).values())) == after
    with db.read() as session:
        recounted = channel_mix.count(session=session)
    channel_id = next(iter(_mix(db)))
    assert recounted[(channel_id, "value", "高价值")] == 2
    assert recounted[(channel_id, "value", "普通")] == 2


def test_before_any_rollup_or_retier_the_mix_is_counted_in_the_request(db: Database) -> None:
    seed_overview(db, now=utcnow(), tz=SHANGHAI)
    with db.write() as session:
        session.execute(delete(ChannelTierMix))
    assert next(iter(_mix(db).values())) == {"高价值": 1, "普通": 3, None: 3}


def test_a_wecom_refusal_of_an_edit_changes_nothing(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    _synced(console)
    assert _create(admin, name="门店", staff="alice bob", welcome="旧的").status_code == 303
    channel = _channel(db, "门店")
    assert channel is not None
    simulator.inject_fault("externalcontact/update_contact_way", 60111)
    token = _form(admin, f"/admin/channels/{channel.id}/edit")
    answer = admin.post(
        f"/admin/channels/{channel.id}/edit",
        data={"csrf_token": token, "staff": "bob, alice", "welcome": "新的", "verify": "1"},
    )
    assert answer.status_code == 502
    assert "错误码 60111" in answer.get_data(as_text=True)
    after = _channel(db, "门店")
    assert after is not None
    assert (after.welcome_text, after.skip_verify) == ("旧的", True)
    way = _ways_by_state(simulator)[channel.state]
    assert (way.user, way.skip_verify) == (["alice", "bob"], True)
    with db.read() as session:
        actions = session.scalars(select(ConsoleAudit.action)).all()
    assert "channel_updated" not in actions
