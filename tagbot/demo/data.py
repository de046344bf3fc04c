"""Generate believable demo customers, orders and events (seeded, so runs repeat)."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.ingest.rows import ORDER_COLUMNS

STAFF = {
    "zhangwei": "张伟",
    "lina": "李娜",
    "wangfang": "王芳",
    "liuyang": "刘洋",
    "chenjing": "陈静",
}
# How scans split across the demo channels (state -> share).
CHANNEL_SHARE = {"gzh_article": 0.45, "store_jingan": 0.2, "h5_double11": 0.35}

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉飞琳晶欣悦琪涵雪婷颖倩宇浩然子轩梓萱一诺思远"
_NICK = ["小{}", "{}{}", "阿{}", "{}{}酱", "{}{}同学"]
CATEGORIES = ["护肤", "彩妆", "香氛", "个护", "母婴", "食品"]


@dataclass(frozen=True)
class DemoCustomer:
    """A customer who will scan one channel's live code."""

    external_userid: str
    unionid: str
    name: str
    state: str


def nickname(rng: random.Random) -> str:
    """Return a WeChat-style nickname."""
    pattern = rng.choice(_NICK)
    parts = [rng.choice(_SURNAMES), rng.choice(_GIVEN)]
    return (
        pattern.format(*parts[: pattern.count("{}")])
        if "{}{}" in pattern
        else pattern.format(rng.choice(_GIVEN))
    )


def customers(n: int, rng: random.Random) -> list[DemoCustomer]:
    """Return n customers spread over the channels by CHANNEL_SHARE."""
    states = list(CHANNEL_SHARE)
    weights = [CHANNEL_SHARE[s] for s in states]
    out = []
    for i in range(n):
        out.append(
            DemoCustomer(
                external_userid=f"wmDemo{i:06d}{rng.getrandbits(48):012x}",
                unionid=f"oDemoUnion{i:06d}{rng.getrandbits(32):08x}",
                name=nickname(rng),
                state=rng.choices(states, weights)[0],
            )
        )
    return out


def write_orders_csv(
    path: Path, people: list[DemoCustomer], rng: random.Random, now: datetime
) -> int:
    """Write an orders CSV (UTF-8 with BOM, as Excel saves it); return the row count.

    Some rows name the customer only by unionid, as a shop system without WeCom ids would,
    and a few rows are broken on purpose so the rejects file has something to show.
    """
    tz = ZoneInfo("Asia/Shanghai")
    rows = 0
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ORDER_COLUMNS)
        for i, person in enumerate(people):
            # A long-tailed spend: most buy a little, a few buy a lot.
            for j in range(min(int(rng.paretovariate(1.3)) - 1, 12)):
                paid = (
                    now - timedelta(days=rng.randint(1, 360), minutes=rng.randint(0, 1440))
                ).astimezone(tz)
                amount = Decimal(
                    rng.choice([39, 69, 99, 129, 199, 299, 499, 899, 1299, 2599])
                ) + Decimal("0.90")
                by_union = rng.random() < 0.3
                writer.writerow(
                    [
                        f"DEMO-{i:05d}-{j:02d}",
                        "" if by_union else person.external_userid,
                        person.unionid,
                        f"{amount}",
                        paid.strftime("%Y-%m-%d %H:%M:%S"),
                        "refunded" if rng.random() < 0.05 else "paid",
                        rng.choice(CATEGORIES),
                        "是" if rng.random() < 0.2 else "否",
                    ]
                )
                rows += 1
        writer.writerow(
            [
                "DEMO-BAD-1",
                people[0].external_userid,
                "",
                "十块钱",
                "2026-11-01 10:00:00",
                "paid",
                "护肤",
                "否",
            ]
        )
        writer.writerow(
            ["DEMO-BAD-2", people[1].external_userid, "", "99.00", "昨天", "paid", "护肤", "否"]
        )
        writer.writerow(
            [
                "DEMO-BAD-3",
                people[2].external_userid,
                "",
                "99.00",
                "2026-11-01 10:00:00",
                "cancelled",
                "护肤",
                "否",
            ]
        )
        rows += 3
    return rows


EVENT_KINDS = {"view": 0.6, "click": 0.2, "cart": 0.12, "inquiry": 0.08}


def write_events_csv(
    path: Path, people: list[DemoCustomer], rng: random.Random, now: datetime
) -> int:
    """Write an interactions CSV (views, clicks, carts, inquiries over 120 days); return rows."""
    tz = ZoneInfo("Asia/Shanghai")
    kinds = list(EVENT_KINDS)
    weights = [EVENT_KINDS[k] for k in kinds]
    rows = 0
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["event_id", "external_userid", "unionid", "kind", "occurred_at"])
        for i, person in enumerate(people):
            # A third never interact; the keenest interact every few days.
            for j in range(min(int(rng.paretovariate(0.9)) - 1 if rng.random() > 0.33 else 0, 25)):
                at = now - timedelta(days=rng.randint(0, 120), minutes=rng.randint(0, 1440))
                writer.writerow(
                    [
                        f"DEMO-EV-{i:05d}-{j:02d}",
                        person.external_userid,
                        "",
                        rng.choices(kinds, weights)[0],
                        at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
                    ]
                )
                rows += 1
    return rows


def write_followup_orders_csv(
    path: Path,
    customers: list[tuple[str, bool]],
    rng: random.Random,
    *,
    start: datetime,
    rates: tuple[float, float],
) -> int:
    """Write the simulated month of orders after a campaign run; return the row count.

    `customers` are (external_userid, treated); each orders once within 28 days with
    probability rates[1] if treated, else rates[0] — a known effect for the report to find.
    """
    tz = ZoneInfo("Asia/Shanghai")
    rows = 0
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ORDER_COLUMNS)
        for i, (external_userid, treated) in enumerate(customers):
            if rng.random() >= rates[1 if treated else 0]:
                continue
            paid = (
                start + timedelta(days=rng.randint(1, 27), minutes=rng.randint(0, 1440))
            ).astimezone(tz)
            amount = Decimal(rng.choice([99, 199, 299, 499, 899])) + Decimal("0.90")
            writer.writerow(
                [
                    f"DEMO-AFTER-{i:05d}",
                    external_userid,
                    "",
                    f"{amount}",
                    paid.strftime("%Y-%m-%d %H:%M:%S"),
                    "paid",
                    rng.choice(CATEGORIES),
                    "否",
                ]
            )
            rows += 1
    return rows
