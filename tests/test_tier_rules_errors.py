"""Every kind of rule error is reported with its key, the rule text and a caret under the fault."""

from __future__ import annotations

import pytest

from bot.errors import TagbotError, ValidationError
from bot.rules import RuleError, Scope, parse_and_check

KEY = "tiering.dimensions[2].tiers[1].when"
SCOPE = Scope(
    earlier={"value": frozenset({"高价值", "中价值", "低价值"}), "region": None},
    later=frozenset({"lifecycle", "rfm"}),
)


def error(text: str) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse_and_check(text, scope=SCOPE, key=KEY)
    return info.value


def test_unknown_name_suggests_the_closest_and_renders_key_text_and_caret() -> None:
    exc = error("spend_356d >= 5000")
    assert str(exc) == (
        "tiering.dimensions[2].tiers[1].when: unknown name 'spend_356d' "
        "(did you mean 'spend_365d'?)\n"
        "    spend_356d >= 5000\n"
        "    ^^^^^^^^^^"
    )
    assert (exc.key, exc.text, exc.start, exc.end) == (KEY, "spend_356d >= 5000", 0, 10)
    assert isinstance(exc, ValidationError)
    assert isinstance(exc, TagbotError)


def test_unknown_name_far_from_any_has_no_suggestion() -> None:
    assert "unknown name 'zzz'\n" in str(error("orders_365d > 1 and zzz > 1"))
    assert "unknown name 'prof.x'\n" in str(error("prof.x == 1"))


def test_caret_lines_up_under_wide_chinese_characters() -> None:
    exc = error('profile.会员等级 == "金卡" and 消费 > 1')
    lines = str(exc).splitlines()
    assert lines[0].endswith("unknown name '消费'")
    # profile.会员等级 takes 8 + 4*2 columns and "金卡" 2 + 2*2; the caret sits under 消费 (two wide characters).
    assert lines[2] == "    " + " " * (16 + len(" == ") + 6 + len(" and ")) + "^^^^"


@pytest.mark.parametrize(
    ("text", "message", "caret"),
    [
        ("channel > 3", "'>' compares numbers only, but 'channel' is a string", "^^^^^^^^^^^"),
        ('channel < "a"', "'<' compares numbers only, but 'channel' is a string", "^" * 13),
        (
            'profile.a >= "x"',
            "'>=' compares numbers only, but 'profile.a' is a profile attribute (text); "
            '"x" is a string',
            "^" * 16,
        ),
        ("channel == 3", "cannot compare: 'channel' is a string and 3 is a number", "^" * 12),
        (
            "intent_no_buy_30d == 1",
            "cannot compare: 'intent_no_buy_30d' is true/false and 1 is a number",
            "^" * 22,
        ),
        ("profile.vip == true", "cannot compare: 'profile.vip' is a profile attribute", "^" * 19),
        ("orders_365d", "'orders_365d' is a number, not a condition; compare it", "^" * 11),
        ('"abc"', '"abc" is a string, not a condition', "^" * 5),
        (
            "not profile.vip",
            "'profile.vip' is a profile attribute (text), not a condition",
            "    " + "^" * 11,
        ),
        ("spend_365d > 1 or channel", "'channel' is a string, not a condition", " " * 18 + "^" * 7),
        # bad `in` lists
        ('gender in ["男", 1]', "the list mixes a number and a string", " " * 11 + "^" * 7),
        ("channel in [1, 2]", "'channel' is a string but the list holds numbers", "^" * 17),
        (
            'orders_365d not in ["a"]',
            "'orders_365d' is a number but the list holds strings",
            "^" * 24,
        ),
        ("channel in [true]", "a list holds numbers or strings, not true/false", "^" * 17),
        ("intent_no_buy_30d in [1]", "'intent_no_buy_30d' is true/false but the list", "^" * 24),
    ],
)
def test_type_errors(text: str, message: str, caret: str) -> None:
    lines = str(error(text)).splitlines()
    assert message in lines[0]
    assert lines[1] == "    " + text
    assert lines[2] == "    " + caret


def test_in_list_with_profile_takes_numbers_or_strings() -> None:
    parse_and_check("profile.age in [30, 40]", scope=SCOPE)
    parse_and_check('profile.region not in ["华东", "华南",]', scope=SCOPE)


