"""The WeCom simulator over real HTTP: API behaviour, errcodes, faults, callbacks, crypto."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from defusedxml import ElementTree

from tests.support.corp import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN
from tests.support.corp import VECTORS as VECTORS_PATH
from tests.support.sim_http import Api, Receiver, receiving
from tests.support.simulators import start_simulator
from wecom_sim import CallbackCrypto, CallbackCryptoError, Simulator
from wecom_sim.command import simulator_command
from wecom_sim.crypto import signature

VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def api(simulator: Simulator) -> Api:
    """A client with a token for the simulator."""
    return Api(simulator)


@pytest.fixture
def receiver(simulator: Simulator) -> Iterator[Receiver]:
    """A callback receiver wired as the simulator's callback_url."""
    with receiving(simulator) as rec:
        yield rec


def live_code(api: Api, state: str, users: list[str], kind: int = 1) -> str:
    answer = api.post(
        "externalcontact/add_contact_way", {"type": kind, "scene": 2, "state": state, "user": users}
    )
    assert answer["errcode"] == 0, answer
    config_id: str = answer["config_id"]
    return config_id


# --- crypto ---------------------------------------------------------------------------


def test_crypto_decrypts_the_official_post_vector() -> None:
    config, post = VECTORS["config"], VECTORS["post"]
    crypto = CallbackCrypto(config["token"], config["encoding_aes_key"], config["corp_id"])
    crypto.verify(post["msg_signature"], post["timestamp"], post["nonce"], post["encrypt"])
    assert crypto.decrypt(post["encrypt"]) == post["expected_plaintext"]
    envelope = ElementTree.fromstring(post["body"])
    assert envelope.findtext("Encrypt") == post["encrypt"]


def test_crypto_decrypts_the_official_echostr_vector() -> None:
    config, get = VECTORS["config"], VECTORS["url_verify_get"]
    crypto = CallbackCrypto(config["token"], config["encoding_aes_key"], config["corp_id"])
    crypto.verify(get["msg_signature"], get["timestamp"], get["nonce"], get["echostr"])
    assert crypto.decrypt(get["echostr"]) == get["expected_echostr_plaintext"]


def test_crypto_refuses_a_wrong_signature_and_a_wrong_corp() -> None:
    config, post = VECTORS["config"], VECTORS["post"]
    crypto = CallbackCrypto(config["token"], config["encoding_aes_key"], config["corp_id"])
    with pytest.raises(CallbackCryptoError):
        crypto.verify("0" * 40, post["timestamp"], post["nonce"], post["encrypt"])
    with pytest.raises(CallbackCryptoError):
        crypto.verify(post["msg_signature"], post["timestamp"], "1", post["encrypt"])
    other = CallbackCrypto(config["token"], config["encoding_aes_key"], "wwsomeoneelse")
    with pytest.raises(CallbackCryptoError):
        other.decrypt(post["encrypt"])


def test_crypto_round_trip_pads_to_32_bytes() -> None:
    import base64

    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
    for message in ["", "x", "中文消息" * 50, "a" * (32 - 20 - len(CORP_ID) % 32)]:
        encrypt = crypto.encrypt(message)
        assert len(base64.b64decode(encrypt)) % 32 == 0
        assert crypto.decrypt(encrypt) == message
    # 16 + 4 + 12 + 16 = 48 bytes of plaintext -> 16 bytes of padding, value 16
    aligned = CallbackCrypto(TOKEN, AES_KEY, "c" * 16)
    plain_len = 16 + 4 + 12 + 16
    encrypt = aligned.encrypt("m" * 12, random_prefix=b"r" * 16)
    assert len(base64.b64decode(encrypt)) == plain_len + 16
    # a plaintext already a multiple of 32 gets a whole block of padding
    full = CallbackCrypto(TOKEN, AES_KEY, "c" * 12)
    encrypt = full.encrypt("m" * 32, random_prefix=b"r" * 16)  # 16+4+32+12 = 64
    assert len(base64.b64decode(encrypt)) == 96


def test_signature_is_sha1_of_the_sorted_parts() -> None:
    import hashlib

    digest = hashlib.sha1(b"".join(sorted([b"t", b"2", b"1", b"e"])), usedforsecurity=False)
    assert signature("t", "2", "1", "e") == digest.hexdigest()


# --- tokens and the request pipeline -----------------------------------------------------


def test_gettoken_checks_credentials_and_reuses_a_live_token(simulator: Simulator) -> None:
    url = simulator.api_base + "gettoken"

    def get(**params: str) -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(url, params=params, timeout=5).json()
        return answer

    assert get(corpid=CORP_ID, corpsecret="wrong")["errcode"] == 40001
    assert get(corpid="wwother", corpsecret=SECRET)["errcode"] == 40001
    assert get(corpsecret=SECRET)["errcode"] == 41002
    assert get(corpid=CORP_ID)["errcode"] == 41004
    first = get(corpid=CORP_ID, corpsecret=SECRET)
    assert first["errcode"] == 0
    assert first["expires_in"] == 7200
    assert get(corpid=CORP_ID, corpsecret=SECRET)["access_token"] == first["access_token"]


