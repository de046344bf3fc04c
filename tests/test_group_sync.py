"""The daily sync reads every customer group: what happened while the bot was down is absorbed.

Real parts: the simulator over HTTP with no callback URL (nothing reaches the bot), the
sync run as `tagbot sync` in-process and as run_sync, SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from bot.channels import live_codes
from bot.config import settings_from_mapping
from bot.db.models import GroupChat, OutboxOperation, OutboxTagChange, Tag
from bot.groups.sync import sync_groups
from bot.runtime import Runtime
from bot.sync import run_sync
from bot.tags.catalogue import TagPath
from tagbot.cli import main
from tests.support.configs import write_config
from tests.support.corp import base_config
from tests.support.groups import Stay, current, group_code, stays, wecom_tag_id
from wecom_sim import Simulator

MINUTE = 60.0
GROUP_CALLS = ("externalcontact/groupchat/list", "externalcontact/groupchat/get")


@pytest.fixture
def rt(db_url: str, simulator: Simulator) -> Iterator[Runtime]:
    settings = settings_from_mapping(base_config(db_url, simulator.api_base), environ={})
    runtime = Runtime(settings)
    yield runtime
    runtime.wecom.close()
    runtime.close()


def _joined(sim: Simulator, chat_id: str, member: str) -> datetime:
    return datetime.fromtimestamp(sim.group_chats[chat_id].members[member].join_time, UTC)


def _queued_tags(rt: Runtime, userid: str, ext: str) -> set[str]:
    """Return WeCom ids of the tags queued (pending) for one relation."""
    with rt.db.read() as session:
        return set(
            session.scalars(
                select(Tag.wecom_tag_id)
                .join(OutboxTagChange, OutboxTagChange.tag_id == Tag.id)
                .join(OutboxOperation, OutboxOperation.id == OutboxTagChange.operation_id)
                .where(
                    OutboxOperation.staff_userid == userid,
                    OutboxOperation.external_userid == ext,
                    OutboxOperation.status == "pending",
                )
            )
        )


def test_sync_absorbs_the_groups_changed_while_down_and_a_second_sync_changes_nothing(
    rt: Runtime,
    simulator: Simulator,
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    simulator.add_staff("alice", "Alice")
    simulator.add_staff("bob", "Bob")
    friend = simulator.add_relation("alice", name="王小明")
    run_sync(db=rt.db, wecom=rt.wecom)  # the staff are known: channels can name them
    community = live_codes.create(
        live_codes.ChannelSpec(name="社群", staff=("alice",), tags=(TagPath("来源", "社群"),)),
        db=rt.db,
        wecom=rt.wecom,
    ).state

    # While the bot is down (no callback reaches it): two groups, joins through the code.
    vip = simulator.create_group_chat("alice", "VIP会员群", ["bob", friend]).chat_id
    group_code(rt.wecom, vip, community)
    simulator.advance_time(MINUTE)
    stranger = simulator.join_group_by_qr(community, name="李雷").members[0]  # nobody's customer
    bobs = simulator.add_relation("bob", name="韩梅梅")
    simulator.join_group_by_qr(community, external_userid=bobs)
    other = simulator.create_group_chat("bob", "售后群", [friend]).chat_id

    config = write_config(tmp_path, db_url, api_base=simulator.api_base)
    assert main(["--config", str(config), "sync"]) == 0
    out = capsys.readouterr().out
    assert "客户群 groups: 2（新增 2，更新 0，解散 0）；入群 7，退群 0" in out
    assert "按群活码补打渠道标签 1 位" in out
    tag = wecom_tag_id(rt.db, "来源", "社群")
    assert simulator.relation_tags("bob", bobs) == {tag}  # queued, then sent by the CLI
    assert current(rt.db, vip) == sorted(["alice", "bob", friend, stranger, bobs])
    assert current(rt.db, other) == sorted(["bob", friend])
    assert stays(rt.db, vip, stranger) == [
        Stay(stranger, _joined(simulator, vip, stranger), 3, community, "社群", False, False)
    ]

    # Still down: a member leaves, a group is renamed, the other dismissed, and the
    # stranger becomes alice's customer.
    simulator.advance_time(MINUTE)
    simulator.leave_group(vip, friend)
    simulator.rename_group(vip, "VIP会员群（新）")
    simulator.dismiss_group(other)
    simulator.add_relation("alice", stranger)
    before = datetime.now(UTC)
    report = run_sync(db=rt.db, wecom=rt.wecom)
    assert (report.groups, report.groups_updated, report.groups_dismissed) == (1, 1, 1)
    assert (report.group_joins, report.group_leaves) == (0, 3)  # one left, two by dismissal
    assert (report.group_joins_tagged, report.group_join_operations) == (1, 1)
    assert _queued_tags(rt, "alice", stranger) == {tag}
    assert current(rt.db, vip) == sorted(["alice", "bob", stranger, bobs])
    assert current(rt.db, other) == []
    (gone,) = stays(rt.db, vip, friend)
    assert gone.left_at is not None
    assert gone.left_at >= before.replace(microsecond=0)
    assert (gone.quit_scene, gone.dismissed) == (None, False)  # dated by the sync
    assert all(s.dismissed for s in stays(rt.db, other))
    with rt.db.read() as session:
        names = dict(session.execute(select(GroupChat.chat_id, GroupChat.name)).all())
        assert names == {vip: "VIP会员群（新）", other: "售后群"}

    # Nothing changed since: the next sync writes nothing for the groups.
    again = run_sync(db=rt.db, wecom=rt.wecom)
    assert again.changed == 0, again
    assert again.calls.get(GROUP_CALLS[1]) == 1  # the one live group read, the dismissed not
    written: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            written.append(" ".join(statement.split())[:80])

    event.listen(rt.db.engine, "before_cursor_execute", record)
    try:
        quiet = sync_groups(db=rt.db, wecom=rt.wecom, owners=["alice", "bob"])
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", record)
    assert (quiet.groups, quiet.changed) == (1, 0)
    # WeCom's call budget keeps its leases in the database; the groups wrote nothing.
    assert [w for w in written if "group_" in w or "outbox" in w] == [], written
