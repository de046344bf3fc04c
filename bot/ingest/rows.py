"""Typed rows for orders, interactions and profiles, and the checks that make them.

One validator per kind turns a raw mapping (a CSV row, an .xlsx row, a JSON object) into
the values stored, or raises `RowInvalid` naming the field and the reason in Chinese.
The same code serves the HTTP API and file import, so both accept and refuse alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any, Literal

from bot.ingest.numbers import PLAIN_AMOUNT, amount_text, time_in_range

Kind = Literal["orders", "events", "profiles"]
KINDS: tuple[Kind, ...] = ("orders", "events", "profiles")

ID_MAX = 64
CENT = Decimal("0.01")
# A yuan amount past this is a unit mix-up (fen sent as yuan, a phone number...).
AMOUNT_MAX = Decimal("100000000")
STATUSES = frozenset({"paid", "refunded"})
_TRUE = frozenset({"true", "1", "是", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "否", "no", "n", "f", ""})

Need = Literal["required", "one_of", "optional"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column a file (or JSON object) of a kind may carry, as the docs describe it."""

    name: str
    need: Need  # one_of: external_userid or unionid, at least one per row
    meaning: str  # Chinese, for `tagbot import --help` and the README


_EXTERNAL_USERID = Column("external_userid", "one_of", "客户的 external_userid（企业微信客户 id）")
_UNIONID = Column("unionid", "one_of", "客户的微信 unionid（企业绑定了微信开放平台时才有）")
# The one description of what an import may contain: the validators below read these
# columns, the readers check the required ones, and `import --help` and the README
# (bot/ingest/docs.py) are written from it.
COLUMNS: dict[Kind, tuple[Column, ...]] = {
    "orders": (
        Column("order_id", "required", f"订单号（≤{ID_MAX} 字符）；再次导入同一订单号即更新"),
        _EXTERNAL_USERID,
        _UNIONID,
        Column("amount", "required", "金额（元，不可为负，最多两位小数）：199、199.90、1,299.00"),
        Column("paid_at", "required", "支付时间，ISO 8601；不带时区按 [app] timezone 理解"),
        Column("status", "required", "paid 或 refunded（退款：同一 order_id 以 refunded 再导入）"),
        Column("category", "optional", "品类（用于 top_category_365d 与复购品类）"),
        Column("is_new_product", "optional", "是否新品：true/false、1/0、是/否，空为否"),
    ),
    "events": (
        Column("event_id", "required", f"互动编号（≤{ID_MAX} 字符）；再次导入同一编号即更新"),
        _EXTERNAL_USERID,
        _UNIONID,
        Column(
            "kind",
            "required",
            "互动类型（≤32 字符）：view 浏览、cart 加购、inquiry 咨询、click 点击"
            "各有计数指标；其他类型只计入 interactions_*",
        ),
        Column("occurred_at", "required", "发生时间，ISO 8601；不带时区按 [app] timezone 理解"),
    ),
    "profiles": (_EXTERNAL_USERID, _UNIONID),
}
# One example per kind: a header and a row that imports without a reject.
EXAMPLES: dict[Kind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "orders": (
        tuple(c.name for c in COLUMNS["orders"]),
        ("O1001", "wm_demo_0001", "", "5999.00", "2026-11-28 20:15:00", "paid", "美妆", "是"),
    ),
    "events": (
        tuple(c.name for c in COLUMNS["events"]),
        ("E2001", "wm_demo_0001", "", "view", "2026-11-27T09:30:00+08:00"),
    ),
    "profiles": (
        ("external_userid", "unionid", "会员等级", "城市"),
        ("wm_demo_0001", "", "金卡", "上海"),
    ),
}
ORDER_COLUMNS = tuple(c.name for c in COLUMNS["orders"])
EVENT_COLUMNS = tuple(c.name for c in COLUMNS["events"])
PROFILE_IDS = tuple(c.name for c in COLUMNS["profiles"])
KNOWN_COLUMNS: dict[Kind, tuple[str, ...]] = {
    kind: tuple(c.name for c in columns) for kind, columns in COLUMNS.items()
}
# Columns a file must have; a row may still leave external_userid or unionid empty.
REQUIRED_COLUMNS: dict[Kind, tuple[str, ...]] = {
    kind: tuple(c.name for c in columns if c.need == "required")
    for kind, columns in COLUMNS.items()
}
ID_FIELD: dict[Kind, str] = {"orders": "order_id", "events": "event_id", "profiles": "subject"}
ATTRIBUTE_NAME_MAX = 64
ATTRIBUTE_VALUE_MAX = 1000


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one input row was refused: its index, the field at fault and the reason."""

    index: int
    field: str
    reason: str


class RowInvalid(Exception):  # noqa: N818  # raised and caught per row, never escapes
    """Raised by a validator; becomes a RowError with the row's index."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _storable(text: str, field: str) -> str:
    """Refuse text no database column can hold: NUL (PostgreSQL) or a lone surrogate."""
    if "\x00" in text:
        raise RowInvalid(field, "含有不可见的空字符（\\0）")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # The field may be the bad attribute name itself: answer it escaped.
            shown = field.encode("utf-8", "backslashreplace").decode("utf-8")
            raise RowInvalid(shown, "含有无效的 Unicode 字符（孤立的代理项）") from None
    return text


