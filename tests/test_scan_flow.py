"""Scan → channel tags and welcome, over real HTTP against the simulator, with re-deliveries."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from bot.channels import live_codes
from bot.config import settings_from_mapping
from bot.db.models import Channel, FollowRelation, InboxEvent
from bot.tags.catalogue import TagPath
from tests.conftest import LiveServer, base_config
from tests.support.configs import settings_for
from tests.support.waiting import wait_for
from wecom_sim import Simulator

T = TypeVar("T")


@pytest.fixture
def live(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    """The bot with its workers, talking to the simulator, which calls back into it."""
    settings = settings_from_mapping(base_config(db_url, api_base=simulator.api_base), environ={})
    server = LiveServer(settings, jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    yield server
    server.stop()


# Scans per second. Test, simulator and bot share one process (and often two busy
# cores); the bench drives a separate `tagbot serve` at 200/s.
SCAN_RATE = 20.0


def paced(n: int, rate: float, fn: Callable[[int], T]) -> list[T]:
    """Call fn(0..n-1) at `rate` calls per second from a few threads; return the results."""
    start = time.monotonic()

    def at_its_time(i: int) -> T:
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return fn(i)

    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(at_its_time, range(n)))


def make_channel(
    server: LiveServer, name: str, staff: list[str], tags: list[str], **kw: Any
) -> str:
    """Create a channel through the service; return its state."""
    rt = server.runtime
    ch = live_codes.create(
        live_codes.ChannelSpec(
            name=name,
            staff=tuple(staff),
            tags=tuple(TagPath.parse(t) for t in tags),
            **kw,
        ),
        db=rt.db,
        wecom=rt.wecom,
    )
    return ch.state


@pytest.mark.slow
def test_200_scans_across_3_channels_tag_and_welcome_exactly_once(
    live: LiveServer, simulator: Simulator
) -> None:
    for u in ("alice", "bob", "carol", "dave"):
        simulator.add_staff(u, u.title())
    spec = {
        "公众号文章": (["alice", "bob"], ["来源/公众号", "兴趣/护肤"], "你好 {name}，我是{staff}"),
        "线下门店": (["carol"], ["来源/门店"], "欢迎光临"),
        "直播": (["dave", "alice"], ["来源/直播", "兴趣/彩妆", "活动/双11"], "直播福利"),
    }
    states = {
        name: make_channel(live, name, staff, tags, welcome=text)
        for name, (staff, tags, text) in spec.items()
    }
    catalogue = simulator.tag_catalogue()
    expected_ids = {
        name: {catalogue[t.split("/")[0]][t.split("/")[1]] for t in tags}
        for name, (_, tags, _) in spec.items()
    }
    simulator.reset_counters()

    names = list(spec)
    scans = paced(
        200,
        SCAN_RATE,
        lambda i: (names[i % 3], simulator.scan(states[names[i % 3]], duplicate=True)),
    )
    assert all(s.callback_status == 200 for _, s in scans)
    assert [d.status for d in simulator.deliveries] == [200] * 400, simulator.deliveries[-1]

    def all_tagged() -> bool:
        return all(
            simulator.relation_tags(s.userid, s.external_userid) == expected_ids[name]
            for name, s in scans
        )

    wait_for(all_tagged, timeout=30, what="channel tags on every relation")
    rt = live.runtime

    def all_done() -> bool:
        with rt.db.read() as session:
            return session.query(InboxEvent).filter(InboxEvent.status != "done").count() == 0

    wait_for(all_done, what="every event done")
    welcomes = {w.welcome_code: w for w in simulator.welcomes}
    # Every scan's welcome went out while its code was valid, after the code was issued.
    # How fast is bench/callback_load.py's "scan → welcome" figure.
    ours = [welcomes[s.welcome_code or ""] for _, s in scans]
    unsent = [w.welcome_code for w in ours if w.sent_at is None]
    assert unsent == [], simulator.calls
    assert all((w.sent_at or 0.0) >= w.issued_at for w in ours)
    assert simulator.calls.get(("externalcontact/send_welcome_msg", 41050), 0) == 0
    texts = {w.text for w in welcomes.values()}
    assert "欢迎光临" in texts
    assert any(t and t.startswith("你好 客户") and "我是" in t for t in texts)

    calls = simulator.calls
    assert calls.get("externalcontact/send_welcome_msg") == 200
    assert calls.get("externalcontact/mark_tag") == 200
    assert calls.get("externalcontact/get") == 200

    with rt.db.read() as session:
        events = session.query(InboxEvent).all()
        assert len(events) == 200
        assert {e.status for e in events} == {"done"}
        assert sum(e.duplicates for e in events) == 200
        assert session.query(FollowRelation).count() == 200
        counts = {c.name: c.scans for c in session.query(Channel)}
    assert sorted(counts.values()) == [66, 67, 67]


def test_welcome_uses_attachments_and_absent_code_sends_nothing(
    live: LiveServer, simulator: Simulator
) -> None:
    simulator.add_staff("alice", "Alice")
    link = {"msgtype": "link", "link": {"title": "新人礼", "url": "https://example.com/gift"}}
    state = make_channel(live, "附件", ["alice"], [], welcome="hi", attachments=(link,))
    first = simulator.scan(state, external_userid="wmREPEAT000000000000000000001")
    wait_for(
        lambda: any(w.sent_at for w in simulator.welcomes if w.welcome_code == first.welcome_code),
        what="welcome",
    )
    sent = next(w for w in simulator.welcomes if w.welcome_code == first.welcome_code)
    assert sent.attachments == [link]
    # The same customer scanning again has no welcome code: nothing to send.
    again = simulator.scan(state, external_userid="wmREPEAT000000000000000000001")
    assert again.welcome_code is None
    rt = live.runtime

    def both_done() -> bool:
        with rt.db.read() as session:
            return session.query(InboxEvent).filter_by(status="done").count() == 2

    wait_for(both_done, what="both events processed")
    assert simulator.calls.get("externalcontact/send_welcome_msg") == 1


def test_welcome_names_staff_by_their_display_name_else_their_userid(
    db_url: str, simulator: Simulator
) -> None:
    # Apps WeCom does not give member names to see only userids after a sync.
    simulator.add_staff("liuyang", "")
    simulator.add_staff("chenjing", "")
    settings = settings_for(db_url, simulator, staff={"LiuYang": "刘洋"})
    server = LiveServer(settings, jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    try:
        welcome = "{name}您好，我是您的专属顾问{staff}"
        named = make_channel(server, "双11", ["liuyang"], [], welcome=welcome)
        unnamed = make_channel(server, "门店", ["chenjing"], [], welcome=welcome)
        codes = [
            simulator.scan(named, external_userid="wmNAMED0000000000000000000001", name="小美"),
            simulator.scan(unnamed, external_userid="wmNAMED0000000000000000000002", name="阿强"),
        ]
        wait_for(lambda: sum(1 for w in simulator.welcomes if w.sent_at) == 2, what="welcomes")
        texts = {w.welcome_code: w.text for w in simulator.welcomes}
        assert [texts[c.welcome_code or ""] for c in codes] == [
            "小美您好，我是您的专属顾问刘洋",
            "阿强您好，我是您的专属顾问chenjing",
        ]
    finally:
        server.stop()