def test_tokens_expire_and_unknown_or_missing_tokens_are_refused(simulator: Simulator) -> None:
    simulator.token_ttl = 60
    api = Api(simulator)
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 0
    assert api.get("externalcontact/get_follow_user_list", access_token="nope")["errcode"] == 40014
    assert api.get("externalcontact/get_follow_user_list", access_token="")["errcode"] == 41001
    simulator.advance_time(61)
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 42001
    renewed = api.fetch_token()
    assert renewed != api.token
    assert api.get("externalcontact/get_follow_user_list", access_token=renewed)["errcode"] == 0
    simulator.expire_tokens()
    answer = api.get("externalcontact/get_follow_user_list", access_token=renewed)
    assert answer["errcode"] == 42001


def test_methods_bodies_and_paths_are_checked(simulator: Simulator, api: Api) -> None:
    assert api.get("externalcontact/mark_tag")["errcode"] == 40058
    assert api.post("externalcontact/get")["errcode"] == 40058
    bad = requests.post(
        simulator.api_base + "externalcontact/mark_tag",
        params={"access_token": api.token},
        data=b"{not json",
        timeout=5,
    )
    assert bad.json()["errcode"] == 47001
    unknown = requests.get(simulator.api_base + "no/such/api", timeout=5)
    assert unknown.status_code == 404
    assert unknown.json()["errcode"] == 48001
    assert api.get("externalcontact/get")["errcode"] == 40063


def test_calls_are_counted_by_path_and_errcode(simulator: Simulator, api: Api) -> None:
    api.get("externalcontact/get", external_userid="wmnobody")
    api.get("externalcontact/get_follow_user_list")
    calls = simulator.calls
    assert calls["gettoken"] == 1
    assert calls["externalcontact/get"] == 1
    assert calls[("externalcontact/get", 40096)] == 1
    assert calls[("externalcontact/get_follow_user_list", 0)] == 1
    simulator.reset_counters()
    assert simulator.calls == {}


def test_rate_limit_answers_45009_until_the_window_passes(simulator: Simulator, api: Api) -> None:
    simulator.rate_limit_per_minute = 3
    codes = [api.get("externalcontact/get_follow_user_list")["errcode"] for _ in range(5)]
    assert codes == [0, 0, 0, 45009, 45009]
    # the limit is per API path
    assert api.get("externalcontact/list", userid="nobody")["errcode"] == 60111
    simulator.advance_time(61)
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 0
    assert simulator.calls[("externalcontact/get_follow_user_list", 45009)] == 2


def test_injected_faults_and_stalls_come_first(simulator: Simulator, api: Api) -> None:
    simulator.inject_fault("externalcontact/get_follow_user_list", errcode=-1, count=2)
    simulator.inject_fault("/cgi-bin/gettoken", errcode=45033)
    codes = [api.get("externalcontact/get_follow_user_list")["errcode"] for _ in range(3)]
    assert codes == [-1, -1, 0]
    answer = requests.get(
        simulator.api_base + "gettoken", params={"corpid": CORP_ID, "corpsecret": SECRET}, timeout=5
    ).json()
    assert answer["errcode"] == 45033
    simulator.inject_stall("externalcontact/get_follow_user_list", 0.3)
    started = time.perf_counter()
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 0
    assert time.perf_counter() - started >= 0.3  # the stall itself: a lower bound
    # count=1: the first call used the stall up, the next one finds none
    assert simulator.state.stalls["externalcontact/get_follow_user_list"] == []
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == 0


# --- customers -------------------------------------------------------------------------


def test_batch_get_by_user_pages_every_relation_once(simulator: Simulator, api: Api) -> None:
    simulator.seed(30, 70, tag_groups={"价值": ["高", "中", "低"]})
    users = [f"seed_u{i:04d}" for i in range(30)]
    seen: list[tuple[str, str]] = []
    cursor, pages = "", 0
    while True:
        answer = api.post(
            "externalcontact/batch/get_by_user",
            {"userid_list": users, "cursor": cursor, "limit": 100},
        )
        assert answer["errcode"] == 0, answer
        pages += 1
        for item in answer["external_contact_list"]:
            info = item["follow_info"]
            seen.append((info["userid"], item["external_contact"]["external_userid"]))
            assert set(info) >= {"userid", "createtime", "tag_id", "add_way", "state", "remark"}
        cursor = answer["next_cursor"]
        if not cursor:
            break
        assert not cursor.isdigit()
    assert len(seen) == len(set(seen)) == 2100
    assert pages == 21
    first = api.post("externalcontact/batch/get_by_user", {"userid_list": users})
    assert len(first["external_contact_list"]) == 50
    assert first["next_cursor"]


def test_batch_get_by_user_refuses_bad_arguments(api: Api, simulator: Simulator) -> None:
    simulator.add_staff("u1")
    post = api.post
    assert post("externalcontact/batch/get_by_user", {"userid_list": []})["errcode"] == 40058
    many = {"userid_list": ["u1"] * 101}
    assert post("externalcontact/batch/get_by_user", many)["errcode"] == 40058
    too_big = {"userid_list": ["u1"], "limit": 101}
    assert post("externalcontact/batch/get_by_user", too_big)["errcode"] == 40058
    junk = {"userid_list": ["u1"], "cursor": "!!junk!!"}
    assert post("externalcontact/batch/get_by_user", junk)["errcode"] == 50100
    assert post("externalcontact/batch/get_by_user", {"userid_list": ["ghost"]})["errcode"] == 60111


