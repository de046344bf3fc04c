"""Webhook campaigns through the executor, against a real receiver over HTTP.

Batches, signature, retries with backoff and Retry-After, the attempt budget, a crash.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.config import settings_from_mapping
from bot.db.models import CampaignDelivery
from bot.logredact import settings_secrets
from bot.outreach import claims, execute, webhook
from bot.runtime import Runtime
from tests.support import parts
from tests.support.outreach import dispatch_elsewhere, run_status
from tests.support.outreach_runs import (
    WallClock,
    deliveries,
    planned_run,
    run_tasks,
    webhook_config,
    webhook_settings,
)
from tests.support.processes import free_port
from tests.support.waiting import wait_for
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "whsec-3f9a1c7e5b2d4860aa"
CAMPAIGN = "短信唤醒"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET).start()
    yield r
    r.stop()


@pytest.fixture
def rt(db_url: str, receiver: WebhookReceiver) -> Iterator[Runtime]:
    runtime = Runtime(webhook_settings(db_url, receiver.url, secret=SECRET, text="回归礼包已到账"))
    yield runtime
    runtime.close()


def _started(rt: Runtime, treatment: int, *, holdout: int = 0) -> int:
    """Record a planned run and let the executor make its tasks; return the run id."""
    run_id = planned_run(rt, CAMPAIGN, treatment=treatment, holdout=holdout)
    assert execute.prepare_run(run_id, db=rt.db, settings=rt.settings) == "sending"
    return run_id


def _perform(rt: Runtime, run_id: int, clock: WallClock) -> int:
    """Run the executor once over the run's due tasks; return how many it took."""
    return execute.perform_due(**parts.outreach(rt), run_id=run_id, clock=clock)


def test_a_run_goes_out_in_signed_batches_and_is_recorded_per_customer(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    clock = WallClock()
    run_id = planned_run(rt, CAMPAIGN, treatment=1234, holdout=206)
    assert execute.prepare_run(run_id, db=rt.db, settings=rt.settings, clock=clock) == "sending"
    # Again: the run is under way, no task is made twice.
    assert execute.prepare_run(run_id, db=rt.db, settings=rt.settings, clock=clock) == "sending"

    tasks = run_tasks(rt, run_id)
    assert [(t.kind, t.sender, t.batch, t.customers, t.status) for t in tasks] == [
        ("webhook", "", 0, 500, "pending"),
        ("webhook", "", 1, 500, "pending"),
        ("webhook", "", 2, 234, "pending"),
    ]
    before = deliveries(rt, run_id)
    treated = [ext for ext, arm, *_ in before if arm == "treatment"]
    assert len(treated) == 1234
    assert {status for _, arm, status, _, _ in before if arm == "treatment"} == {"queued"}
    assert {status for _, arm, status, _, _ in before if arm == "holdout"} == {"holdout"}

    assert _perform(rt, run_id, clock) == 3
    assert [t.status for t in run_tasks(rt, run_id)] == ["sent"] * 3
    assert run_status(rt, run_id) == "done"

    got = receiver.received
    assert [r.delivery for r in got] == [f"{run_id}-0", f"{run_id}-1", f"{run_id}-2"]
    assert all(r.signature_ok for r in got)
    assert {r.headers["X-Tagbot-Timestamp"] for r in got} == {str(int(clock().timestamp()))}
    bodies = [r.json for r in got]
    assert [len(b["customers"]) for b in bodies] == [500, 500, 234]
    assert [b["batch"] for b in bodies] == [0, 1, 2]
    assert {(b["campaign"], b["run_id"], b["text"]) for b in bodies} == {
        (CAMPAIGN, run_id, "回归礼包已到账")
    }
    assert bodies[0]["sent_at"] == clock().isoformat(timespec="seconds")
    # Every treated customer once, in the stable (delivery) order; no holdout customer.
    sent = [c["external_userid"] for b in bodies for c in b["customers"]]
    assert sent == treated
    first = bodies[0]["customers"][0]
    assert set(first) == {"external_userid", "unionid", "name", "tier", "staff_userid"}
    assert first["tier"] == "高价值"
    assert first["staff_userid"].startswith("staff")

    after = deliveries(rt, run_id)
    assert {(status, sent_at) for _, arm, status, _, sent_at in after if arm == "treatment"} == {
        ("delivered", clock())
    }
    assert {status for _, arm, status, _, _ in after if arm == "holdout"} == {"holdout"}

    # Performing the run again sends nothing.
    clock.advance(3600)
    assert _perform(rt, run_id, clock) == 0
    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id, clock=clock) == "done"
    assert receiver.count() == 3