def _text(raw: Mapping[str, Any], field: str, max_len: int = ID_MAX) -> str:
    """Return the field as stripped text ('' when absent); ids may arrive as integers."""
    value = raw.get(field)
    if type(value) is str:  # the CSV fast path
        text = value.strip()
        if len(text) > max_len:
            raise RowInvalid(field, f"超过 {max_len} 个字符")
        return _storable(text, field)
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))  # an id typed into Excel comes back as 1001.0
    else:
        raise RowInvalid(field, f"应为文本，收到 {type(value).__name__}")
    if len(text) > max_len:
        raise RowInvalid(field, f"超过 {max_len} 个字符")
    return text


def _required(raw: Mapping[str, Any], field: str, *, max_len: int = ID_MAX) -> str:
    text = _text(raw, field, max_len=max_len)
    if not text:
        raise RowInvalid(field, "缺少必填值")
    return text


def _customer_ids(raw: Mapping[str, Any]) -> tuple[str | None, str | None]:
    external_userid = _text(raw, "external_userid") or None
    unionid = _text(raw, "unionid") or None
    if external_userid is None and unionid is None:
        raise RowInvalid("external_userid", "external_userid 与 unionid 至少填一个")
    return external_userid, unionid


def parse_amount(value: Any, field: str = "amount") -> Decimal:
    """Parse a non-negative yuan amount with at most two decimal places."""
    if type(value) is str and PLAIN_AMOUNT.fullmatch(value):  # the CSV fast path
        amount = Decimal(value)
        if amount < AMOUNT_MAX:
            return amount.quantize(CENT)
    return _parse_amount_slow(value, field)


def _parse_amount_slow(value: Any, field: str) -> Decimal:
    if value is None or (type(value) is str and not value.strip()):
        raise RowInvalid(field, "缺少金额")
    if isinstance(value, bool):
        raise RowInvalid(field, f"金额格式错误：{value!r}")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        # 15 significant digits is what Excel shows; the binary tail is noise.
        amount = Decimal(format(value, ".15g"))
    elif isinstance(value, str):
        parsed = amount_text(value.strip())
        if parsed is None:
            raise RowInvalid(field, f"金额格式错误：{value!r}（应为数字，如 199.00 或 1,299.00）")
        amount = parsed
    else:
        raise RowInvalid(field, f"金额格式错误：{value!r}")
    if not amount.is_finite():
        raise RowInvalid(field, f"金额格式错误：{value!r}")
    if amount < 0:
        raise RowInvalid(field, f"金额不能为负：{value}（退款请用 status=refunded）")
    if amount >= AMOUNT_MAX:
        raise RowInvalid(field, f"金额过大：{value}（单位是元）")
    rounded = amount.quantize(CENT)
    if rounded != amount:
        raise RowInvalid(field, f"金额最多两位小数：{value}")
    return rounded


def parse_time(value: Any, field: str, tz: tzinfo) -> datetime:
    """Parse an ISO 8601 time; a time without zone is read in `tz` (Asia/Shanghai)."""
    if type(value) is str:  # the CSV fast path
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return _to_utc(moment, field, tz)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif type(value) is str:
        text = value.strip()
        if not text:
            raise RowInvalid(field, "缺少时间")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise RowInvalid(
                field, f"无法解析的时间：{text!r}（应为 ISO 8601，如 2024-05-01T10:00:00+08:00）"
            ) from None
    elif value is None:
        raise RowInvalid(field, "缺少时间")
    else:
        raise RowInvalid(field, f"时间应为 ISO 8601 文本，收到 {type(value).__name__}")
    return _to_utc(moment, field, tz)


