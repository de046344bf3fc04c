"""WeCom answers parsed by the frozen models: required ids, defaults for what WeCom omits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.errors import WeComError
from bot.wecom.types import (
    MALFORMED,
    AppMessageResult,
    ContactFollow,
    ExternalContact,
    GroupMsg,
    TagGroupInfo,
)


def test_fields_wecom_leaves_out_when_empty_take_their_defaults() -> None:
    got = ExternalContact.parse(
        {
            "external_userid": "wm1",
            "name": "王",
            "follow_user": [{"userid": "u1", "createtime": 1700000000}],
            "unknown_new_field": {"x": 1},
        }
    )
    assert (got.external_userid, got.type, got.unionid) == ("wm1", 1, "")
    (follow,) = got.follow_users
    assert (follow.userid, follow.tags, follow.remark_mobiles, follow.state) == ("u1", (), (), "")


def test_aliases_and_shapes_follow_wecom_names() -> None:
    pair = ContactFollow.parse(
        {
            "external_contact": {"external_userid": "wm1"},
            "follow_info": {"userid": "u1", "tag_id": ["t1", "t2"]},
        }
    )
    assert (pair.contact.external_userid, pair.follow_info.tag_ids) == ("wm1", ("t1", "t2"))
    group = TagGroupInfo.parse(
        {"group_id": "g", "group_name": "价值", "tag": [{"id": "t", "name": "VIP"}]}
    )
    assert [t.name for t in group.tags] == ["VIP"]
    msg = GroupMsg.parse({"msgid": "m", "text": {"content": "你好"}, "attachments": [{"a": 1}]})
    assert (msg.text, dict(msg.attachments[0])) == ("你好", {"a": 1})
    sent = AppMessageResult.parse({"msgid": "x", "invaliduser": "u1|u2", "invalidparty": ""})
    assert (sent.invalid_users, sent.invalid_parties) == (("u1", "u2"), ())


def test_an_answer_without_an_id_or_with_a_wrong_type_is_a_wecom_error() -> None:
    with pytest.raises(WeComError) as missing:
        ExternalContact.parse({"name": "王"}, api="externalcontact/get")
    assert missing.value.errcode == MALFORMED
    assert missing.value.api == "externalcontact/get"
    assert "external_userid" in str(missing.value)
    with pytest.raises(WeComError, match=r"follow_user\.0\.userid"):
        ExternalContact.parse({"external_userid": "wm1", "follow_user": [{"userid": 7}]})
    with pytest.raises(WeComError, match=r"tags\.0\.type"):
        ExternalContact.parse(
            {"external_userid": "wm1", "follow_user": [{"userid": "u1", "tags": [{"tag_id": "t"}]}]}
        )


def test_parsed_records_are_frozen() -> None:
    got = ExternalContact.parse({"external_userid": "wm1"})
    with pytest.raises(ValidationError):
        got.name = "x"  # type: ignore[misc]
    assert hash(got) == hash(ExternalContact.parse({"external_userid": "wm1"}))
