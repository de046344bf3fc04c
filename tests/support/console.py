"""The operator console in tests: settings, signing in, and data the overview counts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask.testing import FlaskClient
from sqlalchemy import delete, select

from bot.config import DimensionSettings, Settings, settings_from_mapping
from bot.db import Database
from bot.db.models import (
    Channel,
    ChannelDay,
    Customer,
    FollowRelation,
    GroupChat,
    GroupMember,
    Order,
    Staff,
)
from bot.reports import channel_stats
from bot.rules.dimension import load_dimensions
from bot.tiering.run import retier
from tests.support.corp import ADMIN_TOKEN, base_config
from wecom_sim import Simulator

HOSTILE = "<img src=x onerror=alert(1)>"
ADMINS = ["boss"]
VIEWERS = ["watcher"]
DIMENSION = {
    "name": "value",
    "tag_group": "客户价值",
    "tiers": [
        {"tag": "高价值", "when": "spend_365d >= 1000"},
        {"tag": "普通", "when": "spend_365d >= 0"},
    ],
}


def console_config(
    db_url: str, sim: Simulator | None = None, *, dimensions: bool = True, **console: Any
) -> dict[str, Any]:
    """A config mapping with [console] admins/viewers and the simulator's web login."""
    cfg = base_config(db_url) if sim is None else base_config(db_url, api_base=sim.api_base)
    if sim is not None:
        cfg["wecom"]["web_login_url"] = sim.web_login_url
        cfg["wecom"]["oauth_url"] = sim.oauth_url
    cfg["console"] = {"admins": ADMINS, "viewers": VIEWERS, **console}
    if dimensions:
        cfg["tiering"] = {"dimensions": [DIMENSION]}
    return cfg


def console_settings(db_url: str, sim: Simulator | None = None, **console: Any) -> Settings:
    """Settings for the console tests."""
    return settings_from_mapping(console_config(db_url, sim, **console), environ={})


def csrf_of(page: str) -> str:
    """Return the CSRF field's value in a rendered page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF field in the page"
    return found.group(1)


def sign_in_with_token(client: FlaskClient, token: str = ADMIN_TOKEN) -> Any:
    """Open the login page and post the token with its CSRF field; return the answer."""
    page = client.get("/admin/login").get_data(as_text=True)
    return client.post("/admin/login", data={"token": token, "csrf_token": csrf_of(page)})


def wecom_login_state(client: FlaskClient) -> dict[str, str]:
    """Start the WeCom login; return the query WeCom's login page receives."""
    answer = client.get("/admin/login/wecom")
    assert answer.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def sign_in_with_wecom(client: FlaskClient, sim: Simulator, userid: str) -> Any:
    """Go through WeCom's web login as `userid` (the simulator issues the code)."""
    query = wecom_login_state(client)
    code = sim.login_code(userid)
    return client.get(f"/admin/login/wecom/callback?code={code}&state={query['state']}")


@dataclass(frozen=True)
class Seeded:
    """What `seed_overview` wrote, as the overview must count it."""

    customers_total: int
    added_today: int
    added_yesterday: int
    lost_by_customer: int
    lost_by_staff: int
    tiers: dict[str, int]
    high_value: int


@dataclass(frozen=True)
class SeededGroups:
    """What `seed_groups` wrote: a group code and the stays it brought, as pages count them."""

    channel: str = "VIP群码"
    group: str = "VIP会员群"
    other_group: str = "新品群"
    joined_total: int = 3  # wm000, wm001 and a member who is nobody's customer
    members_now: int = 2  # wm000 and the stranger
    joined_today: int = 2
    left_today: int = 1  # wm001, on their own
    joined_7d: int = 3
    tiers: tuple[tuple[str, int], ...] = (("高价值", 1), ("普通", 1), ("无层级", 1))


