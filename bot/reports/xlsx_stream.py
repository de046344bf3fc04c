"""Write a one-sheet .xlsx as a stream of bytes: the first come before the rows are read.

openpyxl's write-only workbook keeps one row in memory but writes the sheet to a
temporary file and zips it on save, so a download starts only when every row is written
(6.5 s for 47,295 rows at 1 M customers, 0.1 ms of CPU a row). This writes the sheet's XML
itself, row by row, into a zip written without seeking (sizes in data descriptors, as
streamed zips carry them): memory stays one batch of rows whatever their number, and each
batch's compressed bytes go to the client as they are made.

Cells: strings inline (no shared-string table, which would need every string first), so
nothing a customer typed is ever a formula; numbers and booleans as such; datetimes as
Excel serials styled yyyy-mm-dd hh:mm:ss (Excel has no zones: pass local naive times).
Characters XML 1.0 cannot hold (control characters) are dropped, not an error.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from openpyxl.utils import get_column_letter

MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BATCH = 500  # rows per flush of the compressor: the bytes a client gets at a time
MAX_ROWS = 1_048_576  # Excel's rows per sheet, the header included
LEVEL = 1  # deflate level: spreadsheet XML is repetitive, level 1 keeps most of the gain

_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")
_EPOCH = datetime(1899, 12, 30)  # Excel's day 0 (1900 system; dates after 1900-03-01)
_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


def _content_types(sheets: int) -> str:
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for n in range(1, sheets + 1)
    )
    return (
        f'{_HEAD}<Types xmlns="{_PKG}/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        f"{overrides}"
        '<Override PartName="/xl/styles.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        "</Types>"
    )


_ROOT_RELS = f"""{_HEAD}<Relationships xmlns="{_PKG}/relationships">\
<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>\
</Relationships>"""


def _workbook_rels(sheets: int) -> str:
    parts = "".join(
        f'<Relationship Id="rId{n}" Type="{_REL}/worksheet" Target="worksheets/sheet{n}.xml"/>'
        for n in range(1, sheets + 1)
    )
    return (
        f'{_HEAD}<Relationships xmlns="{_PKG}/relationships">{parts}'
        f'<Relationship Id="rId{sheets + 1}" Type="{_REL}/styles" Target="styles.xml"/>'
        "</Relationships>"
    )


def _workbook(names: Sequence[str]) -> str:
    sheets = "".join(
        f'<sheet name={quoteattr(name)} sheetId="{n}" r:id="rId{n}"/>'
        for n, name in enumerate(names, start=1)
    )
    return f'{_HEAD}<workbook xmlns="{_NS}" xmlns:r="{_REL}"><sheets>{sheets}</sheets></workbook>'


# Styles: 0 plain, 1 bold (the header), 2 a date and time.
_STYLES = f"""{_HEAD}<styleSheet xmlns="{_NS}">\
<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>\
<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>\
<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>\
<fills count="2"><fill><patternFill patternType="none"/></fill>\
<fill><patternFill patternType="gray125"/></fill></fills>\
<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>\
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>\
<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>\
<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>\
<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>\
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>\
</styleSheet>"""
_SHEET_OPEN = f'{_HEAD}<worksheet xmlns="{_NS}"><sheetData>'
_SHEET_CLOSE = "</sheetData></worksheet>"


class _Pipe(io.RawIOBase):
    """A write-only file for zipfile: not seekable, so it writes a streamed zip."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        """Return what was written since the last take."""
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def sheet_name(title: str) -> str:
    """Return a name Excel accepts for a sheet: no []:*?/\\, no edge quotes, <= 31 chars."""
    name = _SHEET_NAME_BAD.sub("_", _ILLEGAL.sub("", title)).strip("'")[:31]
    return name or "Sheet1"


def _text(value: str) -> str:
    return escape(_ILLEGAL.sub("", value))


def _cell(ref: str, value: Any, style: int = 0) -> str:
    """Return one cell's XML ('' for None or "": an empty cell is no element)."""
    s = f' s="{style}"' if style else ""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"{s}><v>{int(value)}</v></c>'
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return f'<c r="{ref}"{s}><v>{value!r}</v></c>'
    if isinstance(value, datetime):
        serial = (value.replace(tzinfo=None) - _EPOCH).total_seconds() / 86400
        return f'<c r="{ref}" s="2"><v>{serial!r}</v></c>'
    text = str(value)
    space = ' xml:space="preserve"' if text != text.strip() else ""
    return f'<c r="{ref}" t="inlineStr"{s}><is><t{space}>{_text(text)}</t></is></c>'


def stream_xlsx(
    title: str,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    max_rows: int = MAX_ROWS,
) -> Iterator[bytes]:
    """Yield an .xlsx: a bold header row, then `rows`, read as they are written.

    Past `max_rows` rows a sheet (Excel's own limit, header included) the rows go on in
    a new sheet with the header again, named `title (2)`, `title (3)`…: Excel would refuse
    or cut a longer sheet. The workbook's list of sheets is written last (a zip's entries
    may come in any order), once their number is known.
    """
    if max_rows < 2:
        raise ValueError(f"max_rows must leave room for a row under the header: {max_rows}")
    pipe = _Pipe()
    book = zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=LEVEL)
    book.writestr("_rels/.rels", _ROOT_RELS)
    book.writestr("xl/styles.xml", _STYLES)
    letters: list[str] = []
    source = iter(rows)
    sheets = 0
    more = True
    while more:
        sheets += 1
        # No ZIP64 (Excel refuses it where it is not needed): an entry stays under 2 GiB,
        # far more than a sheet of Excel's 1,048,576 rows of these columns takes.
        with book.open(f"xl/worksheets/sheet{sheets}.xml", "w") as sheet:
            sheet.write(_SHEET_OPEN.encode())
            yield pipe.take()  # the parts so far, before this sheet's rows are read
            batch = [_row(1, header, letters, style=1)]
            more = False
            for r, row in enumerate(source, start=2):
                batch.append(_row(r, row, letters))
                if len(batch) >= BATCH:
                    sheet.write("".join(batch).encode())
                    batch.clear()
                    if chunk := pipe.take():
                        yield chunk
                if r >= max_rows:
                    more = True  # the next row, if any, starts a new sheet
                    break
            sheet.write(("".join(batch) + _SHEET_CLOSE).encode())
        if more:
            peeked = next(source, None)
            if peeked is None:
                more = False
            else:
                source = itertools.chain((peeked,), source)
    base = sheet_name(title)
    names = [base] + [
        sheet_name(f"{base[: 31 - len(f' ({n})')]} ({n})") for n in range(2, sheets + 1)
    ]
    book.writestr("[Content_Types].xml", _content_types(sheets))
    book.writestr("xl/_rels/workbook.xml.rels", _workbook_rels(sheets))
    book.writestr("xl/workbook.xml", _workbook(names))
    book.close()
    yield pipe.take()


def _row(r: int, values: Sequence[Any], letters: list[str], *, style: int = 0) -> str:
    while len(letters) < len(values):
        letters.append(get_column_letter(len(letters) + 1))
    cells = "".join(_cell(f"{col}{r}", v, style) for col, v in zip(letters, values, strict=False))
    return f'<row r="{r}">{cells}</row>'
