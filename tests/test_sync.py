"""`tagbot sync` against the WeCom simulator over HTTP, with enough people to need paging."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import (
    Customer,
    FollowRelation,
    Order,
    RelationTag,
    Staff,
    Tag,
    TagGroup,
)
from bot.runtime import Runtime
from bot.sync import SyncReport, run_sync
from tagbot.cli import main
from tests.support.corp import base_config

STAFF = 130  # two batch/get_by_user chunks: 100 + 30 members
PER_STAFF = 3  # 300 relations in the first chunk: three pages of 100
TAGS = {"客户等级": ["VIP", "普通"], "兴趣": ["美妆", "服饰", "数码"]}
GET_BY_USER = "externalcontact/batch/get_by_user"


@pytest.fixture
def rt(db_url: str, simulator: Any) -> Iterator[Runtime]:
    settings = settings_from_mapping(base_config(db_url, simulator.api_base), environ={})
    runtime = Runtime(settings)
    yield runtime
    runtime.wecom.close()
    runtime.close()


def _sim_relations(sim: Any) -> dict[tuple[str, str], set[str]]:
    with sim.state.lock:
        return {
            (r.userid, r.external_userid): set(r.tag_ids)
            for rels in sim.state.by_user.values()
            for r in rels.values()
        }


def _db_relations(db: Database) -> dict[tuple[str, str], set[str]]:
    with db.read() as session:
        rows = session.execute(
            select(Staff.userid, Customer.external_userid, FollowRelation.id)
            .join(Staff, Staff.id == FollowRelation.staff_id)
            .join(Customer, Customer.id == FollowRelation.customer_id)
            .where(FollowRelation.status == "active")
        ).all()
        tags: dict[int, set[str]] = {}
        for relation_id, wecom_tag_id in session.execute(
            select(RelationTag.relation_id, Tag.wecom_tag_id).join(
                Tag, Tag.id == RelationTag.tag_id
            )
        ):
            tags.setdefault(relation_id, set()).add(wecom_tag_id)
    return {(u, e): tags.get(rid, set()) for u, e, rid in rows}


def _calls(sim: Any, api: str) -> int:
    return int(sim.calls.get(api, 0))


def test_first_sync_imports_every_relation_and_a_second_changes_nothing(
    rt: Runtime, simulator: Any
) -> None:
    simulator.seed(staff=STAFF, customers_per_staff=PER_STAFF, tag_groups=TAGS)
    # A customer followed by two members, with a known unionid and an order waiting for it.
    shared = simulator.add_relation("seed_u0000", name="共享客户", unionid="un_shared")
    simulator.add_relation("seed_u0129", shared)
    with rt.db.write() as session:
        session.add(
            Order(
                order_id="early",
                unionid="un_shared",
                amount=Decimal("9.90"),
                paid_at=datetime(2026, 1, 1, tzinfo=UTC),
                status="paid",
            )
        )
    simulator.reset_counters()

    first = run_sync(db=rt.db, wecom=rt.wecom)

    expected = _sim_relations(simulator)
    assert len(expected) == STAFF * PER_STAFF + 2
    assert _db_relations(rt.db) == expected
    assert first.staff == first.staff_added == STAFF
    assert first.customers_added == STAFF * PER_STAFF + 1
    assert first.relations_added == len(expected)
    assert first.orphans_linked == 1
    assert first.tags == 5
    # 301 relations for the first 100 members: four pages; the other 30 members: one page.
    assert _calls(simulator, GET_BY_USER) == first.calls[GET_BY_USER] == 5
    assert _calls(simulator, "externalcontact/get_follow_user_list") == 1
    assert _calls(simulator, "externalcontact/get_corp_tag_list") == 1
    # The customer groups of the 130 members, 100 owners a call (no group: no groupchat/get).
    assert first.calls["externalcontact/groupchat/list"] == 2
    assert first.total_calls == 9
    with rt.db.read() as session:
        customer = session.scalars(select(Customer).where(Customer.external_userid == shared)).one()
        assert (customer.unionid, customer.name) == ("un_shared", "共享客户")
        assert session.scalar(select(Order.customer_id)) == customer.id
        states = session.execute(
            select(FollowRelation.state, func.count()).group_by(FollowRelation.state)
        ).all()
        assert dict(states) == {"seed": STAFF * PER_STAFF, "": 2}
        assert session.scalar(select(func.count()).where(FollowRelation.added_at.is_(None))) == 0

    simulator.reset_counters()
    second = run_sync(db=rt.db, wecom=rt.wecom)
    assert second.changed == 0, second
    assert second.relations == len(expected)
    assert second.total_calls == 9
    assert _db_relations(rt.db) == expected


def test_sync_absorbs_changes_made_in_wecom(rt: Runtime, simulator: Any) -> None:
    simulator.seed(staff=4, customers_per_staff=30, tag_groups=TAGS)
    run_sync(db=rt.db, wecom=rt.wecom)

    relations = _sim_relations(simulator)
    (gone_user, gone_ext) = next(k for k in relations if k[0] == "seed_u0001")
    simulator.customer_deletes_staff(gone_ext, gone_user)  # no callback URL: silent
    simulator.add_staff("seed_u0003", active=False)  # left the app's visible range
    with simulator.state.lock:
        vip = next(t for t in simulator.state.tags.values() if t.name == "VIP")
        digital = next(t for t in simulator.state.tags.values() if t.name == "数码")
        vip_id, digital_id = vip.tag_id, digital.tag_id
    simulator.admin_delete_tag(vip_id)
    (edit_user, edit_ext) = next(
        k for k, tags in _sim_relations(simulator).items() if k[0] == "seed_u0000"
    )
    simulator.staff_edit_tags(edit_user, edit_ext, add=[digital_id])

    report: SyncReport = run_sync(db=rt.db, wecom=rt.wecom)

    assert report.staff_deactivated == 1
    assert report.relations_lost == 1
    assert report.relation_tags_removed >= 1
    with rt.db.read() as session:
        assert session.scalar(select(Staff.active).where(Staff.userid == "seed_u0003")) is False
        lost = session.scalars(
            select(FollowRelation)
            .join(Customer, Customer.id == FollowRelation.customer_id)
            .join(Staff, Staff.id == FollowRelation.staff_id)
            .where(Customer.external_userid == gone_ext, Staff.userid == gone_user)
        ).one()
        assert (lost.status, lost.lost_reason) == ("lost", "sync")
        assert lost.lost_at is not None
        vip_row = session.scalars(select(Tag).where(Tag.wecom_tag_id == vip_id)).one()
        assert vip_row.deleted is True
        assert (
            session.scalar(
                select(func.count())
                .select_from(RelationTag)
                .where(RelationTag.tag_id == vip_row.id)
            )
            == 0
        )
        assert session.scalar(select(func.count()).select_from(TagGroup)) == 2
    # Members outside the app's range are not read: their relations stay as last seen.
    active = {k: v for k, v in _db_relations(rt.db).items() if k[0] != "seed_u0003"}
    assert active == {k: v for k, v in _sim_relations(simulator).items() if k[0] != "seed_u0003"}
    assert digital_id in active[(edit_user, edit_ext)]

    again = run_sync(db=rt.db, wecom=rt.wecom)
    assert again.changed == 0


def test_sync_and_customer_show_from_the_cli(
    tmp_path: Path, db_url: str, simulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.seed(staff=2, customers_per_staff=2, tag_groups={"客户等级": ["VIP"]})
    ext = simulator.add_relation("seed_u0000", name="王五", unionid="un_w", tag_ids=[])
    cfg = base_config(db_url, simulator.api_base)
    config = tmp_path / "config.toml"
    config.write_text(
        "\n".join(
            [
                f"[{section}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in values.items())
                for section, values in cfg.items()
            ]
        ),
        encoding="utf-8",
    )
    assert main(["--config", str(config), "sync"]) == 0
    out = capsys.readouterr().out
    assert "同步完成" in out
    assert "WeCom calls: 4" in out  # follow users, tags, one page of relations, groups
    assert main(["--config", str(config), "customer", "show", ext]) == 0
    out = capsys.readouterr().out
    assert "王五" in out
    assert "un_w" in out
    assert "seed_u0000" in out
    assert "有效" in out
    assert main(["--config", str(config), "customer", "show", "wm_nobody"]) == 1
    assert "客户不存在" in capsys.readouterr().err


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_the_daily_reconcile_is_scheduled() -> None:
    from jobs import registry
    from jobs.sync import SYNC_JOB

    assert SYNC_JOB in registry.scheduled()
    settings = settings_from_mapping(base_config("sqlite:///unused.db"), environ={})
    assert SYNC_JOB.cron(settings) == settings.jobs.sync_schedule


def test_a_second_sync_waits_for_the_first(rt: Runtime, simulator: Any) -> None:
    from bot import leases
    from bot.errors import TagbotError

    with rt.db.write() as session:
        assert leases.try_acquire("sync", "someone-else", 60, session=session)
    with pytest.raises(TagbotError, match="另一个同步正在进行"):
        run_sync(db=rt.db, wecom=rt.wecom)
    assert simulator.calls.get("externalcontact/get_follow_user_list", 0) == 0


def test_a_relation_added_by_a_callback_during_the_sync_is_not_marked_lost(
    rt: Runtime, simulator: Any
) -> None:
    from bot.customers import contacts
    from bot.wecom.client import WeComClient

    simulator.seed(staff=2, customers_per_staff=PER_STAFF, tag_groups=TAGS)
    member = "seed_u0000"
    db = rt.db

    class CallbackLandsMidSync(WeComClient):
        """WeCom answers a page; then a scan's callback stores a new friend of `member`."""

        landed = False

        def batch_get_by_user(self, userids: Any, cursor: str, limit: int) -> Any:
            page = super().batch_get_by_user(userids, cursor, limit)
            if not self.landed:
                self.landed = True
                ext = simulator.add_relation(member, "wm_scanned_mid_sync")
                with db.write() as session:
                    customer = contacts.upsert_customer(session=session, external_userid=ext)
                    contacts.upsert_relation(
                        session=session, staff_userid=member, customer=customer
                    )
            return page

    wecom = CallbackLandsMidSync(rt.settings.wecom, rt.settings.limits, db=db)
    try:
        report = run_sync(db=db, wecom=wecom)
    finally:
        wecom.close()
    assert wecom.landed
    assert report.relations_lost == 0
    assert (member, "wm_scanned_mid_sync") in _db_relations(db)


