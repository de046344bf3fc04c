"""parse_event over the 客户联系 callback shapes of wecom-api.md §2."""

from __future__ import annotations

import dataclasses

import pytest

from bot.errors import CallbackError
from bot.wecom.events import CallbackEvent, parse_event

HEAD = (
    "<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>{t}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
)


def _xml(body: str, t: int = 1403610513) -> str:
    return HEAD.format(t=t) + body + "</xml>"


ADD = _xml(
    "<Event><![CDATA[change_external_contact]]></Event>"
    "<ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID>"
    "<ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA]]></ExternalUserID>"
    "<State><![CDATA[teststate]]></State><WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>"
)


def test_add_external_contact() -> None:
    ev = parse_event(ADD)
    assert ev.event == "change_external_contact"
    assert ev.change_type == "add_external_contact"
    assert ev.create_time == 1403610513
    assert ev.userid == "zhangsan"
    assert ev.external_userid == "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"
    assert ev.state == "teststate"
    assert ev.welcome_code == "WELCOMECODE"
    assert ev.fields["FromUserName"] == "sys"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.state = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ev.fields["State"] = "x"  # type: ignore[index]


def test_del_external_contact_and_transfer_fail() -> None:
    ev = parse_event(
        _xml(
            "<Event><![CDATA[change_external_contact]]></Event>"
            "<ChangeType><![CDATA[del_external_contact]]></ChangeType>"
            "<UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[wo1]]></ExternalUserID>"
            "<Source><![CDATA[DELETE_BY_TRANSFER]]></Source>"
        )
    )
    assert (ev.change_type, ev.source, ev.welcome_code) == (
        "del_external_contact",
        "DELETE_BY_TRANSFER",
        "",
    )
    ev = parse_event(
        _xml(
            "<Event><![CDATA[change_external_contact]]></Event>"
            "<ChangeType><![CDATA[transfer_fail]]></ChangeType>"
            "<FailReason><![CDATA[customer_refused]]></FailReason>"
            "<UserID><![CDATA[u]]></UserID><ExternalUserID><![CDATA[wo1]]></ExternalUserID>"
        )
    )
    assert ev.fail_reason == "customer_refused"


def test_change_external_tag() -> None:
    ev = parse_event(
        _xml(
            "<Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[TAG_ID]]></Id>"
            "<TagType><![CDATA[tag]]></TagType><ChangeType><![CDATA[create]]></ChangeType>"
            "<StrategyId>1</StrategyId>"
        )
    )
    assert (ev.event, ev.change_type, ev.tag_id, ev.tag_type, ev.strategy_id) == (
        "change_external_tag",
        "create",
        "TAG_ID",
        "tag",
        "1",
    )


def test_change_external_chat_update_with_member_list() -> None:
    ev = parse_event(
        _xml(
            "<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[CHAT_ID]]></ChatId>"
            "<ChangeType><![CDATA[update]]></ChangeType>"
            "<UpdateDetail><![CDATA[add_member]]></UpdateDetail><JoinScene>1</JoinScene>"
            "<QuitScene>0</QuitScene><MemChangeCnt>10</MemChangeCnt>"
            "<MemChangeList><Item>Jack</Item><Item>Rose</Item></MemChangeList>"
        )
    )
    assert (ev.chat_id, ev.update_detail) == ("CHAT_ID", "add_member")
    assert ev.fields["MemChangeList"] == "Jack,Rose"
    assert ev.fields["JoinScene"] == "1"


def test_unknown_event_and_plain_message_parse_generically() -> None:
    ev = parse_event(_xml("<Event><![CDATA[something_new]]></Event><Foo>bar</Foo>"))
    assert ev.event == "something_new"
    assert ev.fields["Foo"] == "bar"
    msg = parse_event(
        "<xml><ToUserName>ww</ToUserName><CreateTime>1</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType><Content>hi</Content></xml>"
    )
    assert msg.event == "text"
    assert msg.fields["Content"] == "hi"


def test_dedup_key_is_stable_for_redelivery() -> None:
    a, b = parse_event(ADD), parse_event(ADD)
    assert a.dedup_key == b.dedup_key
    assert a.dedup_key.startswith(
        "change_external_contact|add_external_contact|zhangsan|woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA|"
        "1403610513|"
    )
    # Whitespace between elements (pretty-printed re-delivery) doesn't change the key.
    assert parse_event(ADD.replace("><", ">\n<")).dedup_key == a.dedup_key


def test_dedup_key_differs_for_distinct_events_in_the_same_second() -> None:
    tag = (
        "<Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[G1]]></Id>"
        "<TagType><![CDATA[tag_group]]></TagType><ChangeType><![CDATA[{c}]]></ChangeType>"
    )
    keys = {
        parse_event(_xml(tag.format(c="update"))).dedup_key,
        parse_event(_xml(tag.format(c="delete"))).dedup_key,
        parse_event(_xml(tag.format(c="update").replace("tag_group", "tag"))).dedup_key,
        parse_event(ADD).dedup_key,
        parse_event(ADD.replace("teststate", "otherstate")).dedup_key,
    }
    assert len(keys) == 5


def test_dedup_key_fits_the_column() -> None:
    long = "x" * 300
    ev = parse_event(
        _xml(
            "<Event><![CDATA[change_external_contact]]></Event>"
            f"<ChangeType>edit_external_contact</ChangeType><UserID>{long}</UserID>"
            f"<ExternalUserID>{long}</ExternalUserID>"
        )
    )
    assert len(ev.dedup_key) <= 255
    other = dataclasses.replace(ev, fields={**ev.fields, "UserID": long + "y"})
    assert other.dedup_key != ev.dedup_key


def test_hostile_or_broken_xml_is_refused() -> None:
    with pytest.raises(CallbackError) as err:
        parse_event('<!DOCTYPE x [<!ENTITY a "b">]><xml><MsgType>&a;</MsgType></xml>')
    assert err.value.status == 400
    with pytest.raises(CallbackError):
        parse_event("<xml><Event>x</Event></xml>")  # no MsgType
    with pytest.raises(CallbackError):
        parse_event("<xml")


def test_event_is_a_plain_dataclass() -> None:
    assert CallbackEvent(event="x").dedup_key.startswith("x||||0|")


FLAT = [
    ADD,
    ADD.replace("><", ">\n  <"),  # pretty-printed
    _xml("<Event>change_external_contact</Event><ChangeType> edit_external_contact </ChangeType>"),
    _xml(
        "<Event><![CDATA[change_external_tag]]></Event><Id></Id><TagType/><StrategyId>3</StrategyId>"
    ),
    _xml("<Event><![CDATA[something_new]]></Event><Foo>a &amp; b</Foo><Bar>中文</Bar>"),
    "<xml><MsgType>text</MsgType><Content>hi</Content></xml>",
]
NESTED = [
    _xml("<Event>change_external_chat</Event><MemChangeList><Item>J</Item></MemChangeList>"),
    _xml("<Event>x</Event><Foo>1</Foo><Foo>2</Foo>"),  # repeated
    _xml('<Event>x</Event><Foo a="1">2</Foo>'),  # attribute
]


@pytest.mark.parametrize("xml", FLAT + NESTED)
def test_one_parse_reads_the_same_fields_as_wechatpy(xml: str) -> None:
    from bot.wecom import events
    from bot.wecom.xmlguard import safe_parse

    flat = events._flat_fields(safe_parse(xml, what="test"))
    assert (flat is not None) == (xml in FLAT)  # flat XML takes the one-parse path
    ev = parse_event(xml)
    assert dict(ev.fields) == events._wechatpy_fields(xml)  # so the same dedup key
