"""Who a campaign reaches: candidates by tier, narrowed by `when`, each with one staff member.

- Members now (`tiers`): customers whose tier_assignments row of `dimension` is one of
  `tiers`.
- On entering (`on_enter`): customers with a tier_transitions row of `dimension` to
  `on_enter` whose id is above the previous run's `transitions_upto` (and at most this
  run's, the highest id when planning), who are still in that tier. A campaign's first
  run has no previous mark: it takes the entries of the latest full re-tier run and any
  after it — not all history (the first full run after installing makes everyone
  "enter", but a campaign added months later must not greet every past entry). With no
  full re-tier run yet it only sets the mark.
- `when` narrows the candidates set-based: the tiering engine computes the metric frame
  of the candidates in DuckDB, the current tiers become `tier.<dimension>` columns, and
  the rule compiled to SQL filters them — one query, never a rule per customer in Python.
- The staff member who reaches a customer: the most recent active relation (by
  added_at, then relation id) with an active member. Customers with none are unreachable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import (
    Campaign,
    CampaignRun,
    Customer,
    FollowRelation,
    RetierRun,
    Staff,
    TierAssignment,
    TierTransition,
)
from bot.rules import Expr, compile_condition, names_in, quote_ident, quote_string
from bot.rules.vocabulary import PROFILE_PREFIX, TIER_PREFIX
from bot.tiering.clock import Clock
from bot.tiering.engine import MetricsEngine
from bot.tiering.evaluate import load_current

# Past this many candidates the engine computes everyone (one pass) instead of sending
# an id list to the database inside its query.
ID_LIST_MAX = 20_000


@dataclass(frozen=True)
class Candidate:
    """A customer the campaign's tiers select, with who would reach them."""

    customer_id: int
    external_userid: str
    name: str
    tier: str | None
    staff_userid: str | None = None


@dataclass(frozen=True)
class Window:
    """The tier_transitions ids an on_enter run takes: (after, upto]."""

    after: int
    upto: int


def transition_window(session: Session, campaign_name: str) -> Window:
    """Return the ids of entries this on_enter run considers (see the module's rules)."""
    upto = session.scalar(select(func.max(TierTransition.id))) or 0
    previous = session.scalar(
        select(CampaignRun.transitions_upto)
        .join(Campaign, Campaign.id == CampaignRun.campaign_id)
        .where(Campaign.name == campaign_name, CampaignRun.transitions_upto.is_not(None))
        .order_by(CampaignRun.id.desc())
        .limit(1)
    )
    if previous is not None:
        return Window(int(previous), upto)
    latest_full = session.scalar(
        select(func.max(RetierRun.id)).where(
            RetierRun.scope == "full", RetierRun.dry_run.is_(False)
        )
    )
    if latest_full is None:
        return Window(upto, upto)
    before = session.scalar(
        select(func.max(TierTransition.id)).where(TierTransition.run_id < latest_full)
    )
    return Window(int(before or 0), upto)


def candidates_query(
    dimension: str, *, tiers: Sequence[str], on_enter: str | None, window: Window | None
) -> Select[int, str | None]:
    """Return a SELECT of (customer_id, tier) for members now or entries in `window`."""
    if on_enter is None:
        return select(TierAssignment.customer_id, TierAssignment.tier).where(
            TierAssignment.dimension == dimension, TierAssignment.tier.in_(list(tiers))
        )
    assert window is not None
    still_in = and_(
        TierAssignment.customer_id == TierTransition.customer_id,
        TierAssignment.dimension == TierTransition.dimension,
        TierAssignment.tier == TierTransition.to_tier,
    )
    return (
        select(TierTransition.customer_id, TierTransition.to_tier)
        .join(TierAssignment, still_in)
        .where(
            TierTransition.dimension == dimension,
            TierTransition.to_tier == on_enter,
            TierTransition.id > window.after,
            TierTransition.id <= window.upto,
        )
        .distinct()
    )


def read_candidates(session: Session, query: Select[int, str | None]) -> dict[int, Candidate]:
    """Return the candidates by customer id, each with its staff member (or None)."""
    sub = query.subquery()
    rows = session.execute(
        select(sub.c.customer_id, sub.c[1], Customer.external_userid, Customer.name).join(
            Customer, Customer.id == sub.c.customer_id
        )
    ).all()
    relations = session.execute(
        select(FollowRelation.customer_id, Staff.userid, FollowRelation.added_at, FollowRelation.id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(
            FollowRelation.status == "active",
            Staff.active.is_(True),
            FollowRelation.customer_id.in_(select(sub.c.customer_id)),
        )
    ).all()
    newest: dict[int, tuple[tuple[float, int], str]] = {}
    for cid, userid, added_at, rel_id in relations:
        rank = (added_at.timestamp() if added_at else float("-inf"), rel_id)
        if cid not in newest or rank > newest[cid][0]:
            newest[cid] = (rank, userid)
    out: dict[int, Candidate] = {}
    for cid, tier, ext, name in rows:
        staff = newest.get(cid)
        out[cid] = Candidate(cid, ext, name or "", tier, staff[1] if staff else None)
    return out


def narrow(
    db: Database,
    expr: Expr,
    customer_ids: Sequence[int],
    *,
    as_of: datetime,
    tz: str,
    id_list_max: int = ID_LIST_MAX,
) -> set[int]:
    """Return the customers among `customer_ids` for whom `expr` holds as of `as_of`."""
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        return set()
    listed = ids if len(ids) <= id_list_max else None
    engine = MetricsEngine(db, tz=tz)
    try:
        frame = engine.compute(as_of=as_of, customer_ids=listed)
        try:
            con, source = frame.con, engine.source
            assert source is not None
            con.execute("CREATE TABLE cand AS SELECT unnest(?::BIGINT[]) AS customer_id", [ids])
            names = names_in(expr)
            dims = sorted(n[len(TIER_PREFIX) :] for n in names if n.startswith(TIER_PREFIX))
            tier_cols = ""
            if dims:
                load_current(
                    con,
                    source,
                    clock=Clock(tz, as_of),
                    ids=listed,
                )
                pivot = ", ".join(
                    f"max(tier) FILTER (WHERE dimension = {quote_string(d)})"
                    f" AS {quote_ident(TIER_PREFIX + d)}"
                    for d in dims
                )
                con.execute(
                    f"CREATE TABLE curp AS SELECT customer_id, {pivot} FROM cur GROUP BY customer_id"
                )
                tier_cols = "".join(f", curp.{quote_ident(TIER_PREFIX + d)}" for d in dims)
                join = "LEFT JOIN curp ON curp.customer_id = metrics.customer_id"
            else:
                join = ""
            con.execute(
                f"CREATE TABLE audience AS SELECT metrics.*{tier_cols} FROM metrics"
                f" JOIN cand ON cand.customer_id = metrics.customer_id {join}"
            )
            # An attribute nobody has imported yet has no column: missing for everyone.
            have = {r[0] for r in con.execute("DESCRIBE audience").fetchall()}
            for name in sorted(n for n in names if n.startswith(PROFILE_PREFIX) and n not in have):
                con.execute(f"ALTER TABLE audience ADD COLUMN {quote_ident(name)} VARCHAR")
            rows = con.execute(
                f"SELECT customer_id FROM audience WHERE {compile_condition(expr)}"
            ).fetchall()
            return {int(r[0]) for r in rows}
        finally:
            frame.close()
    finally:
        engine.close()
