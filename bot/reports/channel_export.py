"""A channel's 数据报表 as an .xlsx file: a header row, then one row per local day."""

from __future__ import annotations

import io

from openpyxl import Workbook

from bot.reports.channel_pages import ChannelReport

HEADER = ("日期", "新增", "流失·客户删员工", "流失·员工删客户", "流失·其他", "流失合计", "净增")
# A group code's (群活码) days count its members' joins and leaves, and who is still in.
GROUP_HEADER = ("日期", "入群", "主动退群", "被移出", "其他退群", "退群合计", "净增", "日末在群")


def report_xlsx(report: ChannelReport) -> bytes:
    """Return the report's days, newest first (as the page's table), as an .xlsx file."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "数据报表"
    group = report.config.is_group
    sheet.append(GROUP_HEADER if group else HEADER)
    for d in reversed(report.days):
        row = [
            d.day.isoformat(),
            d.added,
            d.lost_by_customer,
            d.lost_by_staff,
            d.lost_other,
            d.lost,
            d.net,
        ]
        sheet.append([*row, d.customers] if group else row)
    sheet.column_dimensions["A"].width = 12
    for col in "BCDEFGH" if group else "BCDEFG":
        sheet.column_dimensions[col].width = 16
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
