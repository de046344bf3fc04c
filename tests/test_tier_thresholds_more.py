"""The default dimensions at the thresholds test_retier_run leaves out, through the real run.

Every RFM segment, the 高价值会员 percentile cut, the second branch of 核心, the 90-day
edges of 活跃/沉睡, 忠实客户's order count, 流失预警's one-year limit, 购买行为's count and
AOV cuts, 新品偏好's share and 复购人群's window; three-valued logic from each backend's
missing values; hysteresis past the dwell (stay alone keeps the tier) and the dwell counted
in local days. Each test builds its own population: ranks depend on everyone in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from bot.config import DimensionSettings
from bot.db import Database
from bot.db.models import Customer, Order, TierAssignment
from bot.rules import load_dimensions
from bot.tiering.defaults import default_tiering
from bot.tiering.run import retier
from tests import tier_metrics_factory as hb  # hand-built rows
from tests.tier_metrics_factory import AS_OF, TZ, local

DIMS = load_dimensions(default_tiering().dimensions)


@dataclass(frozen=True)
class Buys:
    """A hand-built customer: paid orders (yuan, days ago, category, new), views, friend age."""

    orders: tuple[tuple[str | int, int, str, bool], ...] = ()
    views: tuple[int, ...] = ()
    added: int | None = None
    profile: dict[str, str] = field(default_factory=dict)


def buys(
    *orders: tuple[str | int, int], category: str = "", new: bool = False, **kw: object
) -> Buys:
    """Orders of one category and newness; kw passes views/added on."""
    rows = tuple((yuan, ago, category, new) for yuan, ago in orders)
    return Buys(orders=rows, **kw)  # type: ignore[arg-type]


def load(db: Database, people: dict[str, Buys]) -> None:
    """Write the customers through the real models."""
    with db.write() as s:
        member = hb.staff(s, "u_thresholds")
        for ext, b in people.items():
            c = hb.customer(s, ext)
            for yuan, ago, category, new in b.orders:
                hb.order(s, c, yuan, local(ago), category=category, new=new)
            for ago in b.views:
                hb.event(s, c, "view", local(ago))
            if b.added is not None:
                hb.relation(s, c, member, added=local(b.added))
            for name, value in b.profile.items():
                hb.profile(s, c, name, value)


def tiers(db: Database, dimension: str) -> dict[str, str | None]:
    """Every customer's tier in one dimension (None when untagged)."""
    with db.read() as s:
        rows = s.execute(
            select(Customer.external_userid, TierAssignment.tier).outerjoin(
                TierAssignment,
                (TierAssignment.customer_id == Customer.id)
                & (TierAssignment.dimension == dimension),
            )
        ).all()
    return {str(ext): tier for ext, tier in rows}


def check(db: Database, expected: dict[str, dict[str, str | None]]) -> None:
    """Assert each listed customer's tier per dimension, reporting every mismatch at once."""
    got = {dim: tiers(db, dim) for dim in {d for e in expected.values() for d in e}}
    wrong = [
        (ext, dim, got[dim][ext], want)
        for ext, by_dim in expected.items()
        for dim, want in by_dim.items()
        if got[dim][ext] != want
    ]
    assert wrong == []


def test_rfm_every_segment_and_the_top_fifth_by_spend(db: Database) -> None:
    # Ten buyers, no ties: R and M score ceil(5 * rank / 10), so ranks 7-10 score 4-5 (high)
    # and rank 6 scores 3; spend_percentile_365d = 10 * rank, so rank 8 sits at 80.
    # segment: (days since the last order, spend, two orders or one)
    plan = {
        "重要价值": (1, 1003, True),
        "重要发展": (2, 1002, False),
        "一般价值": (3, 13, True),
        "一般发展": (4, 12, False),
        "重要保持": (100, 1001, True),
        "重要挽留": (101, 1000, False),
        "一般保持": (102, 11, True),
        "一般挽留": (103, 10, False),
    }
    people = {
        seg: buys((spend - 5, last), (5, 150)) if twice else buys((spend, last))
        for seg, (last, spend, twice) in plan.items()
    }
    people |= {"filler1": buys((1, 200)), "filler2": buys((2, 201))}
    load(db, people)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    rfm = tiers(db, "rfm")
    assert {seg: rfm[seg] for seg in plan} == {seg: seg for seg in plan}
    assert (rfm["filler1"], rfm["filler2"]) == ("一般挽留", "一般挽留")
    preference = tiers(db, "preference")
    top = {ext for ext, tier in preference.items() if tier == "高价值会员"}
    assert top == {"重要价值", "重要发展", "重要保持"}  # ranks 10, 9 and 8 (at 80); not 7