def seed_groups(db: Database, *, now: datetime, tz: Any) -> SeededGroups:
    """Add a group live code to `seed_overview`'s data, and stays in two customer groups.

    wm000 (高价值) joined VIP会员群 through the code today and is in; wm001 (普通) joined
    through it three days ago and left today; wm002 was invited in by a member (no code);
    a stranger (nobody's customer) joined through the code today; wm000 was removed
    from 新品群 five days ago. Then the rollup counts them, as the scheduler would.
    """
    seeded = SeededGroups()
    midnight = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    today = max(midnight + timedelta(minutes=2), now - timedelta(minutes=20))
    with db.write() as session:
        ids = dict(session.execute(select(Customer.external_userid, Customer.id)).all())
        code = Channel(
            name=seeded.channel, state="vip_group", kind="group", chat_ids=["wrVIP"], qr_code=""
        )
        vip = GroupChat(chat_id="wrVIP", name=seeded.group, owner_userid="alice")
        new = GroupChat(chat_id="wrNEW", name=seeded.other_group, owner_userid="bob")
        session.add_all([code, vip, new])
        session.flush()

        def stay(group: GroupChat, ext: str, joined: datetime, **kw: Any) -> None:
            session.add(
                GroupMember(
                    group_chat_id=group.id,
                    member_userid=ext,
                    member_type=2,
                    customer_id=ids.get(ext),
                    joined_at=joined,
                    **kw,
                )
            )

        through = {"join_scene": 3, "state": code.state, "channel_id": code.id}
        stay(vip, "wm000", today, **through)
        stay(vip, "wm001", today - timedelta(days=3), left_at=today, quit_scene=0, **through)
        stay(vip, "wm002", today - timedelta(days=20), join_scene=1, invitor_userid="alice")
        stay(vip, "wmstranger", today, **through)
        stay(
            new,
            "wm000",
            today - timedelta(days=10),
            join_scene=2,
            left_at=today - timedelta(days=5),
            quit_scene=1,
        )
        # Count every day again, as on a fresh install: the stays are older than today.
        session.execute(delete(ChannelDay))
    channel_stats.rollup(db, tz=tz, now=now)
    return seeded


def seed_overview(db: Database, *, now: datetime, tz: Any) -> Seeded:
    """Write staff, customers, relations (today, yesterday, lost), an order; hostile names.

    Then run what fills the aggregates the 概览 page reads, as the scheduler would: a
    re-tier (tier sizes per run) and the channel-stats rollup (daily counts).
    """
    midnight = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    today = max(midnight + timedelta(minutes=1), now - timedelta(minutes=30))
    yesterday = midnight - timedelta(hours=3)
    with db.write() as session:
        alice = Staff(userid="alice", name=HOSTILE)
        bob = Staff(userid="bob", name="鲍勃")
        channel = Channel(name="门店码", state="store")
        session.add_all([alice, bob, channel])
        session.flush()
        people = [Customer(external_userid=f"wm{i:03d}", name=f"客户{i}") for i in range(7)]
        people[0].name = HOSTILE
        session.add_all(people)
        session.flush()

        def rel(c: Customer, s: Staff, added: datetime, **kw: Any) -> None:
            session.add(
                FollowRelation(
                    customer_id=c.id, staff_id=s.id, channel_id=channel.id, added_at=added, **kw
                )
            )

        rel(people[0], alice, today)  # new today, hostile name
        rel(people[1], alice, today)
        rel(people[1], bob, today)  # the same customer twice today: counted once
        rel(people[2], bob, yesterday)
        rel(people[3], bob, yesterday - timedelta(days=3))
        rel(
            people[4], alice, yesterday, status="lost", lost_at=today, lost_reason="del_follow_user"
        )
        rel(
            people[5],
            bob,
            yesterday,
            status="lost",
            lost_at=today,
            lost_reason="del_external_contact",
        )
        rel(people[6], alice, yesterday - timedelta(days=9))
        # people[0] spent 1,500 yuan: 高价值; 1 to 3 spent a little: 普通; the rest nothing.
        for i, yuan in enumerate([1500, 50, 50, 50]):
            session.add(
                Order(
                    order_id=f"seed-order-{i}",
                    customer_id=people[i].id,
                    external_userid=people[i].external_userid,
                    amount=Decimal(yuan),
                    paid_at=yesterday,
                    status="paid",
                )
            )
    dims = load_dimensions([DimensionSettings.model_validate(DIMENSION)])
    retier(db, dims, tz=tz.key, as_of=now)
    channel_stats.rollup(db, tz=tz, now=now)
    return Seeded(
        customers_total=5,  # 0, 1, 2, 3, 6 hold an active relation
        added_today=2,
        added_yesterday=3,  # 2, 4 and 5
        lost_by_customer=1,
        lost_by_staff=1,
        tiers={"高价值": 1, "普通": 3},
        high_value=1,
    )