def test_tier_of_a_later_dimension_is_refused() -> None:
    lines = str(error('tier.rfm == "重要价值"')).splitlines()
    assert "'tier.rfm': dimension 'rfm' is not listed before this one" in lines[0]
    assert lines[2] == "    ^^^^^^^^"


def test_tier_of_an_unknown_dimension_suggests_an_earlier_one() -> None:
    assert "no dimension 'valeu' is listed before this one (did you mean 'tier.value'?)" in str(
        error('tier.valeu == "高价值"')
    )


def test_tier_name_the_dimension_does_not_have() -> None:
    lines = str(error('tier.value in ["高价值", "超高价值"]')).splitlines()
    assert "dimension 'value' has no tier '超高价值' (did you mean '高价值'?)" in lines[0]
    # the caret sits under the wrong tier name only
    assert lines[2] == "    " + " " * len('tier.value in ["高价值", ') + " " * 3 + "^" * 10
    assert "has no tier '沉睡'" in str(error('"沉睡" == tier.value'))


def test_tier_of_a_tag_from_dimension_takes_any_value() -> None:
    parse_and_check('tier.region == "华东" and tier.value != "低价值"', scope=SCOPE)


@pytest.mark.parametrize(
    ("text", "message", "caret"),
    [
        # at the start
        (">= 5000", "unexpected '>='; expected '(', 'false', 'not', 'true', a name", "^^"),
        ("and orders_365d > 1", "unexpected 'and'; expected", "^^^"),
        ("", "unexpected end of rule; expected", "^"),
        # in the middle
        ("spend_365d = 5000", "unexpected '='; compare with '=='", " " * 11 + "^"),
        (
            "spend_365d >= 5000 orders_365d > 1",
            "unexpected 'orders_365d'; expected 'and', 'or' or the end of the rule",
            " " * 19 + "^" * 11,
        ),
        ("spend_365d >= 5000 @ 1", "unexpected character '@'", " " * 19 + "^"),
        (
            "channel in []",
            "unexpected ']'; expected 'false', 'true', a number or a quoted string",
            " " * 12 + "^",
        ),
        ("spend_365d is 5", "unexpected '5'; expected", " " * 14 + "^"),
        # at the end
        (
            "spend_365d >= ",
            "unexpected end of rule; expected 'false', 'true', a name, a number or a quoted string",
            " " * 13 + "^",
        ),
        ("spend_365d >= 1 and", "unexpected end of rule; expected", " " * 19 + "^"),
        ("(spend_365d >= 1", "unexpected end of rule; expected ')', 'and' or 'or'", " " * 16 + "^"),
        ("spend_365d >= 1)", "unexpected ')'; expected", " " * 15 + "^"),
    ],
)
def test_syntax_errors_name_the_position_and_what_was_expected(
    text: str, message: str, caret: str
) -> None:
    rendered = str(error(text))
    lines = rendered.splitlines()
    assert lines[0].startswith(KEY + ": " + message)
    assert lines[1] == "    " + text
    assert lines[2] == "    " + caret
    assert "Token" not in rendered
    assert "lark" not in rendered.lower()


def test_unterminated_string_points_at_its_opening_quote() -> None:
    lines = str(error('channel == "公众号 and orders_365d > 1')).splitlines()
    assert lines[0] == KEY + ": unterminated string"
    assert lines[2] == "    " + " " * 11 + "^" * (1 + 6 + len(" and orders_365d > 1"))
    assert str(error("channel == 'abc")).splitlines()[0].endswith("unterminated string")


def test_an_error_on_a_later_line_of_a_multiline_rule_shows_that_line() -> None:
    lines = str(error("spend_365d >= 5000\n  and orders_356d >= 3")).splitlines()
    assert "unknown name 'orders_356d' (did you mean 'orders_365d'?)" in lines[0]
    assert lines[1:] == ["      and orders_356d >= 3", "          ^^^^^^^^^^^"]


def test_strings_take_escaped_quotes_and_either_quote_style() -> None:
    parse_and_check('channel == \'say "hi"\' or channel == "it\\\'s"', scope=SCOPE)