def test_activity_lifecycle_churn_and_behavior_at_their_edges(db: Database) -> None:
    three = ((100, 60), (100, 100))
    cases: dict[str, tuple[Buys, dict[str, str | None]]] = {
        # 核心's second branch: 3 orders in a year and the last within 30 days.
        "3 orders, last 30 d": (buys((100, 30), *three), {"activity": "核心"}),
        "3 orders, last 31 d": (buys((100, 31), *three), {"activity": "活跃"}),
        "2 orders, last 30 d": (buys((100, 30), (100, 60)), {"activity": "活跃"}),
        # 活跃 by an order within 90 days; past it, quiet and added long ago: 沉睡.
        "order 90 d": (buys((100, 90), added=100), {"activity": "活跃"}),
        "order 91 d": (buys((100, 91), added=100), {"activity": "沉睡"}),
        # 沉睡 needs no interaction in 90 days: the window is (as_of - 90 d, as_of].
        "view 89 d": (Buys(views=(89,), added=100), {"activity": None}),
        "view 90 d": (Buys(views=(90,), added=100), {"activity": "沉睡"}),
        # 忠实客户 needs 4 orders in a year and one within 180 days.
        "3 orders a year": (
            buys((100, 300), (100, 200), (100, 10)),
            {"lifecycle": "老客户", "behavior": "多次小额"},
        ),
        "4 orders, last 180 d": (
            buys((100, 364), (100, 300), (100, 200), (100, 180)),
            {"lifecycle": "忠实客户"},
        ),
        "4 orders, last 181 d": (
            buys((100, 364), (100, 300), (100, 200), (100, 181)),
            {"lifecycle": "沉睡客户"},
        ),
        # 流失预警 stops at a year without an order.
        "one order 365 d": (buys((100, 365)), {"churn": "流失预警"}),
        "one order 366 d": (buys((100, 366)), {"churn": None}),
        # 单次高额 allows 2 orders, not 3; 多次小额 needs an AOV under 200.
        "2 orders, one 2000": (buys((2000, 5), (100, 50)), {"behavior": "单次高额"}),
        "3 orders, one 2000": (buys((2000, 5), (100, 50), (100, 80)), {"behavior": None}),
        "aov 200": (buys((200, 5), (200, 50), (200, 80)), {"behavior": None}),
        "aov 199.99": (
            buys(("199.99", 5), ("199.99", 50), ("199.99", 80)),
            {"behavior": "多次小额"},
        ),
        # 有意向未购买: viewed, and no paid order within the 30-day window.
        "viewed, ordered 30 d": (buys((100, 30), views=(3,)), {"behavior": "有意向未购买"}),
        "viewed, ordered 29 d": (buys((100, 29), views=(3,)), {"behavior": None}),
    }
    load(db, {name: b for name, (b, _) in cases.items()})
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    check(db, {name: want for name, (_, want) in cases.items()})


def test_preference_share_and_repeat_window(db: Database) -> None:
    tea = "茶叶"
    cases: dict[str, tuple[Buys, str | None]] = {
        "new 1 of 2": (
            Buys(orders=((100, 20, "", True), (100, 10, "", False))),
            "新品偏好",
        ),
        "new 1 of 3": (
            Buys(orders=((100, 30, "", True), (100, 20, "", False), (100, 10, "", False))),
            None,
        ),
        "one new order": (buys((100, 10), new=True), None),  # a share of one order is no habit
        "repeat 179 d": (buys((100, 300), (100, 179), (100, 100), category=tea), "复购人群"),
        "repeat 181 d": (buys((100, 300), (100, 181), (100, 100), category=tea), None),
        "first in window": (buys((100, 100), (100, 50), (100, 10), category=tea), "复购人群"),
    }
    # Five big spenders keep the cases below the top fifth (高价值会员 comes first).
    whales = {f"whale{i}": buys((10_000, 200), category=f"c{i}") for i in range(5)}
    load(db, whales | {name: b for name, (b, _) in cases.items()})
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    got = tiers(db, "preference")
    assert {name: got[name] for name in cases} == {name: want for name, (_, want) in cases.items()}
    assert {got[w] for w in whales} == {"高价值会员"}


