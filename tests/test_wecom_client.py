"""WeComClient against the WeCom simulator over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from bot import metrics
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.types import utcnow
from bot.errors import WeComError
from bot.wecom import metrics as wecom_metrics
from bot.wecom.client import WeComClient
from bot.wecom.crypto import CallbackCrypto
from bot.wecom.events import parse_event
from tests.support.clock import PassingClock
from tests.support.corp import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, base_config
from tests.support.wecom_clients import FOLLOW, make_client
from wecom_sim import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator with two members, so the cheap follow-user list call has content."""
    s = Simulator(
        corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID, token=TOKEN, encoding_aes_key=AES_KEY
    ).start()
    s.add_staff("u1", "张三")
    s.add_staff("u2", "李四")
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _metrics_served() -> None:
    """Register the WeCom metrics as the app factory does, so REGISTRY shows them."""
    metrics.register(wecom_metrics.METRICS)


def counted(api: str, errcode: int) -> float:
    """Read tagbot_wecom_calls_total for one api and errcode."""
    value = REGISTRY.get_sample_value(
        "tagbot_wecom_calls_total", {"api": api, "errcode": str(errcode)}
    )
    return value or 0.0


def test_a_call_inside_a_write_transaction_is_refused(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim)
    with db.write(), pytest.raises(RuntimeError, match="inside a write transaction"):
        client.get_follow_user_list()
    assert sim.calls.get(FOLLOW, 0) == 0
    assert client.get_follow_user_list() == ["u1", "u2"]  # outside one it goes through
    assert sim.calls[FOLLOW] == 1
    client.close()


def test_token_is_fetched_once_and_shared_between_clients(db: Database, sim: Simulator) -> None:
    first, second = make_client(db, sim), make_client(db, sim)
    timed = REGISTRY.get_sample_value("tagbot_wecom_call_seconds_count", {"api": FOLLOW}) or 0
    assert first.get_follow_user_list() == ["u1", "u2"]
    assert second.get_follow_user_list() == ["u1", "u2"]
    assert first.get_access_token() == second.get_access_token()
    assert sim.calls["gettoken"] == 1
    assert sim.calls[FOLLOW] == 2
    assert REGISTRY.get_sample_value("tagbot_wecom_call_seconds_count", {"api": FOLLOW}) == (
        timed + 2
    )
    first.close()


def test_concurrent_clients_refresh_once(db: Database, sim: Simulator) -> None:
    clients = [make_client(db, sim) for _ in range(5)]
    errors: list[BaseException] = []

    def work(c: WeComClient) -> None:
        try:
            c.get_follow_user_list()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sim.calls["gettoken"] == 1


def test_expired_token_is_refetched_and_the_call_retried_once(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim)
    client.get_follow_user_list()
    old = client.get_access_token()
    sim.expire_tokens()
    before = counted(FOLLOW, 42001)
    assert client.get_follow_user_list() == ["u1", "u2"]
    assert sim.calls[(FOLLOW, 42001)] == 1
    assert sim.calls["gettoken"] == 2
    assert client.get_access_token() != old
    assert counted(FOLLOW, 42001) == before + 1
    # A second client on the same database picks up the new token without fetching.
    make_client(db, sim).get_follow_user_list()
    assert sim.calls["gettoken"] == 2


def test_token_refetch_failure_is_retried_like_any_transient_error(
    db: Database, sim: Simulator
) -> None:
    client = make_client(db, sim)
    client.get_follow_user_list()
    sim.expire_tokens()
    sim.inject_fault("gettoken", errcode=-1, count=1)
    assert client.get_follow_user_list() == ["u1", "u2"]
    assert sim.calls[("gettoken", -1)] == 1
    assert sim.calls[(FOLLOW, 42001)] == 1


def test_invalid_token_twice_is_not_retried_again(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim)
    sim.inject_fault(FOLLOW, errcode=40014, count=2)
    with pytest.raises(WeComError) as err:
        client.get_follow_user_list()
    assert err.value.errcode == 40014
    assert sim.calls[FOLLOW] == 2


