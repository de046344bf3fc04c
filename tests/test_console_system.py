"""The console's 系统 page with the Flask client: each section against the database, replays."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bot import job_runs
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import (
    ConsoleAudit,
    InboxEvent,
    JobRun,
    OutboxOperation,
    OutboxTagChange,
    Staff,
    Tag,
    TagGroup,
)
from bot.db.types import utcnow
from bot.runtime import Runtime
from bot.sync import run_sync
from handlers.app import create_app
from jobs.background import Background
from jobs.specs import ScheduledSpec
from tests.support.console import HOSTILE, console_config, csrf_of, sign_in_with_token
from tests.support.console import sign_in_with_wecom as wecom_sign_in
from wecom_sim import Simulator


def _app(db_url: str, simulator: Simulator, **extra: Any) -> Flask:
    for userid in ("boss", "watcher"):
        simulator.add_staff(userid)
    cfg = console_config(db_url, simulator)
    for section, values in extra.items():
        cfg.setdefault(section, {})
        if isinstance(values, dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    return create_app(settings_from_mapping(cfg, environ={}))


@pytest.fixture
def console(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    app = _app(db_url, simulator)
    yield app
    app.extensions["tagbot"].close()


@pytest.fixture
def admin(console: Flask) -> FlaskClient:
    client = console.test_client()
    assert sign_in_with_token(client).status_code == 303
    return client


def _page(client: FlaskClient) -> str:
    answer = client.get("/admin/system")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def _section(page: str, section_id: str) -> str:
    start = page.index(f'id="{section_id}"')
    end = page.find("<section", start)
    return page[start : end if end > 0 else len(page)]


def _stat(page: str, stat_id: str) -> int:
    found = re.search(rf'id="{stat_id}".*?data-value="(\d+)"', page, re.S)
    assert found, stat_id
    return int(found.group(1))


def _rows(page: str, css_class: str) -> list[str]:
    return re.findall(rf'<tr class="{css_class}".*?</tr>', page, re.S)


def _audits(db: Database, action: str) -> list[ConsoleAudit]:
    with db.read() as session:
        return list(session.scalars(select(ConsoleAudit).where(ConsoleAudit.action == action)))


# --- a fresh install --------------------------------------------------------------


def test_a_fresh_install_shows_every_section_and_what_to_do(admin: FlaskClient) -> None:
    page = _page(admin)
    assert "还没有同步记录" in _section(page, "sync-runs")
    assert "tagbot sync" in _section(page, "sync-runs")
    assert [_stat(page, f"inbox-{s}") for s in ("pending", "processing", "done", "dead")] == [
        0,
        0,
        0,
        0,
    ]
    assert "没有回调死信" in page
    assert "没有写入死信" in page
    jobs = _rows(page, "job")
    assert len(jobs) == 4  # sync, retier, day-population, channel-stats; no campaign scheduled
    assert all("还没有运行过" in row for row in jobs)
    assert 'id="scheduler-none"' in page  # the Flask client runs no scheduler
    assert 'id="config-ok"' in page
    checks = dict(re.findall(r'data-key="(\w+)" data-state="(\w+)"', page))
    assert checks == {
        "agent_id": "ok",
        "secret": "ok",
        "token": "missing",  # never called WeCom yet
        "contact_permission": "manual",  # no sync yet
        "public_url": "missing",
    }
    assert "/sidebar/" in _section(page, "sidebar-check")  # where staff open it
    assert "ⓘ" in _section(page, "jobs")
    assert "ⓘ" in _section(page, "sync-runs")


# --- sync runs and scheduled jobs ------------------------------------------------------


def test_sync_runs_show_their_outcome_and_counts_from_the_database(
    console: Flask, admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    rt: Runtime = console.extensions["tagbot"]
    for i in range(3):
        simulator.add_relation("boss", name=f"老客户{i}")
    report = job_runs.run_recorded(
        db, "sync", job_runs.MANUAL, lambda: run_sync(db=db, wecom=rt.wecom)
    )

    def broken() -> None:
        raise RuntimeError(f"WeCom down {HOSTILE}")

    with pytest.raises(RuntimeError):
        job_runs.run_recorded(db, "sync", job_runs.SCHEDULE, broken)
    page = _page(admin)
    rows = _rows(page, "sync-run")
    assert len(rows) == 2
    failed, ok = rows  # newest first
    assert 'data-outcome="error"' in failed
    assert "WeCom down" in failed
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in failed
    assert 'data-outcome="ok"' in ok
    assert "手动" in ok
    assert f'data-value="{report.staff}"' in ok
    assert f"{report.customers_added} / {report.customers_updated}" in ok
    assert report.customers_added == 3
    assert f'data-value="{report.total_calls}"' in ok
    with db.read() as session:
        stored = session.scalars(select(JobRun).order_by(JobRun.id)).all()
    assert [(r.job, r.trigger, r.outcome) for r in stored] == [
        ("sync", "manual", "ok"),
        ("sync", "schedule", "error"),
    ]
    assert stored[0].summary is not None
    assert stored[0].summary["relations"] == report.relations
    # A sync that worked shows the app may call the 客户联系 APIs; the token was fetched.
    checks = dict(re.findall(r'data-key="(\w+)" data-state="(\w+)"', page))
    assert checks["token"] == "ok"
    assert checks["contact_permission"] == "missing"  # the newest sync failed


@dataclass(frozen=True)
class _Counted:
    customers: int
    names: list[str]


def test_the_scheduler_records_each_jobs_runs_and_the_page_shows_last_and_next(
    console: Flask, admin: FlaskClient, db: Database
) -> None:
    rt: Runtime = console.extensions["tagbot"]
    background = Background(rt)
    assert background.leader.renew()  # this process runs the scheduled jobs

    def fails(_rt: Runtime) -> None:
        raise ValueError("no such dimension")

    ok = ScheduledSpec(
        id="retier", run=lambda _rt: _Counted(7, ["a", "b"]), cron=lambda s: "0 3 * * *"
    )
    assert background.run_if_leader(ok)
    assert background.run_if_leader(ScheduledSpec("channel-stats", fails, lambda s: "* * * * *"))
    with db.read() as session:
        runs = job_runs.latest(["retier", "channel-stats", "sync"], session=session)
    assert set(runs) == {"retier", "channel-stats"}
    assert (runs["retier"].outcome, runs["retier"].trigger) == ("ok", "schedule")
    assert runs["retier"].summary == {"customers": 7, "names": 2}
    assert runs["channel-stats"].outcome == "error"
    assert runs["channel-stats"].error == "ValueError: no such dimension"
    page = _page(admin)
    jobs = {re.search(r'data-job="([^"]+)"', row)[1]: row for row in _rows(page, "job")}  # type: ignore[index]
    assert 'data-outcome="ok"' in jobs["retier"]
    assert "定时" in jobs["retier"]
    assert 'data-outcome="error"' in jobs["channel-stats"]
    assert "no such dimension" in jobs["channel-stats"]
    assert "还没有运行过" in jobs["sync"]
    # The next run comes from the configured cron, in the configured zone.
    tz = rt.settings.tz
    nightly = CronTrigger.from_crontab(rt.settings.tiering.schedule, timezone=tz)
    upcoming = nightly.get_next_fire_time(None, datetime.now(tz))
    assert upcoming is not None
    assert upcoming.strftime("%Y-%m-%d %H:%M") in jobs["retier"]
    owner = re.search(r'id="scheduler-owner".*?<code>([^<]+)</code>', page, re.S)
    assert owner is not None
    assert owner[1] == background.owner
    background.leader.release()


# --- the inbox ---------------------------------------------------------------------


def _inbox(db: Database, *statuses: tuple[str, str | None], days_ago: int = 0) -> list[int]:
    now = utcnow() - timedelta(days=days_ago)
    ids = []
    with db.write() as session:
        for i, (status, error) in enumerate(statuses):
            row = InboxEvent(
                dedup_key=f"k{days_ago}-{i}",
                event="change_external_contact",
                change_type="add_external_contact",
                payload="<xml/>",
                received_at=now - timedelta(minutes=len(statuses) - i),
                status=status,
                attempts=6 if status == "dead" else 1,
                next_attempt_at=now,
                last_error=error,
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
    return ids


def test_the_inbox_counts_by_state_and_lists_dead_letters_with_their_reason(
    admin: FlaskClient, db: Database
) -> None:
    _inbox(
        db,
        ("done", None),
        ("done", None),
        ("pending", None),
        ("ignored", None),
        ("dead", "WeComError 60111: userid not found"),
        ("dead", HOSTILE),
    )
    # Two days old: still waiting and dead ones count, finished ones are past the 24 hours.
    _inbox(db, ("done", None), ("ignored", None), ("pending", None), ("dead", "old"), days_ago=2)
    page = _page(admin)
    counts = {s: _stat(page, f"inbox-{s}") for s in ("pending", "processing", "done", "ignored")}
    assert counts == {"pending": 2, "processing": 0, "done": 2, "ignored": 1}
    assert _stat(page, "inbox-dead") == 3
    assert "24小时内已处理" in page
    dead = _rows(page, "inbox-dead")
    assert len(dead) == 3
    assert "old" in dead[0]  # newest id first
    dead = dead[1:]
    assert "&lt;img src=x onerror=alert(1)&gt;" in dead[0]  # newest first, shown as text
    assert "60111: userid not found" in dead[1]
    assert all("add_external_contact" in row and "重放" in row for row in dead)


def test_an_admin_replays_an_inbox_dead_letter_audited(admin: FlaskClient, db: Database) -> None:
    done, dead = _inbox(db, ("done", None), ("dead", "boom"))
    page = _page(admin)
    answer = admin.post(f"/admin/system/inbox/{dead}/replay", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/admin/system#inbox")
    with db.read() as session:
        row = session.get(InboxEvent, dead)
        assert row is not None
        assert (row.status, row.attempts, row.locked_until) == ("pending", 0, None)
    (entry,) = _audits(db, "inbox_replayed")
    assert (entry.actor, entry.role, entry.target) == ("admin-token", "admin", f"inbox#{dead}")
    assert entry.before == {"status": "dead", "attempts": 6, "error": "boom"}
    assert entry.after == {"status": "pending", "attempts": 0}
    after = _page(admin)
    assert _rows(after, "inbox-dead") == []
    assert "重放回调死信" in _section(after, "audit")
    # Only dead letters: a done event or an unknown id changes nothing.
    token = csrf_of(after)
    refused = admin.post(f"/admin/system/inbox/{done}/replay", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "不是死信" in refused.get_data(as_text=True)
    missing = admin.post("/admin/system/inbox/999999/replay", data={"csrf_token": token})
    assert missing.status_code == 404
    with db.read() as session:
        kept = session.get(InboxEvent, done)
        assert kept is not None
        assert kept.status == "done"
    assert len(_audits(db, "inbox_replayed")) == 1


# --- the outbox --------------------------------------------------------------------


def _tags(db: Database, *names: str) -> dict[str, int]:
    with db.write() as session:
        group = TagGroup(name="来源渠道", wecom_group_id="g1")
        session.add(group)
        session.flush()
        tags = [Tag(group_id=group.id, name=n, wecom_tag_id=f"t-{n}") for n in names]
        session.add_all(tags)
        session.flush()
        return {t.name: t.id for t in tags}


def _op(db: Database, status: str, changes: dict[int, str], error: str | None = None) -> int:
    with db.write() as session:
        op = OutboxOperation(
            kind="mark_tag",
            staff_userid="boss",
            external_userid="wmCustomer1",
            payload={},
            status=status,
            attempts=8 if status == "dead" else 1,
            last_error=error,
            last_errcode=40068 if error else None,
            tag_changes=[OutboxTagChange(tag_id=t, action=a) for t, a in changes.items()],
        )
        session.add(op)
        session.flush()
        return op.id


def test_outbox_dead_letters_show_their_changes_and_replay_keeps_later_writes(
    admin: FlaskClient, db: Database
) -> None:
    tags = _tags(db, "门店", "直播", "老客")
    dead = _op(db, "dead", {tags["门店"]: "add", tags["直播"]: "add"}, "invalid tagid")
    _op(db, "done", {tags["直播"]: "remove"})  # later: 直播 was removed since
    _op(db, "pending", {tags["老客"]: "add"})
    page = _page(admin)
    assert (_stat(page, "outbox-pending"), _stat(page, "outbox-dead")) == (1, 1)
    (row,) = _rows(page, "outbox-dead")
    assert "+来源渠道/直播，+来源渠道/门店" in row
    assert "40068" in row
    assert "invalid tagid" in row
    answer = admin.post(f"/admin/system/outbox/{dead}/replay", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 303
    with db.read() as session:
        op = session.get(OutboxOperation, dead)
        assert op is not None
        assert (op.status, op.attempts) == ("pending", 0)
        kept = session.execute(
            select(OutboxTagChange.tag_id, OutboxTagChange.action).where(
                OutboxTagChange.operation_id == dead
            )
        ).all()
    assert [tuple(k) for k in kept] == [(tags["门店"], "add")]  # the later removal wins
    (entry,) = _audits(db, "outbox_replayed")
    assert entry.target == f"outbox#{dead}"
    assert entry.before == {"status": "dead", "attempts": 8, "error": "invalid tagid"}
    assert entry.after == {"status": "pending", "kept": 1, "dropped": 1}
    assert _stat(_page(admin), "outbox-pending") == 2


def test_a_dead_write_that_later_writes_cover_is_closed_not_sent(
    admin: FlaskClient, db: Database
) -> None:
    tags = _tags(db, "门店")
    dead = _op(db, "dead", {tags["门店"]: "add"}, "system busy")
    _op(db, "done", {tags["门店"]: "remove"})
    token = csrf_of(_page(admin))
    assert (
        admin.post(f"/admin/system/outbox/{dead}/replay", data={"csrf_token": token}).status_code
        == 303
    )
    with db.read() as session:
        op = session.get(OutboxOperation, dead)
        assert op is not None
        assert op.status == "done"
        assert op.done_at is not None
    (entry,) = _audits(db, "outbox_replayed")
    assert entry.after == {"status": "done", "kept": 0, "dropped": 1}
    again = admin.post(f"/admin/system/outbox/{dead}/replay", data={"csrf_token": token})
    assert again.status_code == 409


# --- roles -------------------------------------------------------------------------


def test_a_viewer_sees_dead_letters_but_may_not_replay_them(
    console: Flask, simulator: Simulator, db: Database
) -> None:
    (dead,) = _inbox(db, ("dead", "boom"))
    tags = _tags(db, "门店")
    op = _op(db, "dead", {tags["门店"]: "add"}, "boom")
    watcher = console.test_client()
    wecom_sign_in(watcher, simulator, "watcher")
    page = _page(watcher)
    assert len(_rows(page, "inbox-dead")) == 1
    assert len(_rows(page, "outbox-dead")) == 1
    assert "/replay" not in page
    assert "只读账号不能重放" in page
    token = csrf_of(page)
    for path in (f"/admin/system/inbox/{dead}/replay", f"/admin/system/outbox/{op}/replay"):
        refused = watcher.post(path, data={"csrf_token": token})
        assert refused.status_code == 403
        assert "只读账号不能修改" in refused.get_data(as_text=True)
    with db.read() as session:
        assert session.get(InboxEvent, dead).status == "dead"  # type: ignore[union-attr]
        assert session.get(OutboxOperation, op).status == "dead"  # type: ignore[union-attr]
    assert _audits(db, "inbox_replayed") == []
    assert _audits(db, "outbox_replayed") == []


def test_a_replay_without_the_csrf_field_is_refused(admin: FlaskClient, db: Database) -> None:
    (dead,) = _inbox(db, ("dead", "boom"))
    assert admin.post(f"/admin/system/inbox/{dead}/replay").status_code == 403
    with db.read() as session:
        assert session.get(InboxEvent, dead).status == "dead"  # type: ignore[union-attr]


# --- check-config and the sidebar's self-check -------------------------------------------


def test_config_findings_are_check_configs_and_the_sidebar_checklist_follows_the_config(
    db_url: str, simulator: Simulator, db: Database
) -> None:
    channel = {
        "name": "门店码",
        "staff": ["boss", "ghost"],
        "attachments": [{"type": "link", "title": "福利", "url": "https://example.com/w"}],
    }
    app = _app(
        db_url,
        simulator,
        channels=[channel],
        server={"public_url": "https://bot.brand.cn:8443"},
    )
    try:
        client = app.test_client()
        sign_in_with_token(client)
        page = _page(client)
        config = _section(page, "config")
        # Before a sync the staff cannot be checked: a warning, as check-config says.
        assert re.findall(r'class="config-problem"', config) == []
        warnings = re.findall(r'<li class="config-warning"><code>([^<]+)</code>', config)
        assert len(warnings) == 2
        assert warnings[0].startswith("channels[0].attachments[0].url: https://example.com/w")
        assert "no sync yet" in warnings[1]
        with db.write() as session:
            session.add(Staff(userid="boss", name="老板"))
        config = _section(_page(client), "config")
        problems = re.findall(r'<li class="config-problem"><code>([^<]+)</code>', config)
        assert len(problems) == 1
        assert problems[0].startswith("channels[0].staff: ghost not among")
        checks = dict(re.findall(r'data-key="(\w+)" data-state="(\w+)"', page))
        assert checks["public_url"] == "ok"
        assert checks["trusted_domain"] == checks["toolbar_page"] == "manual"
        sidebar = _section(page, "sidebar-check")
        assert "填 bot.brand.cn，" in sidebar  # the 可信域名: the host alone
        assert "填 bot.brand.cn:8443（含端口" in sidebar  # the login's 授权回调域
        assert "https://bot.brand.cn:8443/sidebar/" in sidebar
        assert "secret" not in sidebar.lower() or "不显示" in sidebar
    finally:
        app.extensions["tagbot"].close()


def test_the_sidebar_ticket_check_fetches_each_ticket_once_and_says_when_wecom_refuses(
    admin: FlaskClient, simulator: Simulator
) -> None:
    page = _section(_page(admin), "sidebar-check")
    assert 'hx-get="/admin/system/sidebar-tickets"' in page
    assert simulator.ticket_fetches == {"corp": 0, "agent": 0}  # the page alone asks nothing
    for _ in range(2):  # the second check answers from the shared store
        answer = admin.get("/admin/system/sidebar-tickets")
        assert answer.status_code == 200
        lines = re.findall(
            r'<li class="ticket-line" data-ok="(\w+)">(.*?)</li>', answer.get_data(as_text=True)
        )
        assert [ok for ok, _ in lines] == ["yes", "yes"]
        assert "企业 jsapi_ticket" in lines[0][1]
        assert "应用 jsapi_ticket" in lines[1][1]
        assert "剩余 1" in lines[0][1]  # 7200 s: 119 or 120 minutes left
    assert simulator.ticket_fetches == {"corp": 1, "agent": 1}


def test_the_sidebar_ticket_check_shows_wecoms_refusal(
    admin: FlaskClient, simulator: Simulator
) -> None:
    simulator.set_ticket_limits(per_hour_corp=0, per_hour_app=0)
    answer = admin.get("/admin/system/sidebar-tickets")
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    assert 'class="ticket-check" data-ok="no"' in body
    assert body.count('data-ok="no"') == 3  # the list and both tickets
    assert simulator.ticket_fetches == {"corp": 0, "agent": 0}


def test_each_job_keeps_only_its_newest_runs(db: Database) -> None:
    now = utcnow()
    with db.write() as session:
        for i in range(5):
            for job in ("channel-stats", "sync"):
                job_runs.record(
                    session=session,
                    job=job,
                    trigger=job_runs.SCHEDULE,
                    started_at=now,
                    finished_at=now + timedelta(seconds=i),
                    outcome=job_runs.OK,
                    summary={"n": i},
                    keep=3,
                )
    with db.read() as session:
        kept = {
            job: [r.summary["n"] for r in job_runs.recent(session=session, job=job)]
            for job in ("channel-stats", "sync")
        }
    assert kept == {"channel-stats": [4, 3, 2], "sync": [4, 3, 2]}