def test_5xx_is_retried_with_backoff_under_the_same_delivery_key(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    clock = WallClock()
    run_id = _started(rt, 40)
    receiver.fail(503, 2)

    assert _perform(rt, run_id, clock) == 1
    (t,) = run_tasks(rt, run_id)
    assert (t.status, t.attempts, t.attempted_at, t.last_error) == (
        "pending",
        1,
        clock(),
        "HTTP 503: nope",
    )
    # 4 s ± 25 % jitter after the first attempt
    assert clock() + timedelta(seconds=3) <= t.next_attempt_at <= clock() + timedelta(seconds=5)
    # Not due yet: nothing is sent.
    assert _perform(rt, run_id, clock) == 0
    assert receiver.count() == 1
    assert run_status(rt, run_id) == "sending"

    clock.move_to(t.next_attempt_at)
    assert _perform(rt, run_id, clock) == 1
    (t,) = run_tasks(rt, run_id)
    assert (t.status, t.attempts) == ("pending", 2)
    # 16 s ± 25 % after the second
    assert clock() + timedelta(seconds=12) <= t.next_attempt_at <= clock() + timedelta(seconds=20)
    assert {s for _, _, s, _, _ in deliveries(rt, run_id)} == {"queued"}

    clock.move_to(t.next_attempt_at)
    assert _perform(rt, run_id, clock) == 1
    assert [r.answered for r in receiver.received] == [503, 503, 200]
    assert {r.delivery for r in receiver.received} == {f"{run_id}-0"}
    assert all(r.signature_ok for r in receiver.received)
    assert list(receiver.accepted) == [f"{run_id}-0"]
    (t,) = run_tasks(rt, run_id)
    assert (t.status, t.attempts, t.last_error, t.finished_at) == ("sent", 3, None, clock())
    assert {(s, at) for _, _, s, _, at in deliveries(rt, run_id)} == {("delivered", clock())}
    assert run_status(rt, run_id) == "done"


def test_a_4xx_fails_the_batch_at_once_with_the_reason(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    clock = WallClock()
    run_id = _started(rt, 12, holdout=3)
    receiver.fail(400, None, answer=("手机号格式错误;" * 60).encode())

    assert _perform(rt, run_id, clock) == 1
    (t,) = run_tasks(rt, run_id)
    assert (t.status, t.attempts, t.finished_at) == ("failed", 1, clock())
    assert t.last_error == "HTTP 400: " + ("手机号格式错误;" * 60)[:200]
    rows = deliveries(rt, run_id)
    assert {s for _, arm, s, _, _ in rows if arm == "treatment"} == {"failed"}
    assert {s for _, arm, s, _, _ in rows if arm == "holdout"} == {"holdout"}
    assert run_status(rt, run_id) == "failed"

    clock.advance(86400)
    assert _perform(rt, run_id, clock) == 0
    assert receiver.count() == 1


def test_429_waits_at_least_retry_after(rt: Runtime, receiver: WebhookReceiver) -> None:
    clock = WallClock()
    run_id = _started(rt, 5)
    receiver.fail(429, 1, headers={"Retry-After": "120"})
    assert _perform(rt, run_id, clock) == 1
    (t,) = run_tasks(rt, run_id)
    assert t.status == "pending"
    assert t.next_attempt_at == clock() + timedelta(seconds=120)
    clock.advance(119)
    assert _perform(rt, run_id, clock) == 0
    assert receiver.count() == 1
    clock.advance(1)
    assert _perform(rt, run_id, clock) == 1
    assert [t.status for t in run_tasks(rt, run_id)] == ["sent"]
    assert receiver.count() == 2


def test_a_receiver_down_for_good_fails_after_the_attempt_budget(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    clock = WallClock()
    run_id = _started(rt, 3)
    receiver.fail(500, None)
    statuses = []
    for _ in range(webhook.MAX_ATTEMPTS):
        assert _perform(rt, run_id, clock) == 1
        (t,) = run_tasks(rt, run_id)
        statuses.append(t.status)
        clock.move_to(t.next_attempt_at)
    assert statuses == ["pending"] * (webhook.MAX_ATTEMPTS - 1) + ["failed"]
    assert receiver.count() == webhook.MAX_ATTEMPTS
    (t,) = run_tasks(rt, run_id)
    assert (t.status, t.attempts) == ("failed", webhook.MAX_ATTEMPTS)
    assert t.last_error == f"after {webhook.MAX_ATTEMPTS} attempts: HTTP 500: nope"
    assert {s for _, _, s, _, _ in deliveries(rt, run_id)} == {"failed"}
    assert run_status(rt, run_id) == "failed"
    clock.advance(86400)
    assert _perform(rt, run_id, clock) == 0
    assert receiver.count() == webhook.MAX_ATTEMPTS


def test_a_stall_past_the_read_timeout_is_retried_and_deduped_by_the_receiver(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    clock = WallClock()
    run_id = _started(rt, 8)
    # The receiver does the work but answers too late: the bot cannot know it did.
    receiver.fail(200, 1, stall_seconds=1.5)
    with rt.db.write() as session:
        task = claims.claim(clock(), session=session, run_id=run_id)
    assert task is not None
    campaign = execute.campaign_settings(rt.settings, CAMPAIGN)
    assert campaign is not None
    webhook.perform(
        task,
        campaign,
        clock,
        db=rt.db,
        wecom=rt.wecom,
        alerts_wakeup=rt.wakeups.alerts,
        timeout=(5.0, 0.3),
    )
    (t,) = run_tasks(rt, run_id)
    assert (t.status, t.attempts) == ("pending", 1)
    assert t.last_error is not None
    assert t.last_error.startswith("ReadTimeout")
    wait_for(lambda: len(receiver.accepted) == 1, what="the stalled request to finish")

    clock.move_to(t.next_attempt_at)
    assert _perform(rt, run_id, clock) == 1
    assert [r.delivery for r in receiver.received] == [f"{run_id}-0"] * 2
    assert len(receiver.accepted) == 1  # two requests, one delivery for the receiver
    assert {s for _, _, s, _, _ in deliveries(rt, run_id)} == {"delivered"}
    assert run_status(rt, run_id) == "done"


def test_a_refused_connection_is_retried(db_url: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    rt = Runtime(webhook_settings(db_url, url, secret=SECRET))
    try:
        run_id = _started(rt, 2)
        assert _perform(rt, run_id, WallClock()) == 1
        (t,) = run_tasks(rt, run_id)
        assert t.status == "pending"
        assert t.last_error is not None
        assert t.last_error.startswith("ConnectionError")
        assert {s for _, _, s, _, _ in deliveries(rt, run_id)} == {"queued"}
    finally:
        rt.close()


def test_without_a_secret_no_signature_header_is_sent(db_url: str) -> None:
    receiver = WebhookReceiver(secret=None).start()
    rt = Runtime(webhook_settings(db_url, receiver.url, secret=None))
    try:
        run_id = _started(rt, 2)
        assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "done"
        (got,) = receiver.received
        assert "X-Tagbot-Signature" not in got.headers
        assert got.headers["X-Tagbot-Delivery"] == f"{run_id}-0"
        assert "X-Tagbot-Timestamp" in got.headers
    finally:
        rt.close()
        receiver.stop()


def test_a_campaign_gone_from_the_config_or_no_longer_a_webhook_fails_its_batches(
    db_url: str, rt: Runtime, receiver: WebhookReceiver
) -> None:
    gone = _started(rt, 2)
    changed = _started(rt, 2)
    # The config changes under the started runs: the campaign goes, or becomes a follow-up.
    without = Runtime(webhook_settings(db_url, receiver.url, secret=SECRET, name="别的活动"))
    config = webhook_config(db_url, receiver.url, secret=None)
    (campaign,) = config["outreach"]["campaigns"]
    campaign.update(action="follow_up", text="建议电话回访")
    del campaign["webhook_url"]
    follow_up = Runtime(settings_from_mapping(config, environ={}))
    try:
        assert _perform(without, gone, WallClock()) == 1
        assert _perform(follow_up, changed, WallClock()) == 1
    finally:
        without.close()
        follow_up.close()
    assert [(t.status, t.last_error) for t in run_tasks(rt, gone)] == [
        ("failed", f"campaign {CAMPAIGN!r} cannot be performed")
    ]
    assert [(t.status, t.last_error) for t in run_tasks(rt, changed)] == [
        ("failed", f"campaign {CAMPAIGN!r} is no longer configured with a webhook_url")
    ]
    assert (run_status(rt, gone), run_status(rt, changed)) == ("failed", "failed")
    assert receiver.count() == 0


def test_the_secret_reaches_neither_the_log_nor_last_error(
    rt: Runtime, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    assert SECRET in settings_secrets(rt.settings)  # the log filter masks it everywhere
    run_id = _started(rt, 2)
    receiver.fail(403, None, answer=f"signature mismatch, expected secret {SECRET}".encode())
    with caplog.at_level(logging.DEBUG):
        assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "failed"
    (t,) = run_tasks(rt, run_id)
    assert t.last_error == "HTTP 403: signature mismatch, expected secret ***"
    assert "webhook" in caplog.text
    assert SECRET not in caplog.text
    assert "customers" not in caplog.text  # no body in the log


@pytest.mark.slow  # a real process, killed
def test_a_crash_after_calling_resends_under_the_same_key_once_the_claim_expires(
    db_url: str, rt: Runtime, receiver: WebhookReceiver
) -> None:
    run_id = _started(rt, 30)
    receiver.fail(200, 1, stall_seconds=60)  # holds the request until the worker is killed
    worker = dispatch_elsewhere(webhook_config(db_url, receiver.url, secret=SECRET), run_id)
    try:
        wait_for(lambda: receiver.count() == 1, timeout=30, what="the worker's POST")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    (t,) = run_tasks(rt, run_id)
    assert (t.status, t.attempts) == ("calling", 1)
    assert t.attempted_at is not None
    assert t.locked_until == t.attempted_at + timedelta(seconds=claims.CLAIM_SECONDS)

    # Within the claim another worker leaves it alone (the first may still be at it) ...
    clock = WallClock(t.attempted_at + timedelta(seconds=1))
    assert _perform(rt, run_id, clock) == 0
    assert receiver.count() == 1
    # ... after it, the batch goes out again under the same key, as a second attempt:
    # the receiver dedupes.
    clock.move_to(t.locked_until + timedelta(seconds=1))
    assert _perform(rt, run_id, clock) == 1
    assert [r.delivery for r in receiver.received] == [f"{run_id}-0"] * 2
    assert all(r.signature_ok for r in receiver.received)
    (t,) = run_tasks(rt, run_id)
    assert (t.status, t.attempts, t.attempted_at) == ("sent", 2, clock())
    with rt.db.read() as session:
        statuses = set(session.scalars(select(CampaignDelivery.status)))
    assert statuses == {"delivered"}
    assert run_status(rt, run_id) == "done"


README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_readme_receiver_snippet_verifies_a_real_request(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    snippet = README.split("<!-- webhook-receiver -->\n```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102 - our own README
    check = scope["tagbot_signature_ok"]
    assert execute.dispatch_run(**parts.outreach(rt), run_id=_started(rt, 3)) == "done"
    (got,) = receiver.received
    assert check(SECRET.encode(), got.headers, got.body)
    assert not check(SECRET.encode(), got.headers, got.body.replace(b"}", b" }", 1))
    assert not check(b"another-secret", got.headers, got.body)
