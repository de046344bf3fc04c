"""Time every console page over the re-tier bench data: server time per page, median and p95.

    python -m bench.console [--customers 100000] [--orders 1000000] [--events 500000]
                            [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]
                            [--repeat 30] [--services] [--push-pending] [--pages TITLES]

Loads (or reuses, with --workdir/--keep) bench/retier.py's data through bench/retier_common.
The aggregates the pages read are written by a re-tier and by the channel rollup: when the
data holds none yet, the bench runs a full re-tier with the default dimensions and a touched
one of 1,000 customers (their wall times are printed), then the channel rollup with
conversions; it also gives the 系统 page what a long-running install has (one handled
callback per customer, dead letters in both queues, a month of sync runs).
The first push is marked sent, so 概览 is the settled page; `--push-pending` times the pages
with that push queued instead, the outbox's state for hours after a nightly run (kept data:
its operations are put back pending, in one update, before the pages are timed).

The pages are the ones registered on the branch it runs on: each endpoint of the console's
navigation (guard.NAV), a customer's page, a tier's .xlsx export and a 规则试算 when their
routes exist (/admin/customers/<id>, /admin/tiers/<dimension>/export.xlsx, POST
/admin/tiers/trial), and the staff sidebar's customer fragment for that customer and its
为什么 (/sidebar/customer/<id>[/why], in a sidebar session of a member who follows them).
Each is requested `--repeat` times, signed in with the admin token (the sidebar: its own
session), through the Flask app in this process: the time is the server's (routing, services,
templates), without a network. `--services` also times the read services one by one
(the 概览's parts, 客户 searches and filters, 分层 and 渠道活码 services), and once each:
渠道质量's recount (what the rollup and a full re-tier pay), the export of the value
dimension's largest tier, and the first 规则试算 of a process and one after it.
"""

from __future__ import annotations

import json
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm import Session

from bench.retier_common import (
    AS_OF,
    TZ,
    backend_url,
    backends,
    parser,
    prepare,
    run_child,
    touched_ids,
    workdir,
)
from bench.tier_diff import insert_tier_tags, mark_sent
from bot.config import settings_from_mapping
from bot.db import Database

DIMENSION = "value"
ADMIN_TOKEN = "bench-console-token-0123"  # noqa: S105
DEAD_LETTERS = 50  # per queue: one page of the 系统 page's lists
SYNC_RUNS = 30  # a month of nightly syncs
# The contract's routes (issue 18), matched whatever their argument is called.
CUSTOMER_RULE = re.compile(r"^/admin/customers/<(?:\w+:)?\w+>$")
EXPORT_RULE = re.compile(r"^/admin/tiers/<(?:\w+:)?\w+>/export\.xlsx$")


def _settings(url: str) -> Any:
    from bot.tiering.defaults import default_tiering

    tiering = default_tiering().model_dump()
    return settings_from_mapping(
        {
            "wecom": {
                "corp_id": "wwbench",
                "secret": "s",
                "agent_id": 1,
                "token": "t",
                "encoding_aes_key": "a" * 43,
            },
            "database": {"url": url},
            "server": {"admin_token": ADMIN_TOKEN},
            "app": {"timezone": TZ},
            "tiering": tiering,
        },
        environ={},
    )


