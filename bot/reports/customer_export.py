""".xlsx export of the console's filtered customer list (openpyxl's write-only mode).

Rows stream from `customer_list.iter_customers` into a write-only workbook, which keeps
one row in memory at a time; the zipped file (a few MB at the cap) is returned in memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from openpyxl import Workbook

from bot.reports.customer_list import ListedCustomer

HEADER = (
    "external_userid",
    "客户名称",
    "类型",
    "企业",
    "跟进员工",
    "备注",
    "来源渠道",
    "首次添加时间",
    "状态",
)
TYPES = {1: "微信", 2: "企业微信"}
# Formula prefixes: a name from WeCom must not become a formula in the operator's Excel.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA) else value


def _local(value: datetime | None, tz: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def write_xlsx(
    rows: Iterable[ListedCustomer], *, dimensions: Sequence[str], tz: ZoneInfo
) -> tuple[io.BytesIO, int]:
    """Write the rows (a header, then one row per customer); return the file and the count."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet("客户")
    sheet.append([*HEADER, *(f"分层·{d}" for d in dimensions)])
    count = 0
    for c in rows:
        first = c.first
        sheet.append(
            [
                c.external_userid,
                _text(c.name),
                TYPES.get(c.type, str(c.type)),
                _text(c.corp_name),
                _text("，".join(r.staff_name for r in c.relations if r.status == "active")),
                _text(c.remarks),
                _text(first.channel if first else ""),
                _local(first.added_at if first else None, tz),
                c.loss_label,
                *(c.tiers.get(d, "") for d in dimensions),
            ]
        )
        count += 1
    out = io.BytesIO()
    book.save(out)
    out.seek(0)
    return out, count
