"""The console's 分层 page with the Flask client: sizes, rules, matrix, RFM, export, 规则试算."""

from __future__ import annotations

import html
import io
import json
import re
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import func, select

from bot.config import DimensionSettings, settings_from_mapping
from bot.db import Database
from bot.db.models import Customer, Order, RetierRun, TierAssignment
from bot.db.types import utcnow
from bot.reports.rule_trial import TrialFrames, TrialResult, trial
from bot.rules import Scope, compile_condition, load_dimensions, parse_and_check
from bot.tiering.engine import compute_metrics
from bot.tiering.run import retier
from handlers.app import create_app
from tests.support.console import (
    DIMENSION,
    HOSTILE,
    console_config,
    csrf_of,
    seed_overview,
    sign_in_with_token,
    sign_in_with_wecom,
)
from wecom_sim import Simulator

DEFAULTS = Path(__file__).parents[1] / "bot" / "tiering" / "default_tiers.toml"
RFM = next(
    d
    for d in tomllib.loads(DEFAULTS.read_text(encoding="utf-8"))["tiering"]["dimensions"]
    if d["name"] == "rfm"
)
DIMS = [DIMENSION, RFM]
PENDING = 'id="trial-pending"'


def _app(db_url: str, sim: Simulator | None, dims: list[dict[str, Any]]) -> Flask:
    cfg = console_config(db_url, sim, dimensions=False)
    if dims:
        cfg["tiering"] = {"dimensions": dims}
    return create_app(settings_from_mapping(cfg, environ={}))


