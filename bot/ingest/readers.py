"""Read .csv and .xlsx files as a header plus numbered rows.

CSV encoding: UTF-8 with or without the BOM Excel writes is read as is. A file that is
not UTF-8 but decodes as GB18030 (a superset of GBK, what Excel on Chinese Windows
saves by default) is read as GB18030 and the operator is told so; anything else is
refused with a message saying how to re-save it. The whole file is checked before any
row is handed out, so a bad byte at the end never leaves half an import behind.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import accumulate, chain, islice
from pathlib import Path
from typing import Any
from zipfile import BadZipFile

from bot.errors import ValidationError
from bot.ingest.rows import KNOWN_COLUMNS

_CHUNK = 1 << 20
_EXCEL_HINT = "请在 Excel 中“另存为 → CSV UTF-8（逗号分隔）”后重试"


class FileRejectedError(ValidationError):
    """The file as a whole can't be imported (unreadable, wrong encoding, bad header)."""


@dataclass
class Table:
    """A file opened for import: normalised header, rows numbered as the operator sees them."""

    columns: list[str]
    rows: Iterator[tuple[int, list[Any]]]  # (line or sheet row number, values)
    encoding: str
    total: int | None  # data rows, for the progress bar (approximate for CSV)
    note: str | None = None  # said to the operator, e.g. that GBK was converted
    # CSV only: the same numbered rows read in lists of up to n (no Python step per row).
    chunks: Callable[[int], Iterator[tuple[list[int], list[list[str]]]]] | None = None


