"""The 系统 page in headless Chromium against the served bot: it renders, numbers, replay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from bot import job_runs
from bot.callbacks import inbox
from bot.db import Database
from bot.db.models import ConsoleAudit, InboxEvent, JobRun
from bot.db.types import utcnow
from tests.support.console import HOSTILE
from tests.support.console_browser import PHONE, Served, Tab, screenshot, sign_in_with_token

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser

REASON = f"WeComError 60111: {HOSTILE}"


@pytest.fixture
def served_db(served: Served) -> Iterator[Database]:
    db = Database(served.db_url)
    yield db
    db.dispose()


@pytest.fixture
def dead_letter(served_db: Database) -> Iterator[int]:
    """A dead callback and a sync run in the served bot's database, removed afterwards."""
    now = utcnow()
    with served_db.write() as session:
        event = InboxEvent(
            dedup_key="browser-system-dead",
            event="change_external_contact",
            change_type="edit_external_contact",
            payload="<xml/>",
            received_at=now,
            status="dead",
            attempts=6,
            next_attempt_at=now + timedelta(days=1),
            last_error=REASON,
        )
        session.add(event)
        job_runs.record(
            session=session,
            job="sync",
            trigger=job_runs.MANUAL,
            started_at=now - timedelta(seconds=7),
            finished_at=now,
            outcome=job_runs.OK,
            summary={"staff": 3, "customers_added": 5, "calls": {"externalcontact/list": 4}},
        )
        session.flush()
        event_id = event.id
    yield event_id
    with served_db.write() as session:  # the other browser modules share this bot
        session.execute(delete(InboxEvent).where(InboxEvent.id == event_id))
        session.execute(delete(JobRun))


def test_the_system_page_renders_what_the_database_holds_and_replays(
    tab: Tab,
    served: Served,
    served_db: Database,
    dead_letter: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = tab.page
    sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/system")
    assert page.inner_text("h1") == "系统"
    day_ago = utcnow() - timedelta(hours=24)
    with served_db.read() as session:
        counts = dict.fromkeys(inbox.STATUSES, 0)
        for status, n in session.execute(
            select(InboxEvent.status, func.count())
            .where(
                InboxEvent.status.in_(("pending", "processing", "dead"))
                | (InboxEvent.next_attempt_at >= day_ago)
            )
            .group_by(InboxEvent.status)
        ):
            counts[status] = n
    for state, n in counts.items():
        assert page.get_attribute(f"#inbox-{state} .stat-value", "data-value") == str(n)
    row = page.locator(f"tr.inbox-dead[data-id='{dead_letter}']")
    assert row.locator(".reason").inner_text() == REASON  # the hostile reason is text
    assert page.locator("#inbox img").count() == 0
    sync = page.locator("tr.sync-run")
    assert sync.count() == 1
    assert "成功" in sync.inner_text()
    assert "手动" in sync.inner_text()
    # `tagbot serve` runs the scheduler: it holds the lease, four jobs have a next run
    # (sync, channel stats, re-tier, the day population).
    assert page.locator("#scheduler-none").count() == 0
    assert ":" in page.inner_text("#scheduler-owner code")
    assert page.locator("tr.job").count() == 4
    assert page.locator("tr.sidebar-check[data-key='agent_id'][data-state='ok']").count() == 1
    assert page.locator("#config-ok").count() == 1
    assert page.locator("#sync-runs .info").count() >= 6  # every column's number is defined
    assert tab.errors == []
    screenshot(page, "system", capsys)

    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    assert page.url.endswith("/admin/system#inbox")
    # Queued again with a fresh attempt budget; the served bot's worker may already have
    # taken it and failed it again (its payload is no event), after one attempt, not six.
    again = page.locator(f"tr.inbox-dead[data-id='{dead_letter}'] td:nth-child(4)")
    assert again.count() == 0 or again.inner_text() == "1"
    assert page.locator(".audit-row[data-action='inbox_replayed']").count() == 1
    with served_db.read() as session:
        audited = session.scalars(
            select(ConsoleAudit).where(ConsoleAudit.action == "inbox_replayed")
        ).all()
    assert [(a.actor, a.target, a.after) for a in audited] == [
        ("admin-token", f"inbox#{dead_letter}", {"status": "pending", "attempts": 0})
    ]
    assert audited[0].before == {"status": "dead", "attempts": 6, "error": REASON}
    assert tab.errors == []


def test_the_system_page_fits_a_phone(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    page.set_viewport_size(PHONE)
    sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/system")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"]  # wide tables scroll inside their own box
    assert tab.errors == []
    screenshot(page, "system-phone", capsys)