@pytest.mark.parametrize("given_up", [False, True], ids=["held", "given-up"])
def test_a_sync_whose_lease_was_taken_over_stops(
    rt: Runtime, simulator: Any, given_up: bool
) -> None:
    from sqlalchemy import delete, update

    from bot.db.models import Lease
    from bot.errors import TagbotError
    from bot.wecom.client import WeComClient

    simulator.seed(staff=2, customers_per_staff=PER_STAFF, tag_groups=TAGS)
    db = rt.db

    class SlowPage(WeComClient):
        """A page so slow that the lease expired and another sync took it over.

        Given up: that other sync even finished meanwhile; the lease is free, but this
        sync's pages may still be stale, so it must not take it afresh.
        """

        def batch_get_by_user(self, userids: Any, cursor: str, limit: int) -> Any:
            page = super().batch_get_by_user(userids, cursor, limit)
            with db.write() as session:
                session.execute(
                    delete(Lease) if given_up else update(Lease).values(owner="the-other-sync")
                )
            return page

    wecom = SlowPage(rt.settings.wecom, rt.settings.limits, db=db)
    try:
        with pytest.raises(TagbotError, match="lease"):
            run_sync(db=db, wecom=wecom, owner="this-sync")
    finally:
        wecom.close()
    with db.read() as session:
        assert session.scalars(select(Lease.owner).where(Lease.name == "sync")).all() == (
            [] if given_up else ["the-other-sync"]
        )


