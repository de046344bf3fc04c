"""What an amount in a shop export may look like, and the time range an order may have.

Amounts: ASCII digits, at most one decimal point with at most two decimals, an optional
leading minus (so a negative is refused with its own reason), and optionally thousands
grouped by commas exactly as Excel's `#,##0.00` format writes them (`1,234.50`).
Refused: `1_000` and `１００` (Python's Decimal would take both), exponents (`1e3`),
currency signs, a leading `+`, `.5`, `5.`, and commas in the wrong places (`1,00`).
Times: from 2000-01-01 (UTC) to one day past now; anything else is a typo or a unit mix-up.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

# The CSV fast path: plain digits with up to two decimals.
PLAIN_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?")
_AMOUNT = re.compile(r"-?(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.[0-9]+)?")

EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)


def amount_text(text: str) -> Decimal | None:
    """Return the Decimal an export's amount text spells, or None when it is not one."""
    if not _AMOUNT.fullmatch(text):
        return None
    return Decimal(text.replace(",", ""))


# The latest "a day from now" computed. The clock only moves on, so a time at or before it
# is within the range now too (a clock stepped back keeps the later bound: the check is a
# guard against typos); only a later time needs the clock read again (reading it
# for each of a million rows was a fifth of an order row's validation).
_known_bound = EARLIEST_TIME


def time_in_range(moment: datetime) -> bool:
    """Tell whether an aware time lies between 2000-01-01 and a day from now."""
    global _known_bound  # a cache: a bound once true stays true
    if moment < EARLIEST_TIME:
        return False
    if moment <= _known_bound:
        return True
    _known_bound = datetime.now(UTC) + FUTURE_SLACK
    return moment <= _known_bound