def _setup(db: Database, n: int, *, push_pending: bool = False) -> dict[str, Any]:
    """Write the aggregates if the data holds none: two re-tiers and the rollup."""
    from bot.db.models import ChannelTierMix, ChannelTotal, OutboxOperation, TierSizeDay
    from bot.reports import channel_stats
    from bot.rules import load_dimensions
    from bot.tags import diff, tier_tags
    from bot.tiering.defaults import default_tiering
    from bot.tiering.run import retier

    out: dict[str, Any] = {}
    with db.read() as s:
        sized = s.scalar(select(func.count()).select_from(TierSizeDay))
        rolled = s.scalar(select(func.count()).select_from(ChannelTotal))
        # Data kept from before channel_tier_mix existed: the rollup writes it.
        mixed = s.scalar(select(func.count()).select_from(ChannelTierMix))
    if not sized:
        dims = load_dimensions(default_tiering().dimensions)
        for name, ids in (("retier_full", None), ("retier_touched", touched_ids(n))):
            t0 = time.perf_counter()
            report = retier(db, dims, tz=TZ, as_of=AS_OF, customer_ids=ids)
            out[name] = {
                "wall_s": round(time.perf_counter() - t0, 2),
                "transitions": report.transitions,
                "record_s": round(report.seconds.get("record", 0.0), 2),
            }
    with db.read() as s:
        queued = s.scalar(select(func.count()).select_from(OutboxOperation))
    if not queued:
        # The first push's operations, kept done as the outbox keeps them: what the push
        # progress counts read past in production.
        with db.read() as s:
            tdims = tier_tags.dimensions(default_tiering(), session=s)
        with db.write() as s:
            insert_tier_tags(s, tdims, prefix="c")
        t0 = time.perf_counter()
        first = diff.enqueue_tier_changes(db=db, dims=tdims)
        if not push_pending:
            mark_sent(db)
        out["push_queued" if push_pending else "push_queued_and_marked_done"] = {
            "operations": first.changed,
            "wall_s": round(time.perf_counter() - t0, 2),
        }
    if not rolled or not sized or not mixed:
        tz = ZoneInfo(TZ)
        for name, now, orders in (
            ("rollup_first_s (31 days back)", AS_OF, False),
            ("rollup_s (every 10 min)", AS_OF + timedelta(minutes=10), False),
            ("rollup_with_orders_s (hourly)", AS_OF + timedelta(minutes=20), True),
        ):
            t0 = time.perf_counter()
            channel_stats.rollup(db, tz=tz, now=now, orders=orders)
            out[name] = round(time.perf_counter() - t0, 2)
    if push_pending:
        out.update(_push_pending(db))
    return out


def _push_pending(db: Database) -> dict[str, Any]:
    """Put the first push's operations back pending if they were sent (kept data)."""
    from bot.db.models import OutboxOperation

    op = OutboxOperation
    t0 = time.perf_counter()
    with db.write() as s:
        n = s.execute(
            update(op)
            .where(op.status == "done")
            .values(status="pending", done_at=None, attempts=0, last_error=None)
        ).rowcount  # type: ignore[attr-defined]
        pending = s.scalar(select(func.count()).select_from(op).where(op.status == "pending"))
    return {
        "push_put_back_pending": {"operations": n, "wall_s": round(time.perf_counter() - t0, 2)},
        "outbox_pending": pending,
    }


def _in_read(db: Database, call: Callable[[Session], object]) -> None:
    with db.read() as s:
        call(s)


def _calls(settings: Any, db: Database) -> dict[str, Callable[[Session], object]]:
    from bot.reports import channel_stats, operations, overview, tier_movement

    tz = ZoneInfo(TZ)
    today = channel_stats.local_today(tz, AS_OF)
    value = [t.tag for t in settings.tiering.dimensions[0].tiers]
    return {
        "overview (概览, all of it)": lambda s: overview.overview(
            session=s, settings=settings, now=AS_OF
        ),
        "tier_sizes": lambda s: tier_movement.tier_sizes(DIMENSION, session=s, tiers=value),
        "size_series 30d": lambda s: tier_movement.size_series(
            DIMENSION, session=s, today=today, days=30, tiers=value
        ),
        "movement_matrix (last full)": lambda s: tier_movement.movement_matrix(
            None, DIMENSION, session=s
        ),
        "last_run_summary": lambda s: tier_movement.last_run_summary(session=s),
        "push_progress, whole outbox": lambda s: tier_movement.push_progress(session=s, since_id=0),
        "channel_summary": lambda s: channel_stats.channel_summary(session=s, today=today),
        "channel_trend 30d": lambda s: channel_stats.channel_trend(
            1, session=s, today=today, days=30
        ),
        "queue_depths": lambda s: operations.queue_depths(session=s),
        "wecom_usage": lambda s: operations.wecom_usage(
            session=s, corp_id="wwbench", limits=settings.limits
        ),
        **_customer_calls(settings, value),
        **_tier_and_channel_calls(settings, value),
    }


def _tier_page(page: Callable[..., object], dim: Any, today: Any, s: Session) -> object:
    return page(dim, session=s, today=today)


def _body(request: Callable[[], Any]) -> object:
    return request().get_data()