def test_sync_without_a_bound_developer_account_stores_no_unionids(
    rt: Runtime, simulator: Any
) -> None:
    simulator.unionid_bound = False  # WeCom then leaves unionid out of every customer
    simulator.seed(staff=2, customers_per_staff=3, tag_groups=TAGS)
    first = run_sync(db=rt.db, wecom=rt.wecom)
    assert first.customers_added == 6
    with rt.db.read() as session:
        assert session.scalars(select(Customer.unionid)).all() == [None] * 6
    second = run_sync(db=rt.db, wecom=rt.wecom)
    assert second.changed == 0, second


def test_sync_records_only_corp_tags_and_leaves_the_others_alone(
    rt: Runtime, simulator: Any
) -> None:
    simulator.add_staff("u1")
    vip = simulator.admin_create_tag("价值", "VIP")
    rule = simulator.add_rule_tag("价值", "高频")  # a rule-group tag, same group name
    ext = simulator.add_relation("u1", tag_ids=[vip, rule], personal_tags=[("价值", "VIP")])
    first = run_sync(db=rt.db, wecom=rt.wecom)
    assert first.unknown_tag_ids == 1
    assert _db_relations(rt.db) == {("u1", ext): {vip}}
    with rt.db.read() as session:
        assert session.scalars(select(Tag.wecom_tag_id)).all() == [vip]
    second = run_sync(db=rt.db, wecom=rt.wecom)
    assert second.changed == 0, second
    assert simulator.relation_tag_kinds("u1", ext) == {
        "corp": [vip],
        "personal": [["价值", "VIP"]],
        "rule": [rule],
    }
    assert simulator.calls.get("externalcontact/mark_tag", 0) == 0
