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
from tests.support.configs import settings_for
from tests.support.corp import base_config
from tests.support.live import LiveServer
from tests.support.waiting import wait_for
from wecom_sim import Simulator
from wecom_sim.callbacks import Delivery

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
    # The same customer scanning again while a friend: WeCom posts nothing at all.
    again = simulator.scan(state, external_userid="wmREPEAT000000000000000000001")
    assert (again.welcome_code, again.callback_status) == (None, None)
    # Deleting the member and adding again: an add event, but no welcome code to use.
    simulator.customer_deletes_staff(first.external_userid, "alice")
    readd = simulator.scan(state, external_userid="wmREPEAT000000000000000000001")
    assert readd.welcome_code is None
    assert readd.callback_status == 200
    rt = live.runtime

    def all_done() -> bool:
        with rt.db.read() as session:
            return session.query(InboxEvent).filter_by(status="done").count() == 3

    wait_for(all_done, what="add, delete and re-add processed")
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


def test_a_readd_without_welcome_code_gets_its_tags_and_no_welcome(
    live: LiveServer, simulator: Simulator
) -> None:
    simulator.add_staff("alice", "Alice")
    state = make_channel(live, "复购", ["alice"], ["来源/复购"], welcome="欢迎回来")
    first = simulator.scan(state)
    tag_id = simulator.tag_catalogue()["来源"]["复购"]
    wait_for(lambda: simulator.relation_tags("alice", first.external_userid) == {tag_id})
    simulator.customer_deletes_staff(first.external_userid, "alice")
    readd = simulator.scan(state, external_userid=first.external_userid)
    assert readd.welcome_code is None  # the pair chatted before
    wait_for(
        lambda: simulator.relation_tags("alice", first.external_userid) == {tag_id},
        what="channel tag on the re-added relation",
    )
    rt = live.runtime

    def done() -> bool:
        with rt.db.read() as session:
            statuses = [e.status for e in session.query(InboxEvent)]
        return len(statuses) == 3 and set(statuses) == {"done"}

    wait_for(done, what="events processed")
    assert simulator.calls.get("externalcontact/send_welcome_msg") == 1  # the first add only
    with rt.db.read() as session:
        relation = session.query(FollowRelation).one()
        assert relation.status == "active"


def test_an_add_whose_customer_already_left_sends_no_welcome_and_ends_lost(
    live: LiveServer, simulator: Simulator
) -> None:
    simulator.add_staff("alice", "Alice")
    state = make_channel(live, "快闪", ["alice"], ["来源/快闪"], welcome="欢迎")
    scan = simulator.scan(state, deliver=False)
    assert scan.welcome_code
    xml = simulator.event_xml(
        "change_external_contact",
        "add_external_contact",
        {
            "UserID": "alice",
            "ExternalUserID": scan.external_userid,
            "State": state,
            "WelcomeCode": scan.welcome_code,
        },
    )
    # the customer deletes alice before the add event reaches us
    simulator.customer_deletes_staff(scan.external_userid, "alice")
    assert simulator.post_callback(xml)[0].status == 200
    rt = live.runtime

    def settled() -> bool:
        with rt.db.read() as session:
            statuses = [e.status for e in session.query(InboxEvent)]
        return len(statuses) == 2 and set(statuses) <= {"done", "ignored"}

    wait_for(settled, what="both events settled")
    assert all(w.sent_at is None for w in simulator.welcomes)
    assert simulator.relation_tags("alice", scan.external_userid) == set()
    with rt.db.read() as session:
        relations = session.query(FollowRelation).all()
        assert [r.status for r in relations] in ([], ["lost"])


def _add_xml(simulator: Simulator, state: str) -> tuple[str, str]:
    """Scan without delivering; return the customer and the add event WeCom would post."""
    scan = simulator.scan(state, deliver=False)
    xml = simulator.event_xml(
        "change_external_contact",
        "add_external_contact",
        {
            "UserID": "alice",
            "ExternalUserID": scan.external_userid,
            "State": state,
            "WelcomeCode": scan.welcome_code or "",
        },
    )
    return scan.external_userid, xml


def _in_parallel(simulator: Simulator, url: str, xml: str, n: int) -> list[Delivery]:
    """POST the identical callback `n` times at once, as WeCom's retries can arrive."""
    params, body = simulator.sender.build(xml)
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: simulator.sender.post(url, params, body, xml), range(n)))


def test_five_parallel_redeliveries_are_processed_ahead_of_a_later_event(
    db_url: str, simulator: Simulator
) -> None:
    # One inbox worker: it processes in hand-off order, so a stalled event shows as one
    # still pending when the event sent after it is done.
    cfg = base_config(db_url, api_base=simulator.api_base)
    cfg["jobs"] = {"inbox_workers": 1}
    server = LiveServer(settings_from_mapping(cfg, environ={}), jobs=True).start()
    simulator.callback_url = url = server.url + "/wecom/callback"
    try:
        simulator.add_staff("alice", "Alice")
        state = make_channel(server, "并发", ["alice"], ["来源/并发"], welcome="欢迎")
        tag_id = simulator.tag_catalogue()["来源"]["并发"]
        rt = server.runtime
        for trial in range(10):
            customer, xml = _add_xml(simulator, state)
            assert [d.status for d in _in_parallel(simulator, url, xml, 5)] == [200] * 5
            later, later_xml = _add_xml(simulator, state)
            assert simulator.post_callback(later_xml)[0].status == 200

            def later_done(key: str = later) -> bool:
                with rt.db.read() as session:
                    return (
                        session.query(InboxEvent)
                        .filter(InboxEvent.payload.contains(key), InboxEvent.status == "done")
                        .count()
                        == 1
                    )

            wait_for(later_done, what=f"trial {trial}: the later event processed")
            with rt.db.read() as session:
                events = session.query(InboxEvent).filter(InboxEvent.payload.contains(customer))
                assert [(e.status, e.duplicates) for e in events] == [("done", 4)], trial
            assert simulator.relation_tags("alice", customer) == {tag_id}, trial
        assert simulator.calls.get("externalcontact/send_welcome_msg") == 20
        assert simulator.calls.get(("externalcontact/send_welcome_msg", 41051), 0) == 0
    finally:
        server.stop()