def test_short_token_ttl_is_refreshed(db: Database, sim: Simulator) -> None:
    sim.token_ttl = 2
    passed = timedelta(0)

    def wall_clock() -> datetime:
        return utcnow() + passed

    def pass_time(seconds: float) -> None:
        nonlocal passed
        passed += timedelta(seconds=seconds)
        sim.advance_time(seconds)

    client = make_client(db, sim, refresh_margin=1, wall_clock=wall_clock)
    client.get_follow_user_list()
    pass_time(1.2)  # under a second left: refreshed before use
    client.get_follow_user_list()
    pass_time(1.0)
    client.get_follow_user_list()
    assert sim.calls.get((FOLLOW, 42001), 0) == 0
    assert sim.calls["gettoken"] >= 2


def test_system_busy_is_retried_with_backoff(db: Database, sim: Simulator) -> None:
    clock = PassingClock()
    client = make_client(db, sim, backoff_base=0.1, clock=clock, sleep=clock.sleep)
    sim.inject_fault(FOLLOW, errcode=-1, count=2)
    before = counted(FOLLOW, -1)
    assert client.get_follow_user_list() == ["u1", "u2"]
    assert sim.calls[(FOLLOW, -1)] == 2
    assert sim.calls[(FOLLOW, 0)] == 1
    # equal jitter: waits of at least 0.05 then 0.1 seconds, one before each retry
    assert len(clock.slept) == 2
    assert 0.05 <= clock.slept[0] <= 0.1
    assert 0.1 <= clock.slept[1] <= 0.2
    assert counted(FOLLOW, -1) == before + 2


@pytest.mark.parametrize("errcode", [-1, 6000, 45033])
def test_transient_errors_give_up_after_max_retries(
    db: Database, sim: Simulator, errcode: int
) -> None:
    client = make_client(db, sim, wecom={"max_retries": 2})
    sim.inject_fault(FOLLOW, errcode=errcode, count=10)
    with pytest.raises(WeComError) as err:
        client.get_follow_user_list()
    assert (err.value.errcode, err.value.retryable, err.value.api) == (errcode, True, FOLLOW)
    assert sim.calls[FOLLOW] == 3


def test_permanent_errors_are_not_retried(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim)
    sim.inject_fault(FOLLOW, errcode=48002, count=5)
    with pytest.raises(WeComError) as err:
        client.get_follow_user_list()
    assert (err.value.errcode, err.value.retryable) == (48002, False)
    assert sim.calls[FOLLOW] == 1


def test_rate_limited_api_pauses_until_the_window_passes(db: Database, sim: Simulator) -> None:
    # The simulator's window is 60 s; lift the limit during the pause as its ending would.
    clock = PassingClock(on_sleep=sim.reset_counters)
    client = make_client(db, sim, pause_seconds=0.6, clock=clock, sleep=clock.sleep)
    sim.rate_limit_per_minute = 3
    for _ in range(3):
        client.get_follow_user_list()
    assert client.get_follow_user_list() == ["u1", "u2"]
    assert clock.slept == [pytest.approx(0.6)]  # the whole pause, once
    assert sim.calls[(FOLLOW, 0)] == 1  # counters were reset by the lift


def test_rate_limit_pause_is_bounded(db: Database, sim: Simulator) -> None:
    clock = PassingClock()
    client = make_client(db, sim, pause_seconds=0.2, max_pauses=2, clock=clock, sleep=clock.sleep)
    client.get_access_token()
    sim.rate_limit_per_minute = 1
    client.get_follow_user_list()
    with pytest.raises(WeComError) as err:
        client.get_follow_user_list()
    assert (err.value.errcode, err.value.retryable) == (45009, True)
    assert clock.slept == [pytest.approx(0.2), pytest.approx(0.2)]
    assert sim.calls[(FOLLOW, 45009)] == 3  # first try plus one after each pause


def test_stall_longer_than_timeout_is_a_retryable_network_error(
    db: Database, sim: Simulator
) -> None:
    client = make_client(db, sim, wecom={"timeout_seconds": 0.5, "max_retries": 0})
    client.get_access_token()
    sim.inject_stall(FOLLOW, seconds=1.5)
    before = counted(FOLLOW, -2)
    with pytest.raises(WeComError) as err:
        client.get_follow_user_list()
    # The client gave up while the simulator was still stalling: no answer was sent yet.
    assert sim.calls.get((FOLLOW, 0), 0) == 0
    assert (err.value.errcode, err.value.retryable) == (-2, True)
    assert counted(FOLLOW, -2) == before + 1


