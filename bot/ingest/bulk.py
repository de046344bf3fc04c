"""Check a chunk of CSV order or event rows column by column, at C speed.

The per-row validators in rows.py cost ~6–10 µs a row in Python: much of a million-row
import. Here each check runs over a whole column with builtins (`map`, `min`, `set`,
`str.join`), and only accepts what the per-row validator's own fast branches accept, with
the same values. A row any column check is unsure of is marked for the per-row validator,
which gives it its reason (or accepts it, e.g. `1,299.00`), so refused rows read exactly
as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from itertools import repeat
from operator import attrgetter, methodcaller, sub
from typing import Any

from bot.ingest.numbers import EARLIEST_TIME, PLAIN_AMOUNT, time_in_range
from bot.ingest.rows import AMOUNT_MAX, ID_MAX, STATUSES

_BOOLS = {"0": False, "1": True, "": False}
_TO_UTC = methodcaller("astimezone", UTC)
_ZONE = attrgetter("tzinfo")
_ISO = methodcaller("isoformat")


class Chunk:
    """Rows of one chunk as columns, and the rows left to the per-row validator."""

    def __init__(self, columns: list[str], values: Sequence[Sequence[str]]) -> None:
        width = len(columns)
        self.size = len(values)
        # One pass in C turns the rows into columns (every row has `width` str values).
        transposed = list(zip(*values, strict=False)) if values else [()] * width
        self.cells: dict[str, Sequence[str]] = dict(zip(columns, transposed, strict=False))
        self.slow: set[int] = set()  # positions the per-row validator must look at

    def column(self, name: str) -> Sequence[str]:
        """The column's cells; an absent column reads as empty, as raw.get() does."""
        return self.cells.get(name, ("",) * self.size)

    def mark(self, flags: Any) -> None:
        """Send the rows whose flag is true to the per-row validator."""
        self.slow.update(i for i, bad in enumerate(flags) if bad)


def _storable_text(chunk: Chunk, name: str, *, max_len: int = ID_MAX) -> list[str]:
    """Stripped text as `rows._text` gives it; marks rows it would refuse."""
    texts = list(map(str.strip, chunk.column(name)))
    if texts and max(map(len, texts)) > max_len:
        chunk.mark(len(t) > max_len for t in texts)
    joined = "".join(texts)
    if "\x00" in joined:
        chunk.mark("\x00" in t for t in texts)
    if not joined.isascii():
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            chunk.mark(not t.isascii() for t in texts)  # the per-row check says which
    return texts


def _customer_ids(chunk: Chunk) -> tuple[list[str | None], list[str | None]]:
    ext = _storable_text(chunk, "external_userid")
    union = _storable_text(chunk, "unionid")
    if not all(map(bool, map(max, ext, union))):  # max("", x) is x: one of them set
        chunk.mark(not (e or u) for e, u in zip(ext, union, strict=True))
    return [e or None for e in ext], [u or None for u in union]


def _times(chunk: Chunk, name: str, tz: tzinfo) -> list[datetime | None]:
    """`rows.parse_time`'s fast branch over a column: ISO 8601 as written, in range."""
    cells = chunk.column(name)
    try:
        parsed: list[datetime | None] = list(map(datetime.fromisoformat, cells))
    except ValueError:
        parsed = [_iso(cell) for cell in cells]
        chunk.mark(p is None for p in parsed)
    offsets = set(map(tz.utcoffset, parsed)) if not chunk.slow else set()
    if len(offsets) == 1 and not any(map(_ZONE, parsed)):
        # All parsed, none with a zone, one offset in `tz` (no DST change in the chunk):
        # UTC is the time less that offset, as astimezone() gives it; made aware by a
        # round trip through ISO text, far cheaper than replace()'s keyword arguments.
        offset = offsets.pop()
        try:
            shifted = list(map(sub, parsed, repeat(offset)))
        except (OverflowError, TypeError):
            pass  # near the ends of the calendar (or no offset): the general path
        else:
            texts = [text + "+00:00" for text in map(_ISO, shifted)]
            return _in_range(chunk, list(map(datetime.fromisoformat, texts)))
    moments = [
        None if m is None else m if m.tzinfo is not None else m.replace(tzinfo=tz) for m in parsed
    ]
    try:
        utc = [None if m is None else _TO_UTC(m) for m in moments]
    except OverflowError:
        utc = [_utc(m) for m in moments]
        chunk.mark(u is None for u in utc)
    return _in_range(chunk, utc)


def _in_range(chunk: Chunk, utc: list[datetime | None]) -> list[datetime | None]:
    """Mark the times `rows.parse_time` refuses as out of range."""
    present: list[datetime] = [u for u in utc if u is not None] if None in utc else utc  # type: ignore[assignment]
    if present and (min(present) < EARLIEST_TIME or not time_in_range(max(present))):
        chunk.mark(u is not None and not time_in_range(u) for u in utc)
    return utc


def _iso(cell: str) -> datetime | None:
    try:
        return datetime.fromisoformat(cell)
    except ValueError:
        return None


def _utc(moment: datetime | None) -> datetime | None:
    try:
        return None if moment is None else moment.astimezone(UTC)
    except OverflowError:
        return None


def _amounts(chunk: Chunk) -> list[Decimal | None]:
    """`rows.parse_amount`'s fast branch: plain digits, at most two decimals, < 10^8."""
    cells = chunk.column("amount")
    if all(map(PLAIN_AMOUNT.fullmatch, cells)):
        amounts: list[Decimal | None] = list(map(Decimal, cells))
        present: list[Decimal] = amounts  # type: ignore[assignment]
    else:
        amounts = [Decimal(c) if PLAIN_AMOUNT.fullmatch(c) else None for c in cells]
        chunk.mark(a is None for a in amounts)
        present = [a for a in amounts if a is not None]
    if present and max(present) >= AMOUNT_MAX:
        chunk.mark(a is not None and a >= AMOUNT_MAX for a in amounts)
    # Not quantized: 199.9 and 199.90 are the same amount, and the store writes fen.
    return amounts


def _required(chunk: Chunk, name: str, *, max_len: int = ID_MAX) -> list[str]:
    texts = _storable_text(chunk, name, max_len=max_len)
    if not all(texts):
        chunk.mark(not t for t in texts)
    return texts


def check_orders(chunk: Chunk, tz: tzinfo) -> list[tuple[Any, ...]]:
    """Order rows as `rows.validate_order` returns them (in its key order), slow rows aside."""
    order_ids = _required(chunk, "order_id")
    ext, union = _customer_ids(chunk)
    statuses = list(map(str.lower, map(str.strip, chunk.column("status"))))
    if not set(statuses) <= STATUSES:
        chunk.mark(s not in STATUSES for s in statuses)
    amounts = _amounts(chunk)
    paid_at = _times(chunk, "paid_at", tz)
    categories = _storable_text(chunk, "category")
    flags = list(map(_BOOLS.get, chunk.column("is_new_product")))
    if None in flags:
        chunk.mark(f is None for f in flags)
    return list(
        zip(order_ids, ext, union, amounts, paid_at, statuses, categories, flags, strict=True)
    )


def check_events(chunk: Chunk, tz: tzinfo) -> list[tuple[Any, ...]]:
    """Event rows as `rows.validate_event` returns them, slow rows aside."""
    event_ids = _required(chunk, "event_id")
    ext, union = _customer_ids(chunk)
    kinds = _required(chunk, "kind", max_len=32)
    occurred_at = _times(chunk, "occurred_at", tz)
    return list(zip(event_ids, ext, union, kinds, occurred_at, strict=True))


CHECKS = {"orders": check_orders, "events": check_events}