@pytest.fixture
def console(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    """The console with the value dimension and the default plan's RFM dimension."""
    for userid in ("boss", "watcher"):
        simulator.add_staff(userid)
    app = _app(db_url, simulator, DIMS)
    yield app
    app.extensions["tagbot"].close()


@pytest.fixture
def web(console: Flask) -> FlaskClient:
    client = console.test_client()
    sign_in_with_token(client)
    return client


def _seed(console: Flask, db: Database) -> None:
    """The overview's seed, then a re-tier of both dimensions an hour later."""
    rt = console.extensions["tagbot"]
    now = utcnow()
    seed_overview(db, now=now - timedelta(hours=1), tz=rt.settings.tz)
    dims = load_dimensions([DimensionSettings.model_validate(d) for d in DIMS])
    retier(db, dims, tz=rt.settings.tz.key, as_of=now)


def _sizes(db: Database, dimension: str) -> dict[str, int]:
    with db.read() as session:
        rows = session.execute(
            select(TierAssignment.tier, func.count())
            .where(TierAssignment.dimension == dimension)
            .group_by(TierAssignment.tier)
        ).all()
    return {t: int(n) for t, n in rows}


def _q(text: str) -> str:
    return quote(text)


def _charts(page: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(page.split('id="chart-data">')[1].split("</script>")[0])
    return data


def test_the_page_shows_sizes_rules_and_charts_from_the_database(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    _seed(console, db)
    answer = web.get("/admin/tiers")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    sizes = _sizes(db, "value")
    assert sizes == {"高价值": 1, "普通": 3}
    for tier, n in sizes.items():
        assert f'data-tier="{tier}">{n}<' in page
        assert f"/admin/customers?dimension=value&amp;tier={_q(tier)}" in page
        assert f"/admin/tiers/value/export.xlsx?tier={_q(tier)}" in page
    # The rules as configured, read-only and escaped.
    assert "spend_365d &gt;= 1000" in page
    assert 'aria-current="page">客户价值</a>' in page
    charts = _charts(page)
    assert charts["tier-sizes"]["values"] == [1, 3]
    series = {s["name"]: s["values"] for s in charts["tier-series"]["series"]}
    assert series["高价值"][-1] == 1
    assert series["普通"][-1] == 3
    assert len(series["普通"]) == 30
    # The latest full run of the value dimension moved nobody; the first run entered them all.
    assert charts["tier-matrix"]["cells"] == []
    assert 'id="no-moves"' in page
    assert page.count("ⓘ") >= 6
    assert "<script>" not in page
    assert 'id="rfm"' not in page  # value has no RFM segments


def test_the_matrix_of_a_chosen_run_links_each_cell_to_its_customers(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    _seed(console, db)
    with db.read() as session:
        first = int(session.scalar(select(func.min(RetierRun.id))) or 0)  # the seed's run
    page = web.get(f"/admin/tiers?dimension=value&run={first}").get_data(as_text=True)
    charts = _charts(page)
    x, y = charts["tier-matrix"]["x"], charts["tier-matrix"]["y"]
    cells = {(y[c[1]], x[c[0]]): c[2] for c in charts["tier-matrix"]["cells"]}
    assert cells == {("无", "高价值"): 1, ("无", "普通"): 3}
    assert 'data-from="无" data-to="普通"' in page
    assert f"/admin/customers?dimension=value&amp;run={first}&amp;from=&amp;to={_q('普通')}" in page
    links = charts["tier-matrix"]["links"]
    assert links[f"{x.index('普通')},{y.index('无')}"] == (
        f"/admin/customers?dimension=value&run={first}&from=&to={_q('普通')}"
    )
    assert 'id="moved" data-value="4"' in page

    # A customer spends enough to move up; the next run's matrix shows that one move.
    rt = console.extensions["tagbot"]
    with db.write() as session:
        who = session.scalars(select(Customer).where(Customer.external_userid == "wm001")).one()
        session.add(
            Order(
                order_id="more",
                customer_id=who.id,
                external_userid=who.external_userid,
                amount=Decimal(2000),
                paid_at=utcnow() - timedelta(minutes=5),
                status="paid",
            )
        )
    dims = load_dimensions([DimensionSettings.model_validate(d) for d in DIMS])
    report = retier(db, dims, tz=rt.settings.tz.key, as_of=utcnow())
    page = web.get("/admin/tiers?dimension=value").get_data(as_text=True)
    charts = _charts(page)
    x, y = charts["tier-matrix"]["x"], charts["tier-matrix"]["y"]
    cells = {(y[c[1]], x[c[0]]): c[2] for c in charts["tier-matrix"]["cells"]}
    assert cells == {("普通", "高价值"): 1}
    assert f'value="{report.run_id}" selected' in page
    assert charts["tier-sizes"]["values"] == [2, 2]


def test_the_rfm_grid_shows_the_eight_segments_with_their_sizes(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    _seed(console, db)
    page = web.get("/admin/tiers?dimension=rfm").get_data(as_text=True)
    grid = page.split('id="rfm"')[1].split("</section>")[0]
    sizes = _sizes(db, "rfm")
    assert sum(sizes.values()) == 4  # the four buyers; the others have no scores
    for tier in (t["tag"] for t in RFM["tiers"]):
        cell = grid.split(f'data-segment="{tier}"')[1].split("</td>")[0]
        assert f'data-value="{sizes.get(tier, 0)}"' in cell
    assert grid.count("data-segment=") == 8
    assert "r_score &gt;= 4 and f_score &gt;= 2 and m_score &gt;= 4" in page


def test_the_export_holds_the_tiers_members(console: Flask, web: FlaskClient, db: Database) -> None:
    _seed(console, db)
    with db.write() as session:  # a name a spreadsheet would take for a formula
        session.scalars(
            select(Customer).where(Customer.external_userid == "wm002")
        ).one().name = '=HYPERLINK("http://evil","x")'
    with web.get("/admin/tiers/value/export.xlsx?tier=普通") as answer:
        assert answer.status_code == 200
        assert answer.mimetype.endswith("spreadsheetml.sheet")
        assert "filename*=UTF-8''" in answer.headers["Content-Disposition"]
        data = answer.data
    book = load_workbook(io.BytesIO(data))
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0] == ("external_userid", "name", "staff", "tier", "since", "spend_365d")
    with db.read() as session:
        members = session.execute(
            select(Customer.external_userid, Customer.name, TierAssignment.since)
            .join(TierAssignment, TierAssignment.customer_id == Customer.id)
            .where(TierAssignment.dimension == "value", TierAssignment.tier == "普通")
            .order_by(Customer.id)
        ).all()
    assert [r[0] for r in rows[1:]] == [m[0] for m in members]
    assert [r[1] for r in rows[1:]] == [m[1] for m in members]
    assert '=HYPERLINK("http://evil","x")' in [r[1] for r in rows[1:]]
    assert {r[3] for r in rows[1:]} == {"普通"}
    assert [r[5] for r in rows[1:]] == [50, 50, 50]  # the spend that put them there
    staff = {r[0]: r[2] for r in rows[1:]}
    assert staff["wm001"] == f"{HOSTILE} / 鲍勃"
    tz = console.extensions["tagbot"].settings.tz
    local_since = members[0][2].astimezone(tz).replace(tzinfo=None)
    assert abs((rows[1][4] - local_since).total_seconds()) < 0.01

    with web.get("/admin/tiers/value/export.xlsx?tier=高价值") as answer:
        high = load_workbook(io.BytesIO(answer.data))
    values = list(high.active.iter_rows(values_only=True))
    assert [(r[0], r[1]) for r in values[1:]] == [("wm000", HOSTILE)]


def test_exports_of_unknown_dimensions_or_tiers_are_404_pages(web: FlaskClient) -> None:
    for url in (
        "/admin/tiers/nope/export.xlsx?tier=普通",
        "/admin/tiers/value/export.xlsx?tier=没有这层",
        "/admin/tiers/value/export.xlsx",
        "/admin/tiers?dimension=nope",
    ):
        answer = web.get(url)
        assert answer.status_code == 404, url
        body = answer.get_data(as_text=True)
        assert "页面不存在" in body
        assert "Traceback" not in body


def _post_trial(web: FlaskClient, when: str, *, htmx: bool = True) -> Any:
    token = csrf_of(web.get("/admin/tiers").get_data(as_text=True))
    headers = {"HX-Request": "true"} if htmx else {}
    return web.post("/admin/tiers/trial", data={"when": when, "csrf_token": token}, headers=headers)


def _trial(web: FlaskClient, when: str, *, htmx: bool = True) -> Any:
    """Post a trial and, while every customer's metrics are computed, follow the page's
    poll once the background computation is done (the poll itself: the tests below)."""
    answer = _post_trial(web, when, htmx=htmx)
    if PENDING in answer.get_data(as_text=True):
        frames = web.application.extensions["tagbot"].local(TrialFrames)
        assert frames.wait(120)
        answer = _post_trial(web, when, htmx=htmx)
    return answer


def test_the_rule_trial_shows_the_parsers_error_with_a_caret(web: FlaskClient) -> None:
    answer = _trial(web, "spend_365x >= 1000")
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    assert "<html" not in body  # an htmx fragment
    assert 'id="trial-error"' in body
    assert "spend_365d" in body  # did you mean
    assert "    spend_365x &gt;= 1000\n    ^^^^^^^^^^" in body
    broken = _trial(web, "spend_365d >= ").get_data(as_text=True)
    assert 'id="trial-error"' in broken
    assert "\n    " + " " * len("spend_365d >=") + "^</pre>" in broken  # after the ">="
    assert 'id="trial-error"' in _trial(web, "   ").get_data(as_text=True)


def test_the_rule_trial_counts_and_samples_the_customers_it_matches(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    _seed(console, db)
    body = _trial(web, "spend_365d >= 1000").get_data(as_text=True)
    assert 'id="trial-matched" data-value="1"' in body
    assert 'data-external-userid="wm000"' in body
    assert HOSTILE not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert '<td class="num">1500</td>' in body
    with db.read() as session:
        customers = int(session.scalar(select(func.count()).select_from(Customer)) or 0)
    none = _trial(web, "orders_total == 0").get_data(as_text=True)
    assert f'id="trial-matched" data-value="{customers - 4}"' in none
    assert none.count("data-external-userid=") == customers - 4
    # Without htmx the whole page comes back, with the result in it.
    page = _trial(web, "orders_total >= 1", htmx=False).get_data(as_text=True)
    assert "<html" in page
    assert 'id="trial-matched" data-value="4"' in page
    # The trial changed nothing.
    assert _sizes(db, "value") == {"高价值": 1, "普通": 3}


def test_the_rule_trial_samples_twenty(console: Flask, web: FlaskClient, db: Database) -> None:
    with db.write() as session:
        session.add_all(Customer(external_userid=f"many{i:02d}", name=f"多{i}") for i in range(25))
    body = _trial(web, "orders_total == 0").get_data(as_text=True)
    assert 'id="trial-matched" data-value="25"' in body
    assert body.count("data-external-userid=") == 20
    assert "只列出前 20 个" in body


def _frames(console: Flask) -> TrialFrames:
    frames: TrialFrames = console.extensions["tagbot"].local(TrialFrames)
    return frames


def _engine_count(console: Flask, db: Database, when: str) -> int:
    """The engine's own evaluation: the compiled condition over a fresh frame."""
    expr = parse_and_check(when, scope=Scope())
    rt = console.extensions["tagbot"]
    with compute_metrics(db, as_of=utcnow(), tz=rt.settings.tz.key) as frame:
        row = frame.con.execute(
            f"SELECT count(*) FROM {frame.table} WHERE {compile_condition(expr)}"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_first_trial_polls_until_every_customers_metrics_are_computed(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    _seed(console, db)
    when = "orders_total >= 1 and m_score >= 1"
    first = _post_trial(web, when)
    assert first.status_code == 200
    body = first.get_data(as_text=True)
    assert "正在计算全部客户的指标…" in body
    assert PENDING in body
    # The fragment polls itself with the same condition and a CSRF field.
    poll = re.search(r'<form[^>]*id="trial-pending"[^>]*>', body)
    assert poll is not None
    assert 'hx-post="/admin/tiers/trial"' in poll.group(0)
    assert 'hx-trigger="load delay:1s"' in poll.group(0)
    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', body)
    fields = {name: html.unescape(value) for name, value in hidden}
    assert fields["when"] == when
    assert fields["csrf_token"]
    frames = _frames(console)
    assert frames.wait(120)
    answer = web.post("/admin/tiers/trial", data=fields, headers={"HX-Request": "true"})
    result = answer.get_data(as_text=True)
    assert PENDING not in result
    matched = re.search(r'id="trial-matched" data-value="(\d+)"', result)
    assert matched is not None
    assert int(matched.group(1)) == _engine_count(console, db, when) == 4
    assert frames.computations == 1
    # A second trial within the frame's ten minutes answers at once, from the same frame.
    again = _post_trial(web, "spend_365d >= 1000").get_data(as_text=True)
    assert 'id="trial-matched" data-value="1"' in again
    assert frames.computations == 1


def test_a_syntax_error_is_answered_without_computing_any_metrics(
    console: Flask, web: FlaskClient
) -> None:
    body = _post_trial(web, "spend_365x >= 1000").get_data(as_text=True)
    assert 'id="trial-error"' in body
    assert PENDING not in body
    frames = _frames(console)
    assert frames.wait(0)  # nothing was started
    assert frames.computations == 0


def test_a_viewer_may_run_the_trial_but_needs_the_csrf_token(
    console: Flask, simulator: Simulator
) -> None:
    client = console.test_client()
    sign_in_with_wecom(client, simulator, "watcher")
    assert _trial(client, "orders_total >= 1").status_code == 200
    refused = client.post("/admin/tiers/trial", data={"when": "orders_total >= 1"})
    assert refused.status_code == 403
    # Still a viewer everywhere else.
    token = csrf_of(client.get("/admin/tiers").get_data(as_text=True))
    assert (
        client.post("/admin/system/sessions/revoke", data={"csrf_token": token}).status_code == 403
    )


def test_a_fresh_install_says_what_to_do_next(db_url: str) -> None:
    app = _app(db_url, None, [])
    try:
        client = app.test_client()
        sign_in_with_token(client)
        page = client.get("/admin/tiers").get_data(as_text=True)
        assert 'id="tiers-empty"' in page
        assert "tagbot retier" in page
        assert 'href="/admin/tiers"' in page  # in the navigation
    finally:
        app.extensions["tagbot"].close()


def test_a_dimension_before_its_first_run_says_so(web: FlaskClient) -> None:
    answer = web.get("/admin/tiers")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert 'id="no-run"' in page
    assert "tagbot retier" in page
    assert "echarts.min.js" not in page
    body = _trial(web, "orders_total == 0").get_data(as_text=True)
    assert 'id="trial-matched" data-value="0"' in body
    rfm = web.get("/admin/tiers?dimension=rfm").get_data(as_text=True)
    assert rfm.count("data-segment=") == 8


def test_trials_reuse_the_frame_for_ten_minutes_then_recompute(db: Database) -> None:
    frames = TrialFrames()
    start = utcnow()

    def run(minutes: int) -> TrialResult:
        return trial(
            "orders_total == 0",
            db=db,
            frames=frames,
            tz="Asia/Shanghai",
            now=start + timedelta(minutes=minutes),
        )

    try:
        with db.write() as session:
            session.add(Customer(external_userid="first", name="一"))
        assert run(0).matched == 1
        with db.write() as session:
            session.add(Customer(external_userid="second", name="二"))
        kept = run(5)
        assert (kept.matched, kept.as_of) == (1, start)  # answered from the kept frame
        fresh = run(11)
        assert (fresh.matched, fresh.as_of) == (2, start + timedelta(minutes=11))
    finally:
        frames.close()