def test_get_list_and_follow_users(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("zhangsan", "张三")
    simulator.add_staff("lisi", "李四")
    simulator.add_staff("gone", active=False)
    tag_id = simulator.admin_create_tag("价值", "VIP")
    ext = simulator.add_relation("zhangsan", name="王五", unionid="ounion1", tag_ids=[tag_id])
    simulator.add_relation("lisi", ext)
    answer = api.get("externalcontact/get", external_userid=ext, cursor="")
    assert answer["errcode"] == 0
    assert answer["external_contact"]["name"] == "王五"
    assert answer["external_contact"]["unionid"] == "ounion1"
    follow = {f["userid"]: f for f in answer["follow_user"]}
    assert follow["zhangsan"]["tags"] == [
        {"group_name": "价值", "tag_name": "VIP", "type": 1, "tag_id": tag_id}
    ]
    assert "tags" not in follow["lisi"]  # WeCom leaves empty optional fields out
    assert "remark_corp_name" not in follow["lisi"]
    assert "remark_mobiles" not in follow["lisi"]
    assert api.get("externalcontact/get", external_userid="wmnobody")["errcode"] == 40096
    assert api.get("externalcontact/list", userid="zhangsan")["external_userid"] == [ext]
    assert api.get("externalcontact/list", userid="nobody")["errcode"] == 60111
    follow_users = api.get("externalcontact/get_follow_user_list")["follow_user"]
    assert set(follow_users) == {"zhangsan", "lisi"}


def test_remark_changes_given_fields(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    ext = simulator.add_relation("u1")
    body = {"userid": "u1", "external_userid": ext, "remark": "老客户", "description": "d"}
    assert api.post("externalcontact/remark", body)["errcode"] == 0
    follow = api.get("externalcontact/get", external_userid=ext)["follow_user"][0]
    assert (follow["remark"], follow["description"]) == ("老客户", "d")
    long = {"userid": "u1", "external_userid": ext, "remark": "x" * 21}
    assert api.post("externalcontact/remark", long)["errcode"] == 40058
    simulator.add_staff("u2")
    stranger = {"userid": "u2", "external_userid": ext, "remark": "x"}
    assert api.post("externalcontact/remark", stranger)["errcode"] == 84061


# --- live codes ------------------------------------------------------------------------


def test_contact_way_validation(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    simulator.add_staff("u2")
    simulator.add_staff("off", active=False)
    add = "externalcontact/add_contact_way"
    assert api.post(add, {"scene": 2, "user": ["u1"]})["errcode"] == 41037
    assert api.post(add, {"type": 3, "scene": 2, "user": ["u1"]})["errcode"] == 41038
    assert api.post(add, {"type": 1, "user": ["u1"]})["errcode"] == 41039
    assert api.post(add, {"type": 1, "scene": 5, "user": ["u1"]})["errcode"] == 41040
    assert api.post(add, {"type": 1, "scene": 2, "user": ["u1", "u2"]})["errcode"] == 40058
    assert api.post(add, {"type": 1, "scene": 2, "user": []})["errcode"] == 40058
    long_state = {"type": 1, "scene": 2, "user": ["u1"], "state": "s" * 31}
    assert api.post(add, long_state)["errcode"] == 40058
    assert api.post(add, {"type": 1, "scene": 2, "user": ["ghost"]})["errcode"] == 60111
    assert api.post(add, {"type": 1, "scene": 2, "user": ["off"]})["errcode"] == 41054
    crowd = {"type": 2, "scene": 2, "user": [f"u{i}" for i in range(101)]}
    assert api.post(add, crowd)["errcode"] == 41041
    button = api.post(add, {"type": 1, "scene": 1, "user": ["u1"], "state": "s" * 30})
    assert button["errcode"] == 0
    assert "qr_code" not in button


def test_contact_way_lifecycle(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    simulator.add_staff("u2")
    answer = api.post(
        "externalcontact/add_contact_way",
        {"type": 2, "scene": 2, "state": "ch_A", "remark": "渠道A", "user": ["u1"], "style": 2},
    )
    config_id = answer["config_id"]
    assert requests.get(answer["qr_code"], timeout=5).headers["Content-Type"] == "image/png"
    update = {"config_id": config_id, "user": ["u1", "u2"], "skip_verify": False}
    assert api.post("externalcontact/update_contact_way", update)["errcode"] == 0
    way = api.post("externalcontact/get_contact_way", {"config_id": config_id})["contact_way"]
    assert way["user"] == ["u1", "u2"]
    assert (way["state"], way["remark"], way["style"], way["skip_verify"]) == (
        "ch_A",
        "渠道A",
        2,
        False,
    )
    assert way["qr_code"] == answer["qr_code"]
    bad = {"config_id": config_id, "user": ["ghost"]}
    assert api.post("externalcontact/update_contact_way", bad)["errcode"] == 60111
    assert simulator.contact_ways[config_id].user == ["u1", "u2"]
    assert api.post("externalcontact/get_contact_way", {})["errcode"] == 41043
    assert api.post("externalcontact/get_contact_way", {"config_id": "x"})["errcode"] == 41044
    assert api.post("externalcontact/del_contact_way", {"config_id": config_id})["errcode"] == 0
    gone = api.post("externalcontact/get_contact_way", {"config_id": config_id})
    assert gone["errcode"] == 41044


def test_list_contact_way_pages(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    created = {live_code(api, f"s{i}", ["u1"]) for i in range(5)}
    listed: set[str] = set()
    cursor = ""
    while True:
        page = api.post("externalcontact/list_contact_way", {"limit": 2, "cursor": cursor})
        assert len(page["contact_way"]) <= 2
        listed |= {w["config_id"] for w in page["contact_way"]}
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert listed == created


# --- tags ----------------------------------------------------------------------------


def test_add_corp_tag_collapses_duplicates_and_reuses_groups(api: Api) -> None:
    first = api.post(
        "externalcontact/add_corp_tag",
        {"group_name": "价值", "tag": [{"name": "VIP"}, {"name": "VIP"}, {"name": "普通"}]},
    )
    assert first["errcode"] == 0
    group = first["tag_group"]
    assert [t["name"] for t in group["tag"]] == ["VIP", "普通"]
    again = api.post(
        "externalcontact/add_corp_tag", {"group_name": "价值", "tag": [{"name": "VIP"}]}
    )
    assert again["tag_group"]["group_id"] == group["group_id"]
    assert again["tag_group"]["tag"][0]["id"] == group["tag"][0]["id"]
    by_id = api.post(
        "externalcontact/add_corp_tag", {"group_id": group["group_id"], "tag": [{"name": "新"}]}
    )
    assert by_id["errcode"] == 0
    empty = api.post("externalcontact/add_corp_tag", {"group_name": "空", "tag": []})
    assert empty["errcode"] == 40058
    long_name = {"group_name": "g", "tag": [{"name": "x" * 31}]}
    assert api.post("externalcontact/add_corp_tag", long_name)["errcode"] == 40058
    unknown = {"group_id": "etnothing", "tag": [{"name": "x"}]}
    assert api.post("externalcontact/add_corp_tag", unknown)["errcode"] == 40068
    listing = api.post("externalcontact/get_corp_tag_list")["tag_group"]
    assert [(g["group_name"], len(g["tag"])) for g in listing] == [("价值", 3)]
    assert "deleted" not in listing[0]


def test_corp_tag_permissions_and_deleted_flags(simulator: Simulator, api: Api) -> None:
    console_tag = simulator.admin_create_tag("控制台", "手工")
    mine = api.post(
        "externalcontact/add_corp_tag",
        {"group_name": "应用", "tag": [{"name": "A"}, {"name": "B"}]},
    )["tag_group"]
    tag_a, tag_b = (t["id"] for t in mine["tag"])
    assert (
        api.post("externalcontact/edit_corp_tag", {"id": console_tag, "name": "x"})["errcode"]
        == 60011
    )
    assert api.post("externalcontact/del_corp_tag", {"tag_id": [console_tag]})["errcode"] == 60011
    assert api.post("externalcontact/edit_corp_tag", {"id": tag_a, "name": "B"})["errcode"] == 40071
    assert api.post("externalcontact/edit_corp_tag", {"id": tag_a, "name": "A2"})["errcode"] == 0
    assert (
        api.post("externalcontact/edit_corp_tag", {"id": "etno", "name": "x"})["errcode"] == 40068
    )
    assert api.post("externalcontact/del_corp_tag", {})["errcode"] == 40058
    assert api.post("externalcontact/del_corp_tag", {"tag_id": [tag_a]})["errcode"] == 0
    filtered = api.post("externalcontact/get_corp_tag_list", {"tag_id": [tag_a, tag_b]})
    tags = {t["id"]: t for t in filtered["tag_group"][0]["tag"]}
    assert tags[tag_a]["deleted"] is True
    assert tags[tag_b]["deleted"] is False
    assert api.post("externalcontact/del_corp_tag", {"tag_id": [tag_b]})["errcode"] == 0
    by_group = api.post("externalcontact/get_corp_tag_list", {"group_id": [mine["group_id"]]})
    assert by_group["tag_group"][0]["deleted"] is True  # emptying a group deletes it
    assert simulator.tag_catalogue() == {"控制台": {"手工": console_tag}}


def test_mark_tag(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    simulator.add_staff("u2")
    ext = simulator.add_relation("u1")
    group = api.post(
        "externalcontact/add_corp_tag", {"group_name": "g", "tag": [{"name": "a"}, {"name": "b"}]}
    )["tag_group"]
    tag_a, tag_b = (t["id"] for t in group["tag"])
    mark = "externalcontact/mark_tag"
    body = {"userid": "u1", "external_userid": ext, "add_tag": [tag_a, tag_b]}
    assert api.post(mark, body)["errcode"] == 0
    assert simulator.relation_tags("u1", ext) == {tag_a, tag_b}
    body = {"userid": "u1", "external_userid": ext, "remove_tag": [tag_a]}
    assert api.post(mark, body)["errcode"] == 0
    assert simulator.relation_tags("u1", ext) == {tag_b}
    assert api.post(mark, {"userid": "u1", "external_userid": ext})["errcode"] == 40058
    bad = {"userid": "u1", "external_userid": ext, "add_tag": ["etnope"]}
    assert api.post(mark, bad)["errcode"] == 40068
    stranger = {"userid": "u2", "external_userid": ext, "add_tag": [tag_a]}
    assert api.post(mark, stranger)["errcode"] == 84061
    assert simulator.relation_tags("u2", ext) == set()


# --- scans, welcome messages and callbacks ---------------------------------------------


def test_scan_round_robins_and_issues_single_use_welcome_codes(
    simulator: Simulator, api: Api
) -> None:
    simulator.add_staff("u1")
    simulator.add_staff("u2")
    live_code(api, "ch_multi", ["u1", "u2"], kind=2)
    first = simulator.scan("ch_multi", name="客户甲")
    second = simulator.scan("ch_multi")
    assert (first.userid, second.userid) == ("u1", "u2")
    assert first.external_userid.startswith("wm")
    assert len(first.external_userid) == 32
    assert first.callback_status is None  # no callback_url configured
    assert first.welcome_code
    send = "externalcontact/send_welcome_msg"
    body = {"welcome_code": first.welcome_code, "text": {"content": "欢迎"}}
    assert api.post(send, body)["errcode"] == 0
    assert api.post(send, body)["errcode"] == 41051
    assert api.post(send, {"text": {"content": "x"}})["errcode"] == 41049
    assert api.post(send, {"welcome_code": "bogus", "text": {"content": "x"}})["errcode"] == 41050
    huge = {"welcome_code": second.welcome_code, "text": {"content": "字" * 1334}}
    assert api.post(send, huge)["errcode"] == 45002
    record = next(w for w in simulator.welcomes if w.welcome_code == first.welcome_code)
    assert (record.userid, record.text) == ("u1", "欢迎")
    assert record.sent_at is not None
    # the same member scanned again by the same customer: no new welcome code
    again = simulator.scan("ch_multi", external_userid=first.external_userid)
    assert again.userid == "u1"
    assert again.welcome_code is None
    follow = api.get("externalcontact/get", external_userid=first.external_userid)["follow_user"]
    assert follow[0]["state"] == "ch_multi"
    assert follow[0]["add_way"] == 1


def test_welcome_codes_expire(simulator: Simulator, api: Api) -> None:
    simulator.welcome_code_ttl = 0.2
    simulator.add_staff("u1")
    live_code(api, "ch", ["u1"])
    scanned = simulator.scan("ch")
    simulator.advance_time(0.3)  # past the 0.2 s life of the code
    body = {"welcome_code": scanned.welcome_code, "text": {"content": "late"}}
    assert api.post("externalcontact/send_welcome_msg", body)["errcode"] == 41050
    simulator.welcome_code_ttl = 20.0
    fresh = simulator.scan("ch")
    simulator.advance_time(21)
    body = {"welcome_code": fresh.welcome_code, "text": {"content": "late"}}
    assert api.post("externalcontact/send_welcome_msg", body)["errcode"] == 41050


def test_scan_posts_an_encrypted_add_event(
    simulator: Simulator, api: Api, receiver: Receiver
) -> None:
    simulator.add_staff("zhangsan")
    live_code(api, "teststate", ["zhangsan"])
    result = simulator.scan("teststate", duplicate=True)
    assert result.callback_status == 200
    assert result.callback_ms is not None
    posts = [r for r in receiver.requests if r[0] == "POST"]
    assert len(posts) == 2
    assert posts[0] == posts[1]  # a retry is byte-identical
    event = receiver.events()[0]
    assert event == {
        "ToUserName": CORP_ID,
        "FromUserName": "sys",
        "CreateTime": event["CreateTime"],
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": "add_external_contact",
        "UserID": "zhangsan",
        "ExternalUserID": result.external_userid,
        "State": "teststate",
        "WelcomeCode": result.welcome_code,
    }
    assert abs(int(event["CreateTime"]) - time.time()) < 5
    assert [d.status for d in simulator.deliveries] == [200, 200]


def test_people_actions_post_their_events(
    simulator: Simulator, api: Api, receiver: Receiver
) -> None:
    simulator.add_staff("u1")
    simulator.add_staff("u2")
    ext = simulator.add_relation("u1")
    simulator.add_relation("u2", ext)
    tag = simulator.admin_create_tag("组", "甲")
    tag2 = simulator.admin_create_tag("组", "乙")
    simulator.staff_edit_tags("u1", ext, add=[tag, tag2])
    assert simulator.relation_tags("u1", ext) == {tag, tag2}
    simulator.admin_rename_tag(tag, "甲2")
    simulator.admin_delete_tag(tag)
    assert simulator.relation_tags("u1", ext) == {tag2}
    group_id = simulator.tag_group_id("组")
    assert group_id
    simulator.admin_delete_group(group_id)
    simulator.customer_deletes_staff(ext, "u1")
    simulator.staff_deletes_customer(ext, "u2")
    kinds = [
        (e["Event"], e["ChangeType"], e.get("TagType", ""), e.get("Id") or e.get("UserID"))
        for e in receiver.events()
    ]
    assert kinds == [
        ("change_external_tag", "create", "tag_group", group_id),
        ("change_external_tag", "create", "tag", tag2),
        ("change_external_contact", "edit_external_contact", "", "u1"),
        ("change_external_tag", "update", "tag", tag),
        ("change_external_tag", "delete", "tag", tag),
        ("change_external_tag", "delete", "tag_group", group_id),
        ("change_external_contact", "del_follow_user", "", "u1"),
        ("change_external_contact", "del_external_contact", "", "u2"),
    ]
    assert api.get("externalcontact/get", external_userid=ext)["errcode"] == 84061
    with pytest.raises(LookupError):
        simulator.customer_deletes_staff(ext, "u1")


def test_callback_failures_are_reported(simulator: Simulator, api: Api, receiver: Receiver) -> None:
    simulator.add_staff("u1")
    live_code(api, "ch", ["u1"])
    receiver.status = 500
    assert simulator.scan("ch").callback_status == 500
    simulator.callback_url = "http://127.0.0.1:9/unreachable"
    result = simulator.scan("ch")
    assert result.callback_status is None
    assert simulator.deliveries[-1].error


def test_build_callback_and_url_verification(simulator: Simulator, receiver: Receiver) -> None:
    xml = simulator.event_xml(
        "change_external_contact", "transfer_fail", {"FailReason": "customer_refused"}
    )
    params, body = simulator.build_callback(xml)
    answer = requests.post(receiver.url, params=params, data=body, timeout=5)
    assert answer.status_code == 200
    assert receiver.events()[0]["FailReason"] == "customer_refused"
    check = simulator.verify_callback_url("1616140317555161061")
    assert (check.status, check.body) == (200, "1616140317555161061")


# --- 群发 and app messages --------------------------------------------------------------


def test_group_message_tasks_results_and_quota(api: Api) -> None:
    sim_quota = start_simulator(monthly_quota=1)
    try:
        run_group_message_scenario(sim_quota)
    finally:
        sim_quota.stop()


def run_group_message_scenario(sim: Simulator) -> None:
    api = Api(sim)
    sim.add_staff("u1")
    a, b, c = (sim.add_relation("u1") for _ in range(3))
    template = {
        "external_userid": [a, b, c, "wmstranger"],
        "sender": "u1",
        "text": {"content": "本月活动"},
    }
    created = api.post("externalcontact/add_msg_template", template)
    assert created["errcode"] == 0
    assert created["fail_list"] == ["wmstranger"]
    msgid = created["msgid"]
    # still being dispatched right after creation
    assert api.post("externalcontact/get_groupmsg_task", {"msgid": msgid})["errcode"] == 41063
    sim.advance_time(sim.groupmsg_task_delay)
    task = api.post("externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"]
    assert task == [{"userid": "u1", "status": 0, "send_time": 0}]
    sim.staff_deletes_customer(b, "u1")
    assert sim.confirm_group_msg(msgid, "u1") == {a: 1, b: 2, c: 1}
    task = api.post("externalcontact/get_groupmsg_task", {"msgid": msgid})["task_list"]
    assert task[0]["status"] == 2
    second = api.post("externalcontact/add_msg_template", {**template, "external_userid": [a]})
    assert sim.confirm_group_msg(second["msgid"], "u1") == {a: 3}  # quota of 1 a month
    results: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = api.post(
            "externalcontact/get_groupmsg_send_result",
            {"msgid": msgid, "userid": "u1", "limit": 2, "cursor": cursor},
        )
        results += page["send_list"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert {r["external_userid"]: r["status"] for r in results} == {a: 1, b: 2, c: 1}
    assert api.post("externalcontact/get_groupmsg_task", {})["errcode"] == 41046
    assert api.post("externalcontact/get_groupmsg_task", {"msgid": "msgx"})["errcode"] == 41047
    nobody = {"external_userid": ["wmstranger"], "text": {"content": "x"}}
    assert api.post("externalcontact/add_msg_template", nobody)["errcode"] == 41048


def test_group_message_tag_filter(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    vip = simulator.admin_create_tag("价值", "VIP")
    tagged = simulator.add_relation("u1", tag_ids=[vip])
    simulator.add_relation("u1")
    body = {
        "sender": "u1",
        "tag_filter": {"group_list": [{"tag_list": [vip]}]},
        "text": {"content": "VIP 专享"},
    }
    created = api.post("externalcontact/add_msg_template", body)
    sends = simulator.group_msgs[created["msgid"]].sends
    assert [s.external_userid for s in sends] == [tagged]


def test_message_send_records_and_reports_invalid_users(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    body = {
        "touser": "u1|ghost",
        "msgtype": "text",
        "agentid": AGENT_ID,
        "text": {"content": "新客户"},
    }
    answer = api.post("message/send", body)
    assert answer["errcode"] == 0
    assert answer["invaliduser"] == "ghost"
    assert simulator.app_messages == [body]
    assert api.post("message/send", {**body, "agentid": 1})["errcode"] == 301002
    assert api.post("message/send", {**body, "touser": "ghost"})["errcode"] == 81013


# --- control API and command -------------------------------------------------------------


def test_control_api_drives_the_simulator(simulator: Simulator, receiver: Receiver) -> None:
    control = simulator.url + "/control"

    def post(path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return requests.post(control + path, json=body or {}, timeout=5)

    assert post("/staff", {"userid": "u1", "name": "张三"}).status_code == 200
    api = Api(simulator)
    live_code(api, "ch", ["u1"])
    scanned = post("/scan", {"state": "ch"}).json()
    assert scanned["userid"] == "u1"
    assert scanned["callback_status"] == 200
    assert post("/scan", {"state": "nope"}).status_code == 404
    assert post("/scan", {}).status_code == 400
    tag_id = post("/admin/create_tag", {"group_name": "g", "tag_name": "t"}).json()["tag_id"]
    assert requests.get(control + "/tags", timeout=5).json() == {"catalogue": {"g": {"t": tag_id}}}
    post("/faults", {"api_path": "externalcontact/get_follow_user_list", "errcode": -1})
    assert api.get("externalcontact/get_follow_user_list")["errcode"] == -1
    calls = requests.get(control + "/calls", timeout=5).json()
    assert calls["by_errcode"]["externalcontact/get_follow_user_list"] == {"-1": 1}
    welcomes = requests.get(control + "/welcomes", timeout=5).json()["welcomes"]
    assert welcomes[0]["welcome_code"] == scanned["welcome_code"]
    put = requests.put(control + "/callback_url", json={"url": "http://x/cb"}, timeout=5)
    assert put.json() == {"url": "http://x/cb"}
    assert simulator.callback_url == "http://x/cb"


def test_seed_builds_thousands_of_relations(simulator: Simulator) -> None:
    simulator.seed(50, 200, tag_groups={"g": ["a", "b"]}, prefix="bulk")
    assert len(simulator.customers_of("bulk_u0049")) == 200
    assert simulator.summary()["relations"] == 10000


def test_command_refuses_a_bad_aes_key() -> None:
    result = CliRunner().invoke(simulator_command, ["--aes-key", "short", "--port", "0"])
    assert result.exit_code == 2
    assert "43 characters" in result.output


# --- held to WeCom's strictness ---------------------------------------------------------


def test_optional_fields_are_left_out_when_empty_and_unionid_needs_binding(
    simulator: Simulator, api: Api
) -> None:
    simulator.add_staff("u1")
    plain = simulator.add_relation("u1", unionid="ounion_plain")
    noted = simulator.add_relation("u1")
    body = {"userid": "u1", "external_userid": noted, "remark_company": "某公司"}
    assert api.post("externalcontact/remark", {**body, "remark_mobiles": ["13800000000"]}) == {
        "errcode": 0,
        "errmsg": "ok",
    }
    follow = api.get("externalcontact/get", external_userid=plain)["follow_user"][0]
    assert not {"tags", "remark_corp_name", "remark_mobiles", "state"} & set(follow)
    follow = api.get("externalcontact/get", external_userid=noted)["follow_user"][0]
    assert (follow["remark_corp_name"], follow["remark_mobiles"]) == ("某公司", ["13800000000"])
    batch = {"userid_list": ["u1"]}

    def unionids() -> dict[str, str | None]:
        items = api.post("externalcontact/batch/get_by_user", batch)["external_contact_list"]
        return {
            i["external_contact"]["external_userid"]: i["external_contact"].get("unionid")
            for i in items
        }

    contact = api.get("externalcontact/get", external_userid=plain)["external_contact"]
    assert contact["unionid"] == "ounion_plain"  # bound (the default)
    assert unionids()[plain] == "ounion_plain"
    simulator.unionid_bound = False
    assert (
        "unionid" not in api.get("externalcontact/get", external_userid=plain)["external_contact"]
    )
    assert unionids() == {plain: None, noted: None}


def test_relations_carry_personal_and_rule_group_tags(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    corp = simulator.admin_create_tag("价值", "VIP")
    rule = simulator.add_rule_tag("规则组", "高频")
    ext = simulator.add_relation("u1", tag_ids=[corp, rule], personal_tags=[("", "爱喝茶")])
    tags = api.get("externalcontact/get", external_userid=ext)["follow_user"][0]["tags"]
    assert tags == [
        {"group_name": "价值", "tag_name": "VIP", "type": 1, "tag_id": corp},
        {"group_name": "", "tag_name": "爱喝茶", "type": 2},  # personal tags have no id
        {"group_name": "规则组", "tag_name": "高频", "type": 3, "tag_id": rule},
    ]
    items = api.post("externalcontact/batch/get_by_user", {"userid_list": ["u1"]})
    assert items["external_contact_list"][0]["follow_info"]["tag_id"] == [corp, rule]
    library = api.post("externalcontact/get_corp_tag_list", {})["tag_group"]
    assert rule not in {t["id"] for g in library for t in g["tag"]}
    assert simulator.relation_tag_kinds("u1", ext) == {
        "corp": [corp],
        "personal": [["", "爱喝茶"]],
        "rule": [rule],
    }
    mark = {"userid": "u1", "external_userid": ext, "remove_tag": [rule]}
    assert api.post("externalcontact/mark_tag", mark)["errcode"] == 0
    assert simulator.relation_tag_kinds("u1", ext)["rule"] == []


def test_message_send_drops_beyond_30_a_minute_and_1000_an_hour(
    simulator: Simulator, api: Api
) -> None:
    simulator.add_staff("u1")
    simulator.add_staff("u2")
    body = {"touser": "u1", "msgtype": "text", "agentid": AGENT_ID, "text": {"content": "x"}}
    answers = [api.post("message/send", body)["errcode"] for _ in range(31)]
    assert answers == [0] * 31  # the 31st is dropped silently
    assert len(simulator.app_messages) == 30
    assert simulator.app_message_drops == {"u1": 1}
    both = {**body, "touser": "u1|u2"}
    assert api.post("message/send", both)["errcode"] == 0  # reaches u2 only
    assert len(simulator.app_messages) == 31
    assert simulator.app_message_drops == {"u1": 2}
    sent = 30
    while sent < 1000:  # a full minute's worth, minute after minute
        simulator.advance_time(60)
        batch = min(30, 1000 - sent)
        assert all(api.post("message/send", body)["errcode"] == 0 for _ in range(batch))
        sent += batch
    assert simulator.app_message_drops == {"u1": 2}
    simulator.advance_time(60)
    assert api.post("message/send", body)["errcode"] == 0
    assert simulator.app_message_drops == {"u1": 3}  # 1,000 within the hour
    control = requests.get(simulator.url + "/control/app_messages", timeout=5).json()
    assert control["dropped"] == {"u1": 3}
    simulator.advance_time(3600)
    delivered = len(simulator.app_messages)
    assert api.post("message/send", body)["errcode"] == 0
    assert len(simulator.app_messages) == delivered + 1


def test_post_apis_read_only_the_json_body(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    tag = simulator.admin_create_tag("g", "t")
    ext = simulator.add_relation("u1")
    # parameters in the query string are not seen
    marked = api.post(
        "externalcontact/mark_tag", {"add_tag": [tag]}, userid="u1", external_userid=ext
    )
    assert marked["errcode"] == 40063
    assert simulator.relation_tags("u1", ext) == set()
    batch = api.post("externalcontact/batch/get_by_user", {}, userid="u1")
    assert batch["errcode"] == 40058
    # numbers sent as strings are refused, not coerced
    body = {"touser": "u1", "msgtype": "text", "agentid": str(AGENT_ID), "text": {"content": "x"}}
    assert api.post("message/send", body)["errcode"] == 40058
    paged = {"userid_list": ["u1"], "limit": "10"}
    assert api.post("externalcontact/batch/get_by_user", paged)["errcode"] == 40058
    way = {"type": "1", "scene": 2, "user": ["u1"]}
    assert api.post("externalcontact/add_contact_way", way)["errcode"] != 0
    assert simulator.app_messages == []
    # GET APIs read the query string, where every value is text
    assert api.get("externalcontact/list", userid="u1")["external_userid"] == [ext]


def test_a_friend_rescanning_posts_nothing_and_a_readd_has_no_welcome_code(
    simulator: Simulator, api: Api, receiver: Receiver
) -> None:
    simulator.add_staff("u1")
    live_code(api, "ch", ["u1"])
    first = simulator.scan("ch")
    again = simulator.scan("ch", external_userid=first.external_userid)
    assert (again.welcome_code, again.callback_status) == (None, None)
    assert len(receiver.events()) == 1  # WeCom adds nobody, so sends no event
    simulator.customer_deletes_staff(first.external_userid, "u1")
    readd = simulator.scan("ch", external_userid=first.external_userid)
    assert readd.callback_status == 200
    event = receiver.events()[-1]
    assert (event["ChangeType"], event["State"]) == ("add_external_contact", "ch")
    assert "WelcomeCode" not in event  # they chatted before
    simulator.staff_deletes_customer(first.external_userid, "u1")
    fresh = simulator.scan("ch", external_userid=first.external_userid, chatted=False)
    assert fresh.welcome_code
    assert receiver.events()[-1]["WelcomeCode"] == fresh.welcome_code


def test_a_welcome_after_the_customer_left_fails(simulator: Simulator, api: Api) -> None:
    simulator.add_staff("u1")
    live_code(api, "ch", ["u1"])
    scanned = simulator.scan("ch")
    simulator.customer_deletes_staff(scanned.external_userid, "u1")
    body = {"welcome_code": scanned.welcome_code, "text": {"content": "欢迎"}}
    assert api.post("externalcontact/send_welcome_msg", body)["errcode"] == 84061
    assert all(w.sent_at is None for w in simulator.welcomes)


def test_rate_limits_per_minute_and_hour_are_set_from_the_control_api(
    simulator: Simulator, api: Api
) -> None:
    control = simulator.url + "/control"
    path = "externalcontact/get_follow_user_list"
    limit = {"api_path": path, "per_minute": 2, "per_hour": 3}
    assert requests.post(control + "/rate_limit", json=limit, timeout=5).status_code == 200
    assert [api.get(path)["errcode"] for _ in range(3)] == [0, 0, 45009]
    assert api.get("externalcontact/list", userid="nobody")["errcode"] == 60111  # other paths
    simulator.advance_time(61)
    assert [api.get(path)["errcode"] for _ in range(2)] == [45009, 45009]  # 3 an hour used
    simulator.advance_time(3600)
    assert api.get(path)["errcode"] == 0
    corp = {"per_minute": 1}
    assert requests.post(control + "/rate_limit", json=corp, timeout=5).status_code == 200
    assert simulator.rate_limit_per_minute == 1
    settings = {"unionid_bound": False, "groupmsg_task_delay": 0.5}
    answer = requests.post(control + "/settings", json=settings, timeout=5).json()
    assert (answer["unionid_bound"], answer["groupmsg_task_delay"]) == (False, 0.5)
    assert answer["rate_limit_per_minute"] == 1


def test_control_api_adds_rule_and_personal_tags(simulator: Simulator) -> None:
    control = simulator.url + "/control"
    simulator.add_staff("u1")
    rule = requests.post(
        control + "/rule_tags", json={"group_name": "规则", "tag_name": "活跃"}, timeout=5
    ).json()["tag_id"]
    body = {"userid": "u1", "tag_ids": [rule], "personal_tags": [["", "老乡"]]}
    ext = requests.post(control + "/relations", json=body, timeout=5).json()["external_userid"]
    params = {"userid": "u1", "external_userid": ext}
    kinds = requests.get(control + "/relation_tags", params=params, timeout=5).json()
    assert kinds == {"tag_ids": [], "personal": [["", "老乡"]], "rule": [rule]}
