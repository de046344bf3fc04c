"""Ranks by binary search (`RankIndex`) are the counts of a brute-force pass, ties and gaps too.

The index sorts a population once and keeps later replacements beside it; whatever the
replacements (a buyer's new values, one who stops buying, a new buyer, the same customer
replaced again), each customer's k and n must be those of counting over the population as
it is then — and those of the full run's windows (`metrics_orders.ranks`) over it.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.tiering.metrics_orders import ranks
from bot.tiering.rank_index import RankIndex, Ranks, Row

# Few distinct values, so ties are the rule; clv often missing.
FEN = st.sampled_from([100, 500, 500, 12000, 0])
AGO = st.integers(0, 5)
CLV = st.one_of(st.none(), st.sampled_from([0.5, 2.0, 2.0, 7.25, 0.0]))
ROW = st.tuples(FEN, AGO, CLV)
# Spend or recency missing too (the columns allow it; SQL comparisons with NULL never hold).
ANY_ROW = st.tuples(st.one_of(st.none(), FEN), st.one_of(st.none(), AGO), CLV)


def brute(pop: dict[int, Row], cid: int) -> Ranks:
    """Count over every row, as `ranks_of_few` did in SQL: NULL never compares true."""
    fen, ago, clv = pop[cid]
    rows = list(pop.values())
    n_c = sum(1 for r in rows if r[2] is not None)
    return Ranks(
        cid,
        k_m=sum(1 for r in rows if fen is not None and r[0] is not None and r[0] <= fen),
        k_r=sum(1 for r in rows if ago is not None and r[1] is not None and r[1] >= ago),
        k_c=n_c if clv is None else sum(1 for r in rows if r[2] is not None and r[2] <= clv),
        n_c=n_c,
        n=len(rows),
    )


def table(pop: dict[int, Row]) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection holding the population as the engine's `pop` table."""
    con = duckdb.connect()
    con.execute("CREATE TABLE pop (cid BIGINT, fen_365d BIGINT, last_ago INTEGER, clv DOUBLE)")
    cols: list[list[Any]] = [list(pop), *([r[j] for r in pop.values()] for j in range(3))]
    con.execute(
        "INSERT INTO pop SELECT unnest(?::BIGINT[]), unnest(?::BIGINT[]),"
        " unnest(?::INTEGER[]), unnest(?::DOUBLE[])",
        [list(c) for c in cols],
    )
    return con


def windows(pop: dict[int, Row]) -> dict[int, Ranks]:
    """The full run's window SQL over the population (spend and recency present)."""
    con = table(pop)
    con.execute(ranks("SELECT * FROM pop", keep=None))
    got = {r[0]: Ranks(*r) for r in con.execute("SELECT * FROM ranks").fetchall()}
    con.close()
    return got


def index_of(pop: dict[int, Row]) -> RankIndex:
    """Index the population as the engine does: from a DuckDB table (NULLs masked)."""
    con = table(pop)
    index = RankIndex.from_table(con, "pop")
    con.close()
    return index


def replacements(rows: st.SearchStrategy[Row]) -> st.SearchStrategy[list[tuple[int, Row | None]]]:
    """Customers 0..40 (some not in the population yet) given new rows or none."""
    return st.lists(st.tuples(st.integers(0, 40), st.one_of(st.none(), rows)), max_size=25)


@settings(max_examples=100, deadline=None)
@given(st.lists(ANY_ROW, min_size=1, max_size=30), replacements(ANY_ROW))
def test_index_counts_as_a_brute_force_pass_through_replacements(
    rows: list[Row], changes: list[tuple[int, Row | None]]
) -> None:
    pop = dict(enumerate(rows))
    index = index_of(pop)
    assert len(index) == len(pop)
    for cid in pop:
        assert index.ranks([(cid, pop[cid])]) == [brute(pop, cid)]
    for cid, new in changes:
        index.replace(cid, pop.get(cid), new)
        if new is None:
            pop.pop(cid, None)
        else:
            pop[cid] = new
        assert len(index) == len(pop)
        # Every customer now, in one call (vectorised) and one by one.
        every = sorted(pop.items())
        assert index.ranks(every) == [brute(pop, c) for c, _ in every]
        if cid in pop:
            assert index.ranks([(cid, pop[cid])]) == [brute(pop, cid)]
    assert index.replaced == len({cid for cid, _ in changes})


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=30), replacements(ROW))
def test_index_counts_as_the_full_runs_windows(
    rows: list[Row], changes: list[tuple[int, Row | None]]
) -> None:
    pop = dict(enumerate(rows))
    index = index_of(pop)
    for cid, new in changes:
        index.replace(cid, pop.get(cid), new)
        if new is None:
            pop.pop(cid, None)
        else:
            pop[cid] = new
    if pop:
        expected = windows(pop)
        assert index.ranks(sorted(pop.items())) == [expected[c] for c in sorted(pop)]


def test_a_large_population_with_ties_and_missing_values() -> None:
    """10,000 buyers on 50 spend values, a third without clv: random customers checked."""
    rng = np.random.default_rng(7)
    n = 10_000
    fen = rng.integers(0, 50, n) * 100
    ago = rng.integers(0, 365, n)
    clv = np.round(rng.random(n) * 20, 1)
    pop: dict[int, Row] = {
        i: (int(fen[i]), int(ago[i]), None if i % 3 == 0 else float(clv[i])) for i in range(n)
    }
    index = index_of(pop)
    for step in range(300):
        cid = int(rng.integers(0, n + 100))
        new: Row | None = None if step % 7 == 0 else (int(rng.integers(0, 50)) * 100, 3, 2.5)
        index.replace(cid, pop.get(cid), new)
        if new is None:
            pop.pop(cid, None)
        else:
            pop[cid] = new
    checked = [int(c) for c in rng.choice(sorted(pop), 40, replace=False)]
    assert index.ranks([(c, pop[c]) for c in checked]) == [brute(pop, c) for c in checked]
    expected = windows(pop)
    assert index.ranks(sorted(pop.items())) == [expected[c] for c in sorted(pop)]