def _to_utc(moment: datetime, field: str, tz: tzinfo) -> datetime:
    """Read a naive time in `tz`, convert to UTC and refuse it outside the sane range."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not time_in_range(utc):
        raise RowInvalid(field, f"时间超出范围：{moment.isoformat()}（应在 2000-01-01 与明天之间）")
    return utc


def parse_bool(value: Any, field: str) -> bool:
    """Parse true/false, 1/0, 是/否, yes/no; empty means false."""
    if value == "0" or value == "":
        return False
    if value == "1":
        return True
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise RowInvalid(field, f"应为 true/false、1/0 或 是/否，收到 {value!r}")


def validate_order(raw: Mapping[str, Any], tz: tzinfo) -> dict[str, Any]:
    """Check one order row; return the column values to store."""
    order_id = _required(raw, "order_id")
    external_userid, unionid = _customer_ids(raw)
    status = raw.get("status")
    status_text = status.strip().lower() if isinstance(status, str) else ""
    if status_text not in STATUSES:
        if status is None or status == "":
            raise RowInvalid("status", "缺少状态（paid 或 refunded）")
        raise RowInvalid("status", f"未知状态：{status!r}（应为 paid 或 refunded）")
    return {
        "order_id": order_id,
        "external_userid": external_userid,
        "unionid": unionid,
        "amount": parse_amount(raw.get("amount")),
        "paid_at": parse_time(raw.get("paid_at"), "paid_at", tz),
        "status": status_text,
        "category": _text(raw, "category"),
        "is_new_product": parse_bool(raw.get("is_new_product"), "is_new_product"),
    }


def validate_event(raw: Mapping[str, Any], tz: tzinfo) -> dict[str, Any]:
    """Check one interaction row; return the column values to store."""
    event_id = _required(raw, "event_id")
    external_userid, unionid = _customer_ids(raw)
    return {
        "event_id": event_id,
        "external_userid": external_userid,
        "unionid": unionid,
        "kind": _required(raw, "kind", max_len=32),
        "occurred_at": parse_time(raw.get("occurred_at"), "occurred_at", tz),
    }


def profile_subject(external_userid: str | None, unionid: str | None) -> str:
    """Key a profile by external_userid when known, else by its unionid."""
    return external_userid if external_userid else f"unionid:{unionid}"


def validate_profile(raw: Mapping[str, Any], tz: tzinfo) -> dict[str, Any]:
    """Check one profile row: ids plus attributes; empty attribute cells are skipped."""
    del tz  # attributes are kept as text; the signature matches the other kinds
    external_userid, unionid = _customer_ids(raw)
    attributes: dict[str, str] = {}
    for name, value in raw.items():
        if name in PROFILE_IDS or value is None:
            continue
        if not isinstance(name, str) or not name.strip():
            raise RowInvalid(str(name), "属性名不能为空")
        _storable(name, name)
        if len(name) > ATTRIBUTE_NAME_MAX:
            raise RowInvalid(name, f"属性名超过 {ATTRIBUTE_NAME_MAX} 个字符")
        text = attribute_text(value)
        if text is None:
            raise RowInvalid(name, f"属性值应为文本或数字，收到 {type(value).__name__}")
        if len(text) > ATTRIBUTE_VALUE_MAX:
            raise RowInvalid(name, f"属性值超过 {ATTRIBUTE_VALUE_MAX} 个字符")
        _storable(text, name)
        if text:
            attributes[name.strip()] = text
    if not attributes:
        raise RowInvalid("", "没有任何属性值")
    return {
        "subject": profile_subject(external_userid, unionid),
        "external_userid": external_userid,
        "unionid": unionid,
        "attributes": attributes,
    }


def attribute_text(value: Any) -> str | None:
    """Render an attribute value as stored text, or None when it has no text form."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # NaN and Infinity (Python's JSON parser accepts them) are not values.
        return format(value, ".15g") if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return None


VALIDATORS = {"orders": validate_order, "events": validate_event, "profiles": validate_profile}