def _tier_and_channel_calls(
    settings: Any, value: list[str]
) -> dict[str, Callable[[Session], object]]:
    """The 分层 page per dimension and the 渠道活码 pages' services."""
    from bot.reports import channel_pages, channel_stats
    from bot.reports.tier_page import tier_page
    from bot.rules import load_dimensions

    dims = {d.name: d for d in load_dimensions(settings.tiering.dimensions)}
    today = channel_stats.local_today(ZoneInfo(TZ), AS_OF)
    return {
        **{
            f"tier_page {name}": partial(_tier_page, tier_page, dims[name], today)
            for name in ("value", "rfm")
        },
        "channel_list (as the page)": lambda s: channel_pages.channel_list(
            session=s, today=today, dimension=DIMENSION, tier_order=value
        ),
        "channel_report 30d": lambda s: channel_pages.channel_report(1, session=s, today=today),
        "all_configs (qr.zip)": lambda s: channel_pages.all_configs(session=s),
    }


def _once(settings: Any, db: Database) -> dict[str, Any]:
    """Time once: 渠道质量's recount, the largest value tier's export, two 规则试算."""
    from bot.reports import rule_trial, tier_export
    from bot.rules import load_dimensions
    from bot.tiering import channel_mix

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    with db.read() as s:
        channel_mix.count(session=s)
    out["channel_mix recount_s"] = round(time.perf_counter() - t0, 2)
    dims = {d.name: d for d in load_dimensions(settings.tiering.dimensions)}
    with db.read() as s:
        tier, size = s.execute(
            text(
                "SELECT tier, count(*) AS n FROM tier_assignments WHERE dimension = :d"
                " GROUP BY tier ORDER BY n DESC LIMIT 1"
            ),
            {"d": DIMENSION},
        ).one()
    t0 = time.perf_counter()
    sent = sum(
        len(chunk)
        for chunk in tier_export.stream_xlsx(
            db, DIMENSION, tier, tier_export.metric_names(dims[DIMENSION]), tz=ZoneInfo(TZ)
        )
    )
    out[f"export {tier} ({size:,} customers)"] = {
        "bytes": sent,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    frames = rule_trial.TrialFrames()
    for label, now in (("trial_first_s", AS_OF), ("trial_kept_s", AS_OF + timedelta(minutes=1))):
        t0 = time.perf_counter()
        result = rule_trial.trial(TRIAL, db=db, frames=frames, tz=TZ, now=now)
        out[label] = round(time.perf_counter() - t0, 2)
        out["trial_matched"] = result.matched
    frames.close()
    return out


def _customer_calls(settings: Any, value: list[str]) -> dict[str, Callable[[Session], object]]:
    """The 客户 pages' services: a list page per filter, the worst search, one profile."""
    from bot.reports import customer_list as cl
    from bot.reports import tier_movement
    from bot.reports.customer_profile import customer_profile
    from bot.rules import load_dimensions

    tz = ZoneInfo(TZ)
    dims = load_dimensions(settings.tiering.dimensions)

    def page(f: cl.CustomerFilter) -> Callable[[Session], object]:
        return lambda s: cl.search_customers(f, session=s, tz=tz, display_names={})

    return {
        "customers page, no filter": page(cl.CustomerFilter()),
        "customers page, by id": page(cl.CustomerFilter(q="wm4242")),
        "customers page, name search": page(cl.CustomerFilter(q="客户4242")),
        "customers search, no match": page(cl.CustomerFilter(q="nobody")),
        f"customers page, tier {value[0]}": page(
            cl.CustomerFilter(dimension=DIMENSION, tier=value[0])
        ),
        f"customers page, tier {value[-1]}": page(
            cl.CustomerFilter(dimension=DIMENSION, tier=value[-1])
        ),
        f"customers page, moved 无→{value[0]}": lambda s: cl.search_customers(
            cl.CustomerFilter(
                dimension=DIMENSION,
                move=cl.Move(tier_movement.latest_run_id(session=s) or 0, None, value[0]),
            ),
            session=s,
            tz=tz,
            display_names={},
        ),
        "customers page, staff1": page(cl.CustomerFilter(staff="staff1")),
        "customers page, lost": page(cl.CustomerFilter(loss="lost")),
        "customer profile (no explain)": lambda s: customer_profile(
            "wm4242", session=s, display_names={}, dims=dims
        ),
    }


def _system_rows(db: Database) -> dict[str, Any]:
    """Give the 系统 page a long-running install's rows, unless the data has them already."""
    from bot import job_runs
    from bot.db.models import InboxEvent, OutboxOperation, OutboxTagChange, Tag
    from bot.db.types import UTCDateTime, utcnow

    with db.read() as s:
        if s.scalar(select(func.count()).select_from(InboxEvent)):
            return {}
        tag_id = s.scalar(select(func.min(Tag.id)))
        pairs = s.execute(
            text(
                "SELECT st.userid, c.external_userid FROM follow_relations r"
                " JOIN staff st ON st.id = r.staff_id JOIN customers c ON c.id = r.customer_id"
                f" ORDER BY r.id LIMIT {DEAD_LETTERS}"
            )
        ).all()
    t0 = time.perf_counter()
    now = utcnow()
    with db.write() as s:
        # One handled callback per customer, spread over a year as a year of callbacks
        # would be (the page counts the last 24 hours): a day's slice of ids at a time.
        top = int(s.scalar(text("SELECT coalesce(max(id), 0) FROM customers")) or 0)
        step = top // 365 + 1
        for day in range(365):
            at = now - timedelta(days=day)
            s.execute(
                text(
                    "INSERT INTO inbox_events (dedup_key, event, change_type, payload,"
                    " received_at, status, attempts, next_attempt_at, duplicates)"
                    " SELECT 'bench-' || id, 'change_external_contact', 'add_external_contact',"
                    " '<xml/>', :at, 'done', 1, :at, 0 FROM customers"
                    " WHERE id >= :lo AND id < :hi"
                ).bindparams(bindparam("at", type_=UTCDateTime())),
                {"at": at, "lo": day * step, "hi": (day + 1) * step},
            )
        for i in range(DEAD_LETTERS):
            s.add(
                InboxEvent(
                    dedup_key=f"bench-dead-{i}",
                    event="change_external_contact",
                    change_type="edit_external_contact",
                    payload="<xml/>",
                    received_at=now,
                    status="dead",
                    attempts=6,
                    next_attempt_at=now,
                    last_error="WeComError 60111: userid not found",
                )
            )
        for staff, customer in pairs:
            s.add(
                OutboxOperation(
                    kind="mark_tag",
                    staff_userid=staff,
                    external_userid=customer,
                    payload={},
                    status="dead",
                    attempts=8,
                    last_errcode=40068,
                    last_error="invalid tagid",
                    tag_changes=[OutboxTagChange(tag_id=tag_id, action="add")] if tag_id else [],
                )
            )
        for day in range(SYNC_RUNS):
            started = now - timedelta(days=day, minutes=5)
            job_runs.record(
                session=s,
                job="sync",
                trigger=job_runs.SCHEDULE,
                started_at=started,
                finished_at=started + timedelta(minutes=4),
                outcome=job_runs.OK,
                summary={"staff": 200, "customers_added": 3, "calls": {"get": 900}},
            )
    if not db.is_sqlite:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) inbox_events"))
    return {"system_rows_s": round(time.perf_counter() - t0, 2)}


