"""Read and validate request parameters the way WeCom reports bad ones."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wecom_sim.state import ApiError

INVALID = 40058  # 不合法的参数
MISSING = 40063  # 参数为空
BAD_JSON = 47001  # 数据格式错误
BAD_CURSOR = 50100  # 分页查询的游标无效


@dataclass(frozen=True)
class Call:
    """One API request: its parameters, from the query string (GET) or the JSON body (POST).

    WeCom's POST APIs read the JSON body only ("请求包体" in every POST page, e.g. doc
    92994): a parameter put in the query string instead is not seen, and a number sent as
    a JSON string where the doc says 整型 is refused, not coerced.
    """

    query: Mapping[str, str]
    body: Mapping[str, Any]
    method: str = "GET"

    def _raw(self, name: str) -> Any:
        return self.body.get(name) if self.method == "POST" else self.query.get(name)

    def text(self, name: str, *, required: bool = False, missing: int = MISSING) -> str:
        """Return a string parameter ("" when absent)."""
        value = self._raw(name)
        if value is None or value == "":
            if required:
                raise ApiError(missing, f"missing parameter: {name}")
            return ""
        if not isinstance(value, str):
            raise ApiError(INVALID, f"invalid parameter: {name} must be a string")
        return value

    def integer(self, name: str, default: int | None = None, *, missing: int = MISSING) -> int:
        """Return an integer parameter; `default` when absent (required when default is None)."""
        value = self._raw(name)
        if value is None or value == "":
            if default is None:
                raise ApiError(missing, f"missing parameter: {name}")
            return default
        if isinstance(value, bool) or (self.method == "POST" and not isinstance(value, int)):
            raise ApiError(INVALID, f"invalid parameter: {name} must be an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ApiError(INVALID, f"invalid parameter: {name} must be an integer") from None

    def boolean(self, name: str, default: bool) -> bool:
        """Return a boolean body parameter."""
        value = self.body.get(name, default)
        if not isinstance(value, bool | int):
            raise ApiError(INVALID, f"invalid parameter: {name} must be a boolean")
        return bool(value)

    def strings(self, name: str) -> list[str]:
        """Return a list-of-strings body parameter ([] when absent)."""
        value = self.body.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ApiError(INVALID, f"invalid parameter: {name} must be a list of strings")
        return list(value)

    def objects(self, name: str) -> list[dict[str, Any]]:
        """Return a list-of-objects body parameter ([] when absent)."""
        value = self.body.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ApiError(INVALID, f"invalid parameter: {name} must be a list of objects")
        return list(value)

    def limit(self, default: int, maximum: int) -> int:
        """Return the page size, refusing values outside 1..maximum."""
        value = self.integer("limit", default)
        if value == 0:
            return default
        if not 1 <= value <= maximum:
            raise ApiError(INVALID, f"invalid parameter: limit must be 1..{maximum}")
        return value


def check_length(name: str, value: str, limit: int, *, in_bytes: bool = False) -> None:
    """Refuse text longer than WeCom allows (characters, or UTF-8 bytes)."""
    size = len(value.encode()) if in_bytes else len(value)
    if size > limit:
        unit = "bytes" if in_bytes else "characters"
        raise ApiError(INVALID, f"invalid parameter: {name} longer than {limit} {unit}")


def encode_cursor(position: Mapping[str, Any]) -> str:
    """Return an opaque cursor for a paging position."""
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Return the paging position in a cursor ({} for the first page)."""
    if not cursor:
        return {}
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ApiError(BAD_CURSOR, "invalid cursor") from None
    if not isinstance(position, dict):
        raise ApiError(BAD_CURSOR, "invalid cursor")
    return position


def offset_page(items: list[Any], cursor: str, limit: int) -> tuple[list[Any], str]:
    """Return one page of a stable list and the cursor of the next page ("" at the end)."""
    start = decode_cursor(cursor).get("o", 0)
    if not isinstance(start, int) or start < 0:
        raise ApiError(BAD_CURSOR, "invalid cursor")
    page = items[start : start + limit]
    more = start + limit < len(items)
    return page, encode_cursor({"o": start + limit}) if more else ""
