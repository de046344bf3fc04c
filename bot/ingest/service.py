"""Ingest orders, interactions and profiles from an API call or a file.

Rules shared by both paths:
- every row is validated on its own; good rows are stored, bad ones are reported with
  their index, field and reason;
- the same id twice in one request or file: the first occurrence is kept and each later
  one is rejected, pointing at the first (a file is a snapshot; send a refund as a new
  request or file, where it updates the stored order);
- columns we don't know in orders/events are ignored with a warning (the business
  system may send more than we use); in profiles every extra column is an attribute.

An API request is one transaction. A file is written in batches, each committed on its
own so the bot keeps serving during a long import; an interrupted import is completed
by running it again (idempotent by id).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import tzinfo
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.types import utcnow
from bot.ingest.bulk import CHECKS, Chunk
from bot.ingest.readers import FileRejectedError, open_table
from bot.ingest.rows import (
    ID_FIELD,
    KNOWN_COLUMNS,
    REQUIRED_COLUMNS,
    VALIDATORS,
    Kind,
    RowError,
    RowInvalid,
)
from bot.ingest.store import ROW_COLUMNS, Outcome, upsert

FILE_BATCH = 20_000


@dataclass
class Rejected:
    """A refused row with its original values (written to the rejects file)."""

    error: RowError
    raw: Mapping[str, Any]


@dataclass
class IngestResult:
    """Counts and reasons for one API call or file."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0

    @property
    def accepted(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def as_json(self) -> dict[str, Any]:
        """Shape the result as the /api answer."""
        return {
            "accepted": self.accepted,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": [
                {"index": r.error.index, "field": r.error.field, "reason": r.error.reason}
                for r in self.rejected
            ],
            "warnings": self.warnings,
        }


class Ingestor:
    """Validate rows (one by one, or a CSV chunk column by column), drop repeats, batch them.

    Orders and events are queued as tuples in their columns' order (`ROW_COLUMNS`), the
    form the store writes column by column; profiles as the validator's dicts.
    """

    def __init__(self, kind: Kind, tz: tzinfo) -> None:
        self.kind = kind
        self.tz = tz
        self.validate = VALIDATORS[kind]
        self.key = ID_FIELD[kind]
        names = ROW_COLUMNS.get(kind)
        self.as_row: Callable[[dict[str, Any]], Any] | None = (
            None if names is None else itemgetter(*names)
        )
        self.seen: dict[str, int] = {}
        self.pending: list[Any] = []
        self.outcome = Outcome()
        self.result = IngestResult()

    def reject(self, index: int, field_name: str, reason: str, raw: Mapping[str, Any]) -> None:
        self.result.rejected.append(Rejected(RowError(index, field_name, reason), raw))

    def feed(self, index: int, raw: Mapping[str, Any]) -> None:
        """Validate one row and queue it, or record why it was refused."""
        self.result.rows += 1
        try:
            row = self.validate(raw, self.tz)
        except RowInvalid as exc:
            self.reject(index, exc.field, exc.reason, raw)
            return
        if self.as_row is None:
            self.queue(index, row, row[self.key], raw)
        else:
            self.queue(index, self.as_row(row), row[self.key], raw)

    def queue(self, index: int, row: Any, key: str, raw: Mapping[str, Any]) -> None:
        """Queue a valid row unless its id came earlier (the first one is kept)."""
        first = self.seen.get(key)
        if first is not None:
            if self.kind == "profiles":
                name = "external_userid" if row["external_userid"] else "unionid"
                shown = row["external_userid"] or row["unionid"]
            else:
                name, shown = self.key, key
            self.reject(index, name, f"{name} {shown!r} 重复，已保留序号 {first} 的那一行", raw)
            return
        self.seen[key] = index
        self.pending.append(row)

    def feed_chunk(self, numbers: list[int], values: list[list[str]], columns: list[str]) -> None:
        """Validate CSV rows of exactly `columns` width (orders, events) column by column.

        Same outcome as `feed` row by row: rows a column check is unsure of go through
        the per-row validator in file order, and repeats are refused as there.
        """
        chunk = Chunk(columns, values)
        checked = CHECKS[self.kind](chunk, self.tz)
        keys = [row[0] for row in checked]
        if not chunk.slow and len(set(keys)) == len(keys) and self.seen.keys().isdisjoint(keys):
            self.result.rows += len(checked)
            self.seen.update(zip(keys, numbers, strict=True))
            self.pending.extend(checked)
            return
        for i, (number, row) in enumerate(zip(numbers, checked, strict=True)):
            if i in chunk.slow:
                self.feed(number, dict(zip(columns, values[i], strict=True)))
            elif row[0] in self.seen:
                self.result.rows += 1
                self.queue(number, row, row[0], dict(zip(columns, values[i], strict=True)))
            else:
                self.result.rows += 1
                self.seen[row[0]] = number
                self.pending.append(row)

    def flush(self, *, session: Session) -> None:
        """Write the queued rows in the caller's transaction."""
        self.write(self.take(), session=session)

    def take(self) -> list[Any]:
        """Hand over the queued rows (to write them elsewhere) and start a new batch."""
        rows, self.pending = self.pending, []
        return rows

    def write(self, rows: list[Any], *, session: Session) -> None:
        """Write a batch taken from this ingestor in the caller's transaction."""
        if rows:
            self.outcome.add(upsert(self.kind, rows, session=session, now=utcnow()))

    def finish(self) -> IngestResult:
        result = self.result
        result.inserted = self.outcome.inserted
        result.updated = self.outcome.updated
        result.unchanged = self.outcome.unchanged
        return result


