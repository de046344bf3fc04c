"""The metrics engine on hand-built customers, each metric at its boundaries, both backends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.db import Database
from bot.errors import ValidationError
from bot.rules.vocabulary import METRICS
from bot.tiering.engine import MetricsEngine, compute_metrics
from tests.tier_metrics_factory import (
    AS_OF,
    TZ,
    channel,
    customer,
    event,
    local,
    order,
    profile,
    relation,
    staff,
)


def metrics_by_ext(db: Database, **kw: Any) -> dict[str, dict[str, Any]]:
    """Compute and return rows keyed by external_userid."""
    with db.read() as session:
        from sqlalchemy import select

        from bot.db.models import Customer

        ext = dict(session.execute(select(Customer.id, Customer.external_userid)).all())
    with compute_metrics(db, as_of=AS_OF, tz=TZ, **kw) as frame:
        return {ext[cid]: row for cid, row in frame.rows().items()}


def test_columns_are_the_vocabulary_then_profile_then_group_names(db: Database) -> None:
    with db.write() as s:
        c = customer(s, "wm1")
        profile(s, c, "region", "华东")
        profile(s, c, "member_level", "金卡")
    with compute_metrics(db, as_of=AS_OF, tz=TZ) as frame:
        assert frame.columns == [
            "customer_id",
            *(m.name for m in METRICS),
            "profile.member_level",
            "profile.region",
            "group_names",  # the current groups' names, read by group.<群名>
        ]
        assert frame.profile_names == ["member_level", "region"]
        # The rules helper queries the table by name in the frame's connection.
        got = frame.con.execute('SELECT "profile.region" FROM metrics').fetchall()
        assert got == [("华东",)]


def test_window_edges_in_the_timezone_refunds_and_after_as_of(db: Database) -> None:
    with db.write() as s:
        c = customer(s, "edge")
        order(s, c, "100.50", local(364, 23, 59))  # last local day inside 365 d
        order(s, c, 200, local(365, 0, 1))  # first local day outside
        order(s, c, 999, local(10), status="refunded")
        order(s, c, 888, AS_OF + timedelta(minutes=1))  # after as_of: not yet
        # 00:30 local on D is still D-1 in UTC: counted by its local day (0 days ago).
        order(s, c, 50, local(0, 0, 30))
    m = metrics_by_ext(db)["edge"]
    assert m["orders_365d"] == 2
    assert m["spend_365d"] == pytest.approx(150.50)
    assert m["max_order_365d"] == pytest.approx(100.50)
    assert m["aov_365d"] == pytest.approx(75.25)
    assert m["orders_total"] == 3
    assert m["spend_total"] == pytest.approx(350.50)
    assert m["days_since_last_order"] == 0
    assert m["days_since_first_order"] == 365


def test_missing_is_null_counts_are_zero(db: Database) -> None:
    with db.write() as s:
        customer(s, "nobody")
    m = metrics_by_ext(db)["nobody"]
    counts = {x.name for x in METRICS if x.count}
    for metric in METRICS:
        if metric.name in counts:
            assert m[metric.name] == 0, metric.name
        elif metric.name == "intent_no_buy_30d":
            assert m[metric.name] is False
        elif metric.name == "gender":
            assert m[metric.name] == "未知"
        else:
            assert m[metric.name] is None, metric.name


def test_ipt_median_and_overdue_ratio(db: Database) -> None:
    with db.write() as s:
        one = customer(s, "one")
        order(s, one, 10, local(5))
        two = customer(s, "two")
        order(s, two, 10, local(30))
        order(s, two, 10, local(20))
        three = customer(s, "three")
        order(s, three, 10, local(40))
        order(s, three, 10, local(36))
        order(s, three, 10, local(26))
        same_day = customer(s, "same_day")
        order(s, same_day, 10, local(3, 9))
        order(s, same_day, 10, local(3, 18))
    m = metrics_by_ext(db)
    assert m["one"]["ipt_median"] is None
    assert m["one"]["overdue_ratio"] is None
    assert m["two"]["ipt_median"] == 10
    assert m["two"]["overdue_ratio"] == pytest.approx(2.0)
    assert m["three"]["ipt_median"] == 7  # gaps 4 and 10
    assert m["three"]["overdue_ratio"] == pytest.approx(26 / 7)
    assert m["same_day"]["ipt_median"] == 0
    assert m["same_day"]["overdue_ratio"] is None  # no rhythm to be overdue against


def test_repeat_categories_and_new_product_share(db: Database) -> None:
    with db.write() as s:
        c = customer(s, "cat")
        order(s, c, 10, local(300), category="茶叶")  # before the window: makes 茶叶 known
        order(s, c, 10, local(179), category="茶叶", new=True)  # repeat, last day inside
        order(s, c, 10, local(180), category="酒水")  # outside 180 d
        order(s, c, 10, local(50), category="酒水")  # repeat (酒水 bought at 180)
        order(s, c, 10, local(20), category="图书", new=True)  # first 图书
        order(s, c, 10, local(5, 10), category="玩具")  # two at the same instant:
        order(s, c, 10, local(5, 10), category="玩具")  # both firsts
        order(s, c, 10, local(4), category="")  # no category never repeats
        order(s, c, 10, local(3), category="")
        order(s, c, 10, local(2), category="茶叶", status="refunded")
    m = metrics_by_ext(db)["cat"]
    assert m["repeat_category_orders_180d"] == 2
    assert m["new_product_share_180d"] == pytest.approx(2 / 7)


def test_top_category_by_spend_tie_alphabetical(db: Database) -> None:
    with db.write() as s:
        a = customer(s, "a")
        order(s, a, 100, local(10), category="食品")
        order(s, a, 60, local(11), category="图书")
        order(s, a, 60, local(12), category="图书")
        order(s, a, 500, local(400), category="家电")  # outside 365 d
        b = customer(s, "b")
        order(s, b, 80, local(10), category="b-cat")
        order(s, b, 80, local(10), category="a-cat")
        order(s, b, 80, local(10), category="c-cat", status="refunded")
        none = customer(s, "none")
        order(s, none, 80, local(10), category="")
    m = metrics_by_ext(db)
    assert m["a"]["top_category_365d"] == "图书"
    assert m["b"]["top_category_365d"] == "a-cat"
    assert m["none"]["top_category_365d"] is None


def test_percentile_and_m_scores_among_buyers(db: Database) -> None:
    with db.write() as s:
        for i, yuan in enumerate([100, 200, 300, 400, 500]):
            c = customer(s, f"b{i}")
            order(s, c, yuan, local(10))
        old = customer(s, "old")  # not a buyer of the window: no scores, not in the population
        order(s, old, 99999, local(400))
    m = metrics_by_ext(db)
    assert [m[f"b{i}"]["spend_percentile_365d"] for i in range(5)] == [20, 40, 60, 80, 100]
    assert [m[f"b{i}"]["m_score"] for i in range(5)] == [1, 2, 3, 4, 5]
    assert [m[f"b{i}"]["r_score"] for i in range(5)] == [5] * 5  # all equally recent
    for name in ("spend_percentile_365d", "r_score", "f_score", "m_score"):
        assert m["old"][name] is None


def test_ties_share_the_score_of_the_whole_tie(db: Database) -> None:
    with db.write() as s:
        for i, (yuan, ago) in enumerate([(100, 1), (100, 1), (300, 50)]):
            c = customer(s, f"t{i}")
            order(s, c, yuan, local(ago))
    m = metrics_by_ext(db)
    assert [m[f"t{i}"]["spend_percentile_365d"] for i in range(3)] == pytest.approx(
        [200 / 3, 200 / 3, 100]
    )
    assert [m[f"t{i}"]["m_score"] for i in range(3)] == [4, 4, 5]  # ceil(5 * 2/3) = 4
    assert [m[f"t{i}"]["r_score"] for i in range(3)] == [5, 5, 2]  # ceil(5 * 1/3) = 2


def test_f_score_fixed_bins(db: Database) -> None:
    counts = [1, 2, 3, 4, 5, 9, 10, 11]
    with db.write() as s:
        for n in counts:
            c = customer(s, f"f{n}")
            for k in range(n):
                order(s, c, 10, local(k))
    m = metrics_by_ext(db)
    assert [m[f"f{n}"]["f_score"] for n in counts] == [1, 2, 3, 3, 4, 4, 5, 5]


def test_interactions_windows_kinds_and_intent(db: Database) -> None:
    with db.write() as s:
        c = customer(s, "ev")
        event(s, c, "view", local(29, 23, 59))  # in 30 d
        event(s, c, "view", local(30, 0, 1))  # out of 30 d, in 90 d
        event(s, c, "cart", local(1))
        event(s, c, "inquiry", local(2))
        event(s, c, "click", local(89))
        event(s, c, "click", local(90))  # out of 90 d
        event(s, c, "coupon", local(3))  # another kind: counted in interactions only
        event(s, c, "view", AS_OF + timedelta(seconds=1))  # after as_of
        buyer = customer(s, "ev_buyer")
        event(s, buyer, "cart", local(5))
        order(s, buyer, 10, local(29))
        late = customer(s, "ev_late")
        event(s, late, "view", local(5))
        order(s, late, 10, local(30))  # outside 30 d: still intent without purchase
        clicker = customer(s, "ev_click")
        event(s, clicker, "click", local(5))  # clicks don't show intent
    m = metrics_by_ext(db)
    ev = m["ev"]
    assert ev["interactions_30d"] == 4
    assert ev["interactions_90d"] == 6
    assert (ev["views_30d"], ev["carts_30d"], ev["inquiries_30d"], ev["clicks_90d"]) == (1, 1, 1, 1)
    assert ev["days_since_last_interaction"] == 1
    assert ev["intent_no_buy_30d"] is True
    assert m["ev_buyer"]["intent_no_buy_30d"] is False
    assert m["ev_late"]["intent_no_buy_30d"] is True
    assert m["ev_click"]["intent_no_buy_30d"] is False


def test_relations_channel_staff_gender(db: Database) -> None:
    with db.write() as s:
        s1, s2, s3, s4 = (staff(s, f"u{i}") for i in range(4))
        late_code, first_code, other = channel(s, "直播"), channel(s, "门店"), channel(s, "海报")
        c = customer(s, "rel", gender=2)
        relation(s, c, s1, added=local(400))  # earliest, but no channel
        relation(s, c, s2, added=local(100), ch=first_code, status="lost")
        relation(s, c, s3, added=local(50), ch=late_code)
        relation(s, c, s4, added=None, ch=other)  # no time: considered last
        m1 = customer(s, "male", gender=1)
        relation(s, m1, s1, added=None, ch=other)
    m = metrics_by_ext(db)
    assert m["rel"]["channel"] == "门店"
    assert m["rel"]["staff_count"] == 3
    assert m["rel"]["days_since_added"] == 400
    assert m["rel"]["gender"] == "女"
    assert m["male"]["channel"] == "海报"
    assert m["male"]["days_since_added"] is None
    assert m["male"]["gender"] == "男"


def test_profile_attributes_latest_subject_wins(db: Database) -> None:
    with db.write() as s:
        c = customer(s, "pa")
        profile(s, c, "region", "华北", subject="unionid:u1", updated=AS_OF - timedelta(days=3))
        profile(s, c, "region", "华南", updated=AS_OF - timedelta(days=1))
        profile(s, c, "age", "31")
        customer(s, "plain")
    m = metrics_by_ext(db)
    assert m["pa"]["profile.region"] == "华南"
    assert m["pa"]["profile.age"] == "31"
    assert m["plain"]["profile.region"] is None


def test_touched_customers_equal_the_full_run(db: Database) -> None:
    with db.write() as s:
        st = staff(s, "u")
        ch = channel(s, "门店")
        ids = []
        for i in range(30):
            c = customer(s, f"c{i}", gender=i % 3)
            ids.append(c.id)
            relation(s, c, st, added=local(i * 7), ch=ch if i % 2 else None)
            for k in range(i % 6):
                order(s, c, 10 * (i % 7) + k, local(k * 40 + i), category=f"cat{k % 3}")
            event(s, c, "view", local(i))
            if i % 4 == 0:
                profile(s, c, "region", f"r{i % 3}")
    touched = ids[::4] + ids[1:3]
    with MetricsEngine(db, tz=TZ) as engine:
        full = engine.compute(as_of=AS_OF)
        expected = full.rows(touched)
        full.close()
        part = engine.compute(as_of=AS_OF, customer_ids=touched)
        assert part.rows() == expected
        part.close()
    # A fresh engine has no population yet: it builds one, same answer.
    with compute_metrics(db, as_of=AS_OF, tz=TZ, customer_ids=touched) as part:
        assert part.rows() == expected
        assert part.profile_names == ["region"]


def test_touched_run_sees_a_fresh_order(db: Database) -> None:
    with db.write() as s:
        a, b = customer(s, "a"), customer(s, "b")
        order(s, a, 100, local(3))
        order(s, b, 200, local(3))
    with MetricsEngine(db, tz=TZ) as engine:
        engine.compute(as_of=AS_OF).close()
        with db.write() as s:
            order(s, a, 500, local(0))
        part = engine.compute(as_of=AS_OF, customer_ids=[a.id])
        row = part.rows()[a.id]
        part.close()
        assert row["spend_365d"] == 600
        assert row["m_score"] == 5  # ranked against b's 200, a's old value replaced
        assert row["spend_percentile_365d"] == 100


def test_bad_input_is_a_precise_error(db: Database) -> None:
    with pytest.raises(ValidationError, match="time zone"):
        compute_metrics(db, as_of=AS_OF, tz="Mars/Olympus")
    with pytest.raises(ValidationError, match="aware"):
        compute_metrics(db, as_of=AS_OF.replace(tzinfo=None), tz=TZ)
