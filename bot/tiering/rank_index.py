"""A kept rank population's values sorted once, so a customer's rank is a binary search.

`metrics_orders.ranks` gives every buyer tie-inclusive counts against the population:
k_m the buyers whose spend_365d is <= theirs, k_r those whose last order is as old or
older, k_c those whose clv_365d is <= theirs among the n_c that have one (a customer
without clv gets n_c), n all buyers. Counting them for a few customers by a pass over the
population per request grows with it (1 M buyers at a large brand: ~100 ms of an
explanation). A `RankIndex` sorts the population's three value columns once per kept
population (a run's, a day's) and answers each count with `numpy.searchsorted`: O(log n).

The population changes between sorts: a touched run, or an explanation (it ranks the
customer's values of now), replaces its customers' rows. The replaced rows' values are
kept beside the sorted arrays as small sorted lists per column — the base values taken
out, the new ones put in — so a count is the base array's less the removed ones' plus the
added ones'. Past `MAX_REPLACED` replaced customers the engine sorts anew.

Missing values never count, as SQL comparisons with NULL never hold: a buyer without a
spend or last order (none are stored so, but the columns allow it) is in n only, and a
customer's own missing spend or recency gives k = 0.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

# Replaced customers kept beside the sorted arrays before the engine sorts anew: each
# replacement is an insertion into lists up to this long; sorting 1 M values takes ~0.1 s.
MAX_REPLACED = 4096

Row = tuple[int | None, int | None, float | None]  # fen_365d, last_ago, clv


@dataclass(frozen=True)
class Ranks:
    """One buyer's tie-inclusive counts, as `metrics_orders.ranks` gives them."""

    cid: int
    k_m: int
    k_r: int
    k_c: int
    n_c: int
    n: int


class _Column:
    """One value column: the base values sorted, and the replacements' as sorted lists."""

    def __init__(self, values: npt.NDArray[Any]) -> None:
        self.base = np.sort(values)
        self.removed: list[Any] = []  # base values of replaced rows
        self.added: list[Any] = []  # replaced rows' values now

    def __len__(self) -> int:
        return len(self.base) - len(self.removed) + len(self.added)

    def at_most(self, xs: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """Count the values <= each x."""
        return self._count(xs, "right")

    def at_least(self, xs: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """Count the values >= each x."""
        return len(self) - self._count(xs, "left")

    def _count(self, xs: npt.NDArray[Any], side: Any) -> npt.NDArray[np.int64]:
        """Count the values < each x (`side` "left") or <= it ("right")."""
        got = np.searchsorted(self.base, xs, side=side).astype(np.int64)
        if self.removed:
            got -= np.searchsorted(np.asarray(self.removed), xs, side=side)
        if self.added:
            got += np.searchsorted(np.asarray(self.added), xs, side=side)
        return got

    def take(self, x: Any, *, base: bool) -> None:
        """Take one value out: a base value (noted in `removed`) or an added one."""
        if x is None:
            return
        if base:
            bisect.insort(self.removed, x)
        else:
            del self.added[bisect.bisect_left(self.added, x)]

    def put(self, x: Any) -> None:
        if x is not None:
            bisect.insort(self.added, x)


class RankIndex:
    """A population's spend, recency and clv sorted, with its replaced rows beside them."""

    def __init__(self, fen: npt.NDArray[Any], ago: npt.NDArray[Any], clv: npt.NDArray[Any]) -> None:
        """Index the population's columns (same length; NULLs masked, as DuckDB hands them)."""
        self._cols = (_Column(_present(fen)), _Column(_present(ago)), _Column(_present(clv)))
        self._n = len(fen)
        self._replaced: set[int] = set()  # customers whose row is in the `added` lists

    @classmethod
    def from_table(cls, cur: duckdb.DuckDBPyConnection, table: str) -> RankIndex:
        """Index a DuckDB table of (cid, fen_365d, last_ago, clv), as the engine keeps it."""
        got = cur.execute(
            "SELECT CAST(fen_365d AS BIGINT) AS fen, CAST(last_ago AS BIGINT) AS ago,"
            f" CAST(clv AS DOUBLE) AS clv FROM {table}"
        ).fetchnumpy()
        return cls(got["fen"], got["ago"], got["clv"])

    @property
    def replaced(self) -> int:
        """How many customers' rows are kept beside the sorted arrays."""
        return len(self._replaced)

    def __len__(self) -> int:
        return self._n

    def replace(self, cid: int, old: Row | None, new: Row | None) -> None:
        """Replace the customer's row `old` (None: absent) by `new` (None: not a buyer now).

        `old` is the row the population holds for them now, as the table the index
        mirrors gives it; the table's DELETE + INSERT do the same there.
        """
        base = cid not in self._replaced
        if old is not None:
            for col, x in zip(self._cols, old, strict=True):
                col.take(x, base=base)
            self._n -= 1
        if new is not None:
            for col, x in zip(self._cols, new, strict=True):
                col.put(x)
            self._n += 1
        self._replaced.add(cid)

    def ranks(self, rows: Sequence[tuple[int, Row]]) -> list[Ranks]:
        """Return the counts of these buyers, each given with its row in the population."""
        if not rows:
            return []
        fen, ago, clv = self._cols
        n_c = len(clv)
        k = []
        for col, j, count, missing in (
            (fen, 0, _Column.at_most, 0),
            (ago, 1, _Column.at_least, 0),
            (clv, 2, _Column.at_most, n_c),
        ):
            xs = [r[j] for _, r in rows]
            present = [i for i, x in enumerate(xs) if x is not None]
            got = np.full(len(rows), missing, dtype=np.int64)
            if present:
                got[present] = count(col, np.asarray([xs[i] for i in present]))
            k.append(got)
        return [
            Ranks(cid, int(k[0][i]), int(k[1][i]), int(k[2][i]), n_c, self._n)
            for i, (cid, _) in enumerate(rows)
        ]


def _present(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Return the values that are not NULL (DuckDB hands a masked array when some are)."""
    if isinstance(values, np.ma.MaskedArray):
        return values.compressed()
    return np.asarray(values)