def test_stall_is_retried_when_retries_allowed(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim, wecom={"timeout_seconds": 0.5, "max_retries": 1})
    client.get_access_token()
    sim.inject_stall(FOLLOW, seconds=1.0)
    assert client.get_follow_user_list() == ["u1", "u2"]
    assert sim.calls[FOLLOW] == 2


def test_non_idempotent_call_is_not_blindly_retried_after_timeout(
    db: Database, sim: Simulator
) -> None:
    client = make_client(db, sim, wecom={"timeout_seconds": 0.5})
    client.get_access_token()
    sim.inject_stall("externalcontact/add_contact_way", seconds=1.0)
    with pytest.raises(WeComError) as err:
        client.add_contact_way(type=1, user=["u1"], state="s1")
    assert (err.value.errcode, err.value.retryable) == (-2, False)
    assert sim.calls["externalcontact/add_contact_way"] == 1


class _Gateway:
    """A real HTTP front that hands out tokens and answers every API call 502, counting them."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.calls: dict[str, int] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?")[0].removeprefix("/cgi-bin/")
                gateway.calls[path] = gateway.calls.get(path, 0) + 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if path == "gettoken":
                    body = b'{"errcode":0,"access_token":"tok","expires_in":7200}'
                    self.send_response(200)
                else:
                    body = b"<html>502 Bad Gateway</html>"
                    self.send_response(502)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 (http.server's names)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.api_base = f"http://127.0.0.1:{self.server.server_address[1]}/cgi-bin/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_gateway_5xx_on_a_non_idempotent_call_is_not_retried(db: Database) -> None:
    gateway = _Gateway()
    try:
        config = base_config(db.url, api_base=gateway.api_base)
        config["wecom"]["max_retries"] = 2
        settings = settings_from_mapping(config, environ={})
        client = WeComClient(settings.wecom, settings.limits, db=db, backoff_base=0.01)
        with pytest.raises(WeComError) as err:
            client.add_msg_template(sender="u1", external_userids=["wm1"], text="hi")
        assert (err.value.errcode, err.value.retryable) == (-2, False)
        assert "may have taken effect" in str(err.value)
        assert gateway.calls["externalcontact/add_msg_template"] == 1
        # An idempotent call behind the same gateway is retried as before.
        with pytest.raises(WeComError) as err:
            client.get_follow_user_list()
        assert err.value.retryable
        assert gateway.calls["externalcontact/get_follow_user_list"] == 3
    finally:
        gateway.stop()


def test_unreachable_wecom_is_a_retryable_network_error(db: Database) -> None:
    config = base_config(db.url, api_base="http://127.0.0.1:9/cgi-bin/")
    config["wecom"]["max_retries"] = 1
    settings = settings_from_mapping(config, environ={})
    client = WeComClient(settings.wecom, settings.limits, db=db, backoff_base=0.01)
    with pytest.raises(WeComError) as err:
        client.get_follow_user_list()
    assert (err.value.errcode, err.value.retryable, err.value.api) == (-2, True, "gettoken")


def test_a_refused_connection_is_retried_even_for_a_non_idempotent_call(
    db: Database, sim: Simulator
) -> None:
    # The token comes from the database (shared with a client that reached WeCom), so
    # the refused connection is the API call's own: it never reached WeCom, retry is safe.
    make_client(db, sim).get_access_token()
    config = base_config(db.url, api_base="http://127.0.0.1:9/cgi-bin/")
    config["wecom"]["max_retries"] = 1
    settings = settings_from_mapping(config, environ={})
    client = WeComClient(settings.wecom, settings.limits, db=db, backoff_base=0.01)
    before = counted("externalcontact/add_msg_template", -2)
    with pytest.raises(WeComError) as err:
        client.add_msg_template(sender="u1", external_userids=["wm1"], text="hi")
    assert (err.value.errcode, err.value.retryable) == (-2, True)
    assert "may have taken effect" not in str(err.value)
    assert counted("externalcontact/add_msg_template", -2) == before + 2  # tried, retried once


def test_client_side_rate_limit_spreads_calls(db: Database, sim: Simulator) -> None:
    # 10 calls per (shortened) 1 s window; the simulator itself would allow far more.
    clock = PassingClock()
    client = make_client(
        db, sim, calls_per_minute=10, rate_window=1.0, clock=clock, sleep=clock.sleep
    )
    client.get_access_token()
    stamps: list[float] = []
    for _ in range(25):
        client.get_follow_user_list()
        stamps.append(clock())
    assert stamps[9] == 0.0  # a burst up to the limit is not delayed
    assert stamps[-1] >= 2.0  # 25 calls need three windows
    assert all(stamps[i + 10] - stamps[i] >= 0.95 for i in range(15))
    assert sim.calls[FOLLOW] == 25
    assert sim.calls.get((FOLLOW, 45009), 0) == 0


def test_bad_secret_is_never_retried(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim, wecom={"secret": "wrong-secret"})
    before = counted("gettoken", 40001)
    with pytest.raises(WeComError) as err:
        client.get_follow_user_list()
    assert (err.value.errcode, err.value.retryable, err.value.api) == (40001, False, "gettoken")
    assert sim.calls["gettoken"] == 1
    assert sim.calls.get(FOLLOW, 0) == 0
    assert counted("gettoken", 40001) == before + 1


def test_batch_get_by_user_pages(db: Database, sim: Simulator) -> None:
    ids = {sim.add_relation("u1", name=f"客户{i}") for i in range(5)}
    ids |= {sim.add_relation("u2", name=f"客户{i}") for i in range(3)}
    client = make_client(db, sim)
    seen: list[tuple[str, str]] = []
    cursor = ""
    pages = 0
    while True:
        items, cursor = client.batch_get_by_user(["u1", "u2"], cursor=cursor, limit=3)
        pages += 1
        assert len(items) <= 3
        seen += [(i.follow_info.userid, i.contact.external_userid) for i in items]
        if not cursor:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 8
    assert {e for _, e in seen} == ids
    assert sim.calls["externalcontact/batch/get_by_user"] == 3
    everything = list(client.iter_batch_get_by_user(["u1", "u2"], limit=2))
    assert len(everything) == 8
    assert all(c.contact.name.startswith("客户") for c in everything)


def test_customer_tags_of_every_kind_and_absent_optional_fields(
    db: Database, sim: Simulator
) -> None:
    corp = sim.admin_create_tag("客户等级", "VIP")
    rule = sim.add_rule_tag("规则组", "高频")
    ext = sim.add_relation("u1", tag_ids=[corp, rule], personal_tags=[("", "爱喝茶")])
    sim.add_relation("u2", ext)  # no tags, no remarks: those fields are left out
    sim.unionid_bound = False
    client = make_client(db, sim)
    contact = client.get_external_contact(ext)
    assert contact.unionid == ""
    follow = {f.userid: f for f in contact.follow_users}
    assert [(t.type, t.tag_name, t.tag_id) for t in follow["u1"].tags] == [
        (1, "VIP", corp),
        (2, "爱喝茶", ""),
        (3, "高频", rule),
    ]
    assert (follow["u2"].tags, follow["u2"].remark_mobiles, follow["u2"].state) == ((), (), "")
    page, _ = client.batch_get_by_user(["u1"])
    assert page[0].follow_info.tag_ids == (corp, rule)
    assert page[0].contact.unionid == ""


def test_customer_with_tags_and_paging_followers(db: Database, sim: Simulator) -> None:
    tag_id = sim.admin_create_tag("客户等级", "VIP")
    ext = sim.add_relation("u1", name="王五", unionid="un1", state="ch1", tag_ids=[tag_id])
    for i in range(501):  # more than one page of followers (500)
        sim.add_staff(f"s{i:03d}")
        sim.add_relation(f"s{i:03d}", ext)
    client = make_client(db, sim)
    contact = client.get_external_contact(ext)
    assert contact.name == "王五"
    assert contact.unionid == "un1"
    assert len(contact.follow_users) == 502
    assert sim.calls["externalcontact/get"] == 2
    mine = next(f for f in contact.follow_users if f.userid == "u1")
    assert mine.state == "ch1"
    assert [(t.group_name, t.tag_name, t.tag_id) for t in mine.tags] == [
        ("客户等级", "VIP", tag_id)
    ]
    assert ext in client.list_external_contacts("u1")
    assert client.list_external_contacts("u2") == []


def test_contact_way_lifecycle(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim)
    config_id, qr = client.add_contact_way(
        type=2, scene=2, user=["u1", "u2"], remark="渠道A", skip_verify=False, state="ch_A"
    )
    assert config_id
    assert qr.startswith("http")
    way = client.get_contact_way(config_id)
    assert (way.state, way.skip_verify, way.user, way.remark) == (
        "ch_A",
        False,
        ("u1", "u2"),
        "渠道A",
    )
    client.update_contact_way(config_id, user=["u2"])
    way = client.get_contact_way(config_id)
    assert way.user == ("u2",)
    assert way.skip_verify is False  # wechatpy's helper would have reset it to True
    assert way.remark == "渠道A"
    with pytest.raises(ValueError, match="unknown"):
        client.update_contact_way(config_id, bogus=1)
    assert config_id in client.list_contact_way()
    client.del_contact_way(config_id)
    assert config_id not in client.list_contact_way()


def test_list_contact_way_pages(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim)
    made = {client.add_contact_way(type=1, user=["u1"], state=f"st{i}")[0] for i in range(5)}
    assert set(client.list_contact_way(limit=2)) == made
    assert sim.calls["externalcontact/list_contact_way"] == 3


def test_corp_tags_and_mark_tag(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim)
    group = client.add_corp_tag(["高价值", "中价值"], group_name="价值分层")
    assert group.group_name == "价值分层"
    ids = {t.name: t.id for t in group.tags}
    assert set(ids) == {"高价值", "中价值"}
    more = client.add_corp_tag(["低价值"], group_id=group.group_id)
    assert [t.name for t in more.tags] == ["低价值"]
    catalogue = client.get_corp_tag_list()
    mine = next(g for g in catalogue if g.group_id == group.group_id)
    assert {t.name for t in mine.tags} == {"高价值", "中价值", "低价值"}
    assert [g.group_id for g in client.get_corp_tag_list(group_ids=[group.group_id])] == [
        group.group_id
    ]
    client.edit_corp_tag(ids["高价值"], name="高价值客户")
    ext = sim.add_relation("u1")
    client.mark_tag("u1", ext, add=[ids["高价值"], ids["中价值"]])
    client.mark_tag("u1", ext, remove=[ids["中价值"]])
    assert sim.relation_tags("u1", ext) == {ids["高价值"]}
    calls = sim.calls["externalcontact/mark_tag"]
    client.mark_tag("u1", ext)  # nothing to do costs nothing
    assert sim.calls["externalcontact/mark_tag"] == calls
    client.del_corp_tag(tag_ids=[ids["中价值"]])
    left = client.get_corp_tag_list(group_ids=[group.group_id])
    assert "中价值" not in {t.name for g in left for t in g.tags if not t.deleted}
    with pytest.raises(ValueError, match="tag_ids or group_ids"):
        client.del_corp_tag()
    with pytest.raises(ValueError, match="exactly one"):
        client.add_corp_tag(["x"])


def test_welcome_remark_and_app_message(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim)
    client.add_contact_way(type=1, user=["u1"], state="welcome_ch")
    scanned = sim.scan("welcome_ch", name="赵六", deliver=False)
    client.send_welcome_msg(
        scanned.welcome_code,
        "欢迎！",
        attachments=[{"msgtype": "link", "link": {"title": "官网", "url": "https://example.com"}}],
    )
    assert [w.welcome_code for w in sim.welcomes] == [scanned.welcome_code]
    with pytest.raises(WeComError) as err:  # a code works once
        client.send_welcome_msg(scanned.welcome_code, "again")
    assert err.value.errcode in (41050, 41051)
    assert err.value.retryable is False
    client.remark("u1", scanned.external_userid, remark="老客户", description="来自官网")
    contact = client.get_external_contact(scanned.external_userid)
    assert contact.follow_users[0].remark == "老客户"
    result = client.send_app_message(["u1", "nobody"], text="新客户：赵六")
    assert result.msgid
    assert result.invalid_users == ("nobody",)
    card = client.send_app_message(
        ["u1"], textcard={"title": "新客户", "description": "渠道A", "url": "https://x.example"}
    )
    assert card.invalid_users == ()
    assert len(sim.app_messages) == 2
    with pytest.raises(ValueError, match="text or textcard"):
        client.send_app_message(["u1"])


def test_group_message_task_and_results(db: Database, sim: Simulator) -> None:
    customers = [sim.add_relation("u1", name=f"c{i}") for i in range(3)]
    client = make_client(db, sim)
    msgid, fail = client.add_msg_template(
        sender="u1", external_userids=[*customers, "wmunknown"], text="新品上市"
    )
    assert msgid
    assert "wmunknown" in fail
    with pytest.raises(WeComError) as not_ready:  # WeCom is still dispatching the task
        client.get_groupmsg_task(msgid)
    assert (not_ready.value.errcode, not_ready.value.retryable) == (41063, True)
    sim.advance_time(sim.groupmsg_task_delay)
    tasks = client.get_groupmsg_task(msgid)
    assert [(t.userid, t.status) for t in tasks] == [("u1", 0)]
    sim.confirm_group_msg(msgid, "u1")
    assert [(t.userid, t.status) for t in client.get_groupmsg_task(msgid)] == [("u1", 2)]
    results = client.get_groupmsg_send_result(msgid, "u1")
    assert {r.external_userid for r in results} == set(customers)
    assert all(r.status == 1 for r in results)


def test_callback_from_the_simulator_decrypts_and_parses(sim: Simulator) -> None:
    """Our crypto against the simulator's independent implementation."""
    xml = sim.event_xml(
        "change_external_contact",
        "add_external_contact",
        {"UserID": "u1", "ExternalUserID": "wo1", "State": "ch1", "WelcomeCode": "WC"},
    )
    query, body = sim.build_callback(xml)
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
    plain = crypto.decrypt(query["msg_signature"], query["timestamp"], query["nonce"], body)
    event = parse_event(plain)
    assert (event.userid, event.external_userid, event.state, event.welcome_code) == (
        "u1",
        "wo1",
        "ch1",
        "WC",
    )