TRIAL = "spend_365d >= 1000 and days_since_last_order <= 90"
TRIAL_RULE = "/admin/tiers/trial"


def _pages(app: Any, db: Database, customers: int) -> dict[str, tuple[str, dict[str, str] | None]]:
    """Return every console page registered on this branch: title -> (path, POST form)."""
    from flask import url_for

    from bot.db.models import Customer, TierSizeDay
    from handlers.admin import guard

    pages: dict[str, tuple[str, dict[str, str] | None]] = {}
    with app.test_request_context():
        for endpoint, title in guard.NAV:
            if endpoint in app.view_functions:
                pages[title] = (url_for(endpoint), None)
    rules = [r.rule for r in app.url_map.iter_rules()]
    with db.read() as s:
        someone = s.scalar(
            select(Customer.external_userid).order_by(Customer.id).offset(customers // 2).limit(1)
        )
        day = s.scalar(select(func.max(TierSizeDay.day)).where(TierSizeDay.dimension == DIMENSION))
        smallest = s.execute(
            select(TierSizeDay.tier, TierSizeDay.customers)
            .where(
                TierSizeDay.dimension == DIMENSION,
                TierSizeDay.day == day,
                TierSizeDay.tier != "",
                TierSizeDay.customers > 0,
            )
            .order_by(TierSizeDay.customers)
            .limit(1)
        ).first()
    if someone and any(CUSTOMER_RULE.match(r) for r in rules):
        pages["客户详情"] = (f"/admin/customers/{quote(someone)}", None)
    if smallest and any(EXPORT_RULE.match(r) for r in rules):
        tier, size = smallest
        pages[f"分层导出 {tier} ({size:,} rows)"] = (
            f"/admin/tiers/{DIMENSION}/export.xlsx?tier={quote(tier)}",
            None,
        )
    if TRIAL_RULE in rules:
        pages["规则试算 (htmx)"] = (TRIAL_RULE, {"when": TRIAL})
    return pages


def _signed_in(app: Any) -> tuple[Any, str]:
    """Return a client signed in with the admin token, and its CSRF token."""
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF field on the login page"
    answer = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": found[1]})
    assert answer.status_code == 303, answer.status_code
    # The session's token, as the pages hand it to htmx (a new one after signing in).
    home = client.get("/admin/").get_data(as_text=True)
    signed = re.search(r"hx-headers='\{\"[^\"]+\": \"([^\"]+)\"\}'", home)
    assert signed, "no CSRF token in the signed-in page"
    return client, signed[1]


def _sidebar_client(app: Any, db: Database, customer: str) -> tuple[Any, str] | None:
    """Return a client signed in to the staff sidebar as a follower of `customer`, and the
    fragment's path (None when this branch has no sidebar or nobody follows them).

    The session is made as /sidebar/oauth makes it: WeCom's OAuth is no part of the timing.
    """
    if not any(r.rule == "/sidebar/customer/<external_userid>" for r in app.url_map.iter_rules()):
        return None
    from flask import Response

    from bot.console import sessions
    from bot.db.models import Customer, FollowRelation, Staff
    from bot.db.types import utcnow
    from handlers.sidebar import signin
    from handlers.web import cookies

    with db.read() as s:
        userid = s.scalar(
            select(Staff.userid)
            .join(FollowRelation, FollowRelation.staff_id == Staff.id)
            .join(Customer, Customer.id == FollowRelation.customer_id)
            .where(Customer.external_userid == customer, FollowRelation.status == "active")
            .limit(1)
        )
    if userid is None:
        return None
    client = app.test_client()
    with app.test_request_context("/sidebar/"):
        with db.write() as s:
            session_id, _ = sessions.create(
                session=s,
                actor=userid,
                role="viewer",
                method=sessions.SIDEBAR_METHOD,
                now=utcnow(),
                expiry=signin.expiry(),
            )
        holder = Response()
        cookies.write(holder, signin.COOKIE, session_id, path=signin.COOKIE_PATH, max_age=3600)
        value = holder.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    client.set_cookie(signin.COOKIE, value, path=signin.COOKIE_PATH)
    return client, f"/sidebar/customer/{quote(customer)}"


def _timed(repeat: int, call: Callable[[], object]) -> dict[str, float]:
    """Call `repeat` times; return the median and p95 in ms, and the median CPU time of
    this process (on a shared machine the steadier figure; PostgreSQL's work is not in it)."""
    seconds, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    p95 = statistics.quantiles(seconds, n=20)[18] if len(seconds) > 1 else seconds[0]
    return {
        "median_ms": round(statistics.median(seconds) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
        "cpu_ms": round(statistics.median(cpu) * 1000, 2),
    }


def _time_pages(settings: Any, db: Database, spec: dict[str, Any]) -> dict[str, Any]:
    from handlers.app import create_app

    app = create_app(settings)
    try:
        console, csrf = _signed_in(app)
        out: dict[str, Any] = {}
        pages = {
            title: (console, path, form)
            for title, (path, form) in _pages(app, db, spec["customers"]).items()
        }
        customer = pages["客户详情"][1].rsplit("/", 1)[-1] if "客户详情" in pages else ""
        sidebar = _sidebar_client(app, db, unquote(customer)) if customer else None
        if sidebar is not None:
            pages["侧边栏客户片段"] = (sidebar[0], sidebar[1], None)
            pages["侧边栏为什么 (on tap)"] = (sidebar[0], sidebar[1] + "/why", None)
        if spec.get("pages"):  # --pages: these titles' beginnings only
            wanted = tuple(spec["pages"])
            pages = {t: v for t, v in pages.items() if t.startswith(wanted)}
        for title, (client, path, form) in pages.items():

            def request(
                client: Any = client, path: str = path, form: dict[str, str] | None = form
            ) -> Any:
                if form is None:
                    return client.get(path)
                data = {**form, "csrf_token": csrf}
                return client.post(path, data=data, headers={"HX-Request": "true"})

            # The first request compiles the templates; a 规则试算 answers 正在计算 at once and
            # computes its frame in the background (polled here as the page does, every 0.5 s);
            # an explanation with no population stored for today starts building it in the
            # background: timed after it (its duration reported), not beside it.
            t0 = time.perf_counter()
            warm = request()
            first_ms = round((time.perf_counter() - t0) * 1000, 1)
            if warm.status_code != 200:
                out[title] = {"path": path, "status": warm.status_code}
                continue
            extra: dict[str, float] = {}
            if form is not None:
                while b'id="trial-pending"' in request().get_data():
                    time.sleep(0.5)
                extra["result_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            explain = app.extensions["tagbot"].explain
            t1 = time.perf_counter()
            if not explain.wait(0):
                explain.wait()
                extra["background_build_ms"] = round((time.perf_counter() - t1) * 1000, 1)
            timed = _timed(spec["repeat"], partial(_body, request))
            out[title] = {
                "path": path,
                "first_ms": first_ms,
                **extra,
                **timed,
                "bytes": len(warm.get_data()),
            }
            # As it goes, on stderr: a long run cut short still tells how far it got.
            print(title, json.dumps(out[title], ensure_ascii=False), file=sys.stderr, flush=True)
        return out
    finally:
        app.extensions["tagbot"].close()


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the aggregates and the 系统 rows if needed, then time every page; return figures."""
    db = Database(spec["url"])
    settings = _settings(spec["url"])
    setup = _setup(db, spec["customers"], push_pending=spec.get("push_pending", False))
    out: dict[str, Any] = {"setup": {**setup, **_system_rows(db)}}
    out["pages"] = _time_pages(settings, db, spec)
    if spec.get("services"):
        out["services"] = {
            name: _timed(spec["repeat"], partial(_in_read, db, call))
            for name, call in _calls(settings, db).items()
        }
        out["once"] = _once(settings, db)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    db.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, customers=100_000, orders=1_000_000, events=500_000)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--services", action="store_true", help="also time each read service")
    p.add_argument(
        "--push-pending", action="store_true", help="time the pages with the first push queued"
    )
    p.add_argument(
        "--pages",
        help="time only the pages whose titles begin so (comma-separated, e.g. 客户详情,分层导出)",
    )
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(
        f"# console pages bench: {args.customers:,} customers, {args.orders:,} orders,"
        f" {args.events:,} events; {args.repeat} requests per page"
    )
    with workdir(args, "console-bench-") as work:
        for key, value in prepare(args, work).items():
            print(f"{key:<22} {value:>8} s")
        for backend in backends(args):
            spec = {
                "customers": args.customers,
                "url": backend_url(args, work, backend),
                "repeat": args.repeat,
                "services": args.services,
                "push_pending": args.push_pending,
                "pages": args.pages.split(",") if args.pages else [],
            }
            r = run_child("bench.console", spec)
            print(f"\n## {backend}")
            for key, value in r["setup"].items():
                print(f"setup {key:<28} {value}")
            head = f"{'first ms':>10} {'median ms':>10} {'p95 ms':>10} {'cpu ms':>8}"
            print(f"{'page':<34} {head}  path")
            for name, t in r["pages"].items():
                if "status" in t:
                    print(f"{name:<34} {'HTTP ' + str(t['status']):>41}  {t['path']}")
                else:
                    print(
                        f"{name:<34} {t['first_ms']:>10} {t['median_ms']:>10}"
                        f" {t['p95_ms']:>10} {t['cpu_ms']:>8}  {t['path']}"
                    )
                    if "result_ms" in t:
                        print(f"  {'(its result, polled)':<32} {t['result_ms']:>10}")
                    if "background_build_ms" in t:
                        print(
                            f"  {'(then its background build)':<32} {t['background_build_ms']:>10}"
                        )
            for name, t in r.get("services", {}).items():
                print(f"service {name:<37} {t['median_ms']:>10} {t['p95_ms']:>10} {t['cpu_ms']:>8}")
            for name, value in r.get("once", {}).items():
                print(f"once {name:<40} {value}")
            print(f"peak RSS {r['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
