"""A channel's 数据报表 as an .xlsx file: a header row, then one row per local day."""

from __future__ import annotations

import io

from openpyxl import Workbook

from bot.reports.channel_pages import ChannelReport

HEADER = ("日期", "新增", "流失·客户删员工", "流失·员工删客户", "流失·其他", "流失合计", "净增")


def report_xlsx(report: ChannelReport) -> bytes:
    """Return the report's days, newest first (as the page's table), as an .xlsx file."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "数据报表"
    sheet.append(HEADER)
    for d in reversed(report.days):
        sheet.append(
            (
                d.day.isoformat(),
                d.added,
                d.lost_by_customer,
                d.lost_by_staff,
                d.lost_other,
                d.lost,
                d.net,
            )
        )
    sheet.column_dimensions["A"].width = 12
    for col in "BCDEFG":
        sheet.column_dimensions[col].width = 16
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