def ingest_records(kind: Kind, records: list[Any], *, session: Session, tz: tzinfo) -> IngestResult:
    """Validate and store a list of JSON objects in the caller's transaction."""
    ingestor = Ingestor(kind, tz)
    unknown: set[str] = set()
    known = set(KNOWN_COLUMNS[kind])
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            ingestor.result.rows += 1
            ingestor.reject(index, "", "应为 JSON 对象", {})
            continue
        if kind != "profiles":
            unknown.update(k for k in record if k not in known)
        ingestor.feed(index, record)
    ingestor.flush(session=session)
    result = ingestor.finish()
    if unknown:
        # Names are echoed back: escape what UTF-8 cannot carry (a lone surrogate).
        names = ", ".join(sorted(unknown)).encode("utf-8", "backslashreplace").decode("utf-8")
        result.warnings.append(f"未知字段已忽略 / unknown fields ignored: {names}")
    return result


def check_columns(kind: Kind, columns: list[str], name: str) -> list[str]:
    """Refuse a header missing required columns; return warnings for unknown ones."""
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in columns]
    if "external_userid" not in columns and "unionid" not in columns:
        missing.append("external_userid 或 / or unionid")
    if missing:
        raise FileRejectedError(
            f"{name}: 缺少必需的列 / missing required columns: {', '.join(missing)}"
            f"（现有列 / columns found: {', '.join(columns)}；"
            f"列说明见 / see `tagbot import --help`）"
        )
    if kind == "profiles":
        if len(columns) == sum(c in KNOWN_COLUMNS["profiles"] for c in columns):
            raise FileRejectedError(
                f"{name}: 没有属性列 / no attribute column"
                "（除 external_userid、unionid 外至少一列 / at least one besides them）"
            )
        return []
    unknown = [c for c in columns if c not in KNOWN_COLUMNS[kind]]
    if unknown:
        return [f"{name}: 未知的列已忽略 / unknown columns ignored: {', '.join(unknown)}"]
    return []


ProgressFn = Callable[[int], None]


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cycle collector: an import makes no cycles, only containers by the million.

    Each chunk allocates hundreds of thousands of lists and tuples, so the collector ran
    full passes over every live row again and again (15 a 100,000-row re-import, a fifth
    of its CPU). Reference counting still frees everything; cycles wait until the end.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def import_file(
    kind: Kind,
    path: Path,
    *,
    db: Database,
    tz: tzinfo,
    on_open: Callable[[int | None, list[str]], None] | None = None,
    on_progress: ProgressFn | None = None,
    batch: int = FILE_BATCH,
) -> IngestResult:
    """Import a .csv or .xlsx file in committed batches; raise FileRejectedError if unreadable."""
    with _no_cyclic_gc(), open_table(path) as table:
        warnings = ([table.note] if table.note else []) + check_columns(
            kind, table.columns, path.name
        )
        if on_open is not None:
            on_open(table.total, warnings)
        ingestor = Ingestor(kind, tz)
        columns = table.columns
        width = len(columns)
        done = 0
        # CSV cells are all text: orders and events are checked a chunk at a time.
        chunked = kind in CHECKS and table.chunks is not None
        numbers: list[int] = []
        chunk: list[list[Any]] = []

        def write() -> None:
            # A writer thread was tried: on two cores the GIL hand-offs cost more
            # than SQLite's released-GIL time saves.
            with db.write() as session:
                ingestor.flush(session=session)

        def feed_chunk() -> None:
            ingestor.feed_chunk(numbers, chunk, columns)
            progress(len(chunk))
            numbers.clear()
            chunk.clear()

        def progress(rows: int) -> None:
            # Reported by the thousand, as rows are read (a chunk's rows at once).
            nonlocal done
            if on_progress is not None and (done + rows) // 1000 > done // 1000:
                on_progress((done + rows) // 1000 * 1000 - done // 1000 * 1000)
            done += rows

        def feed_one(number: int, values: list[Any]) -> None:
            if chunk:
                feed_chunk()  # keep file order: earlier rows first
            if len(values) > width and any(v not in (None, "") for v in values[width:]):
                ingestor.result.rows += 1
                raw = dict(zip(columns, values, strict=False))
                reason = f"该行有 {len(values)} 列，多于表头的 {width} 列"
                ingestor.reject(number, "", reason, raw)
            else:
                ingestor.feed(number, dict(zip(columns, values, strict=False)))
            progress(1)

        if chunked and table.chunks is not None:
            for read_numbers, read in table.chunks(batch):
                if all(len(values) == width for values in read):
                    numbers.extend(read_numbers)
                    chunk.extend(read)
                    feed_chunk()
                else:  # rows of another width are checked one by one, in file order
                    for number, values in zip(read_numbers, read, strict=True):
                        if len(values) == width:
                            numbers.append(number)
                            chunk.append(values)
                        else:
                            feed_one(number, values)
                    if chunk:
                        feed_chunk()
                if len(ingestor.pending) >= batch:
                    write()
        else:
            for number, values in table.rows:
                feed_one(number, values)
                if len(ingestor.pending) >= batch:
                    write()
        if chunk:
            feed_chunk()
        write()
        if on_progress is not None and done % 1000:
            on_progress(done % 1000)
    result = ingestor.finish()
    result.warnings[:0] = warnings
    return result