def test_three_valued_logic_on_the_backends_missing_values(db: Database) -> None:
    dims = load_dimensions(
        [
            DimensionSettings.model_validate(d)
            for d in (
                {
                    "name": "spend",
                    "tag_group": "消费",
                    "tiers": [
                        {"tag": "不足", "when": "not (spend_365d >= 5000)"},
                        {"tag": "无消费", "when": "spend_365d is missing"},
                    ],
                },
                {
                    "name": "age",
                    "tag_group": "年龄",
                    "tiers": [
                        {"tag": "年长", "when": "profile.age >= 30 or days_since_last_order < 0"},
                        {"tag": "有值", "when": "profile.age is not missing"},
                    ],
                },
            )
        ]
    )
    load(
        db,
        {
            "small": buys((100, 3), profile={"age": "31"}),
            "big": buys((6000, 3), profile={"age": "abc"}),
            "none": Buys(profile={"age": "29"}),
            "bare": Buys(),
        },
    )
    retier(db, dims, tz=TZ, as_of=AS_OF)
    # A non-buyer's spend is missing: `not (missing >= 5000)` is unknown, not true.
    assert tiers(db, "spend") == {"small": "不足", "big": None, "none": "无消费", "bare": "无消费"}
    # Text that is not a number makes the comparison unknown; unknown or false is no match.
    assert tiers(db, "age") == {"small": "年长", "big": "有值", "none": "有值", "bare": None}


def _spend(db: Database, ext: str, yuan: str) -> None:
    """Set the customer's only order to `yuan` (a partial refund, say)."""
    with db.write() as s:
        cid = s.scalar(select(Customer.id).where(Customer.external_userid == ext))
        s.execute(update(Order).where(Order.customer_id == cid).values(amount=yuan))


def test_stay_alone_keeps_a_tier_after_the_dwell_and_not_below_it(db: Database) -> None:
    load(db, {"h": buys((5000, 0))})
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    _spend(db, "h", "4000")
    retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=10))  # dwell long over
    assert tiers(db, "value")["h"] == "高价值"  # stay's boundary holds
    _spend(db, "h", "3999.99")
    retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=10))
    assert tiers(db, "value")["h"] == "中价值"


def test_dwell_counts_local_days_not_24_hour_periods(db: Database) -> None:
    # Entered at 12:00 on day 0 in Shanghai; 00:01 on day 7 is only 6.5 x 24 h later.
    load(db, {"d": buys((5000, 0))})
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    _spend(db, "d", "3000")
    retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=7, hours=-12, minutes=-1))  # 23:59 day 6
    assert tiers(db, "value")["d"] == "高价值"
    retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=7, hours=-12, minutes=1))  # 00:01 day 7
    assert tiers(db, "value")["d"] == "中价值"


def test_a_later_dimension_reads_this_runs_earlier_tiers(db: Database) -> None:
    dims = load_dimensions(
        [
            DimensionSettings.model_validate(d)
            for d in (
                {
                    "name": "value",
                    "tag_group": "价值",
                    "tiers": [{"tag": "高价值", "when": "spend_365d >= 5000"}],
                },
                {"name": "category", "tag_group": "品类", "tag_from": "top_category_365d"},
                {
                    "name": "care",
                    "tag_group": "关怀",
                    "tiers": [
                        {"tag": "新高价值", "when": 'tier.value == "高价值" and orders_total == 1'},
                        {"tag": "茶客", "when": 'tier.category == "茶叶"'},
                        {"tag": "无价值层", "when": "tier.value is missing"},
                    ],
                },
            )
        ]
    )
    load(
        db,
        {
            "vip": buys((6000, 3), category="咖啡"),
            "vip2": buys((3000, 30), (3000, 3), category="茶叶"),
            "tea": buys((100, 3), category="茶叶"),
            "none": Buys(),
        },
    )
    retier(db, dims, tz=TZ, as_of=AS_OF)
    # The tiers just given in this run, not the (empty) stored ones.
    assert tiers(db, "care") == {
        "vip": "新高价值",
        "vip2": "茶客",
        "tea": "茶客",
        "none": "无价值层",
    }