def test_groupmsg_list_v2_pages_and_filters_by_creator(db: Database, sim: Simulator) -> None:
    client = make_client(db, sim)
    friend1, friend2 = sim.add_relation("u1"), sim.add_relation("u2")
    made = [
        client.add_msg_template(sender="u1", external_userids=[friend1], text=f"第{i}条")[0]
        for i in range(3)
    ]
    client.add_msg_template(
        sender="u2",
        external_userids=[friend2],
        text="李四的",
        attachments=[{"msgtype": "link", "link": {"title": "t", "url": "https://x.example"}}],
    )
    now = int(utcnow().timestamp())
    before = sim.calls.get("externalcontact/get_groupmsg_list_v2", 0)
    listed = client.get_groupmsg_list_v2(
        start_time=now - 60, end_time=now + 60, creator="u1", limit=1
    )
    assert [m.msgid for m in listed] == made
    assert [m.text for m in listed] == ["第0条", "第1条", "第2条"]
    assert {m.creator for m in listed} == {"u1"}
    # one page per message (limit 1), and the last page says there is no more
    assert sim.calls["externalcontact/get_groupmsg_list_v2"] - before == 3
    everyone = client.get_groupmsg_list_v2(start_time=now - 60, end_time=now + 60)
    assert len(everyone) == 4
    assert dict(everyone[-1].attachments[0])["msgtype"] == "link"
    assert client.get_groupmsg_list_v2(start_time=now - 7200, end_time=now - 3600) == []
    with pytest.raises(ValueError, match="one month"):
        client.get_groupmsg_list_v2(start_time=now - 40 * 86400, end_time=now)
    client.close()