def sniff_encoding(path: Path) -> tuple[str, int, str | None]:
    """Return (codec, line count, note) after checking the whole file decodes."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileRejectedError(f"{path.name}: 文件是 UTF-16 编码，无法导入；{_EXCEL_HINT}")
    if head.startswith(b"PK\x03\x04"):
        msg = f"{path.name}: 这是 .xlsx 等压缩文件，不是 CSV；请把扩展名改为 .xlsx"
        raise FileRejectedError(msg)
    codec = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    lines = _check_decodes(path, codec)
    if lines is not None:
        return codec, lines, None
    lines = _check_decodes(path, "gb18030")
    if lines is not None:
        return "gb18030", lines, f"{path.name}: 文件不是 UTF-8，已按 GBK/GB18030 编码读取"
    msg = f"{path.name}: 无法识别的文件编码（既不是 UTF-8 也不是 GBK）；{_EXCEL_HINT}"
    raise FileRejectedError(msg)


def _check_decodes(path: Path, codec: str) -> int | None:
    """Count lines if the whole file decodes in `codec`, else return None."""
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    lines = 0
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return None
            if b"\x00" in chunk:
                msg = f"{path.name}: 文件含有二进制内容，不是 CSV 文本；{_EXCEL_HINT}"
                raise FileRejectedError(msg)
            lines += chunk.count(b"\n")
            last = chunk
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return None
    if last and not last.endswith(b"\n"):
        lines += 1
    return lines


def normalise_header(cells: list[Any], path: Path) -> list[str]:
    """Strip header names; refuse empty or repeated ones (a value would be lost)."""
    columns = [str(c).strip() if c is not None else "" for c in cells]
    while columns and not columns[-1]:
        columns.pop()  # Excel leaves empty trailing header cells
    if not columns:
        raise FileRejectedError(f"{path.name}: 文件为空或没有表头行")
    seen: set[str] = set()
    for position, name in enumerate(columns, start=1):
        if not name:
            raise FileRejectedError(f"{path.name}: 表头第 {position} 列没有列名")
        if name in seen:
            raise FileRejectedError(f"{path.name}: 表头列名 {name!r} 出现了两次")
        seen.add(name)
    return [name.lower() if name.lower() in _ID_COLUMNS else name for name in columns]


# Contract column names match case-insensitively; attribute names keep their case.
_ID_COLUMNS = frozenset(c for columns in KNOWN_COLUMNS.values() for c in columns)


@contextmanager
def open_csv(path: Path) -> Iterator[Table]:
    """Open a CSV file after checking its encoding."""
    codec, lines, note = sniff_encoding(path)
    # No field is longer than the file. Past csv's default limit (128 KiB) the reader
    # would fail mid-file, after earlier batches were committed; now the row is refused.
    csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size + 1))
    with path.open(encoding=codec, newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise FileRejectedError(f"{path.name}: 文件为空或没有表头行") from None
        except csv.Error as exc:
            raise FileRejectedError(f"{path.name}: CSV 格式错误（{exc}）") from None
        columns = normalise_header(header, path)

        def rows() -> Iterator[tuple[int, list[Any]]]:
            try:
                for values in reader:
                    if values and any(values):
                        yield reader.line_num, values
            except csv.Error as exc:
                raise FileRejectedError(
                    f"{path.name}: 第 {reader.line_num} 行 CSV 格式错误（{exc}）"
                ) from None

        def chunks(size: int) -> Iterator[tuple[list[int], list[list[str]]]]:
            try:
                while True:
                    start = reader.line_num
                    values = list(islice(reader, size))
                    if not values:
                        return
                    yield _numbered(start, values)
            except csv.Error as exc:
                raise FileRejectedError(
                    f"{path.name}: 第 {reader.line_num} 行 CSV 格式错误（{exc}）"
                ) from None

        yield Table(columns, rows(), codec, max(lines - 1, 0), note, chunks)


def _numbered(start: int, values: list[list[str]]) -> tuple[list[int], list[list[str]]]:
    """Number rows read after line `start` as `rows()` does, leaving out the empty ones.

    A row's number is its last line (csv's line_num): one line a row, unless a quoted
    cell holds line breaks (each \n, \r or \r\n one more line).
    """
    text = "".join(chain.from_iterable(values))
    if "\n" not in text and "\r" not in text:
        numbers: Iterable[int] = range(start + 1, start + 1 + len(values))
    else:
        numbers = accumulate(
            (
                1 + sum(c.count("\n") + c.count("\r") - c.count("\r\n") for c in row)
                for row in values
            ),
            initial=start,
        )
        numbers = list(numbers)[1:]
    kept = [(n, row) for n, row in zip(numbers, values, strict=True) if any(row)]
    if len(kept) == len(values):
        return list(numbers), values
    return [n for n, _ in kept], [row for _, row in kept]


def _cell(value: Any) -> Any:
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value


@contextmanager
def open_xlsx(path: Path) -> Iterator[Table]:
    """Open the first worksheet of an .xlsx workbook."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, BadZipFile, OSError, KeyError, ValueError) as exc:
        raise FileRejectedError(f"{path.name}: 无法作为 .xlsx 打开（{exc}）") from None
    try:
        sheet = workbook.worksheets[0]
        values = sheet.iter_rows(values_only=True)
        header = next(values, None)
        if header is None:
            raise FileRejectedError(f"{path.name}: 工作表为空或没有表头行")
        columns = normalise_header(list(header), path)
        total = (sheet.max_row - 1) if sheet.max_row else None

        def rows() -> Iterator[tuple[int, list[Any]]]:
            for number, row in enumerate(values, start=2):
                cells = [_cell(v) for v in row]
                if any(v is not None and v != "" for v in cells):
                    yield number, cells

        yield Table(columns, rows(), "xlsx", total)
    finally:
        workbook.close()


@contextmanager
def open_table(path: Path) -> Iterator[Table]:
    """Open a .csv or .xlsx file by its extension."""
    if not path.is_file():
        raise FileRejectedError(f"{path}: 文件不存在")
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        with open_xlsx(path) as table:
            yield table
    elif suffix in (".csv", ".txt"):
        with open_csv(path) as table:
            yield table
    else:
        msg = f"{path.name}: 只支持 .csv 和 .xlsx 文件（收到 {suffix or '无扩展名'}）"
        raise FileRejectedError(msg)
