"""渠道质量's counts: per channel, the customers ever added through it by their tier now.

`channel_tier_mix` holds, per channel, the channel's customers (dimension and tier "",
`TOTAL`) and per dimension the ones holding each tier; those holding none of a dimension
are the total less its tiers. The channel rollup and a full re-tier rewrite it whole
(one grouped pass); a touched re-tier applies its own transitions (its customers' rows
only), so the 渠道活码 page reads a few rows per channel and never counts customers.

A group live code (群活码) brings no relations: its rows count the members who joined
through it (`group_members.channel_id`, external members, deduplicated; those who are
nobody's customer hold no tier), by their customer's tier.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from bot.db.models import (
    Channel,
    ChannelTierMix,
    FollowRelation,
    GroupMember,
    TierAssignment,
    TierTransition,
)
from bot.db.types import utcnow

TOTAL = ""  # dimension and tier of a channel's total row
EXTERNAL = 2  # group_members.member_type of an external contact


def _group_codes() -> Any:
    return select(Channel.id).where(Channel.kind == "group")


Counts = dict[tuple[int, str, str], int]  # (channel_id, dimension, tier) -> customers


def count(*, session: Session) -> Counts:
    """Count every channel's customers, in total and per dimension and tier (one pass each)."""
    rel, ta = FollowRelation, TierAssignment
    out: Counts = {}
    for channel_id, n in session.execute(
        select(rel.channel_id, func.count(func.distinct(rel.customer_id)))
        .where(rel.channel_id.is_not(None))
        .group_by(rel.channel_id)
    ):
        out[(int(channel_id or 0), TOTAL, TOTAL)] = int(n)
    for channel_id, dimension, tier, n in session.execute(
        select(rel.channel_id, ta.dimension, ta.tier, func.count(func.distinct(rel.customer_id)))
        .join(ta, ta.customer_id == rel.customer_id)
        .where(rel.channel_id.is_not(None))
        .group_by(rel.channel_id, ta.dimension, ta.tier)
    ):
        out[(int(channel_id or 0), str(dimension), str(tier))] = int(n)
    gm = GroupMember
    joined = gm.channel_id.in_(_group_codes())
    for channel_id, n in session.execute(
        select(gm.channel_id, func.count(func.distinct(gm.member_userid)))
        .where(joined, gm.member_type == EXTERNAL)
        .group_by(gm.channel_id)
    ):
        out[(int(channel_id or 0), TOTAL, TOTAL)] = int(n)
    for channel_id, dimension, tier, n in session.execute(
        select(gm.channel_id, ta.dimension, ta.tier, func.count(func.distinct(gm.customer_id)))
        .join(ta, ta.customer_id == gm.customer_id)
        .where(joined, gm.member_type == EXTERNAL)
        .group_by(gm.channel_id, ta.dimension, ta.tier)
    ):
        out[(int(channel_id or 0), str(dimension), str(tier))] = int(n)
    return out


def write(counts: Counts, *, session: Session, now: datetime | None = None) -> None:
    """Replace the whole mix with `counts`."""
    session.execute(delete(ChannelTierMix))
    _insert(counts, session=session, now=now)


def _insert(counts: Counts, *, session: Session, now: datetime | None) -> None:
    at = now or utcnow()
    rows = [
        {"channel_id": c, "dimension": d, "tier": t, "customers": n, "computed_at": at}
        for (c, d, t), n in sorted(counts.items())
        if n > 0
    ]
    if rows:
        session.execute(insert(ChannelTierMix), rows)


def apply_run(run_id: int, *, session: Session) -> None:
    """Move a touched run's customers between the tiers of their channels' rows.

    Rewrites the rows of the channels and dimensions the run moved customers in; with no
    mix written yet (a fresh install before its first rollup) counts everything instead.
    """
    if session.scalar(select(ChannelTierMix.channel_id).limit(1)) is None:
        write(count(session=session), session=session)
        return
    tt, rel = TierTransition, FollowRelation
    delta: Counter[tuple[int, str, str]] = Counter()
    for channel_id, dimension, from_tier, to_tier, n in session.execute(
        select(
            rel.channel_id,
            tt.dimension,
            tt.from_tier,
            tt.to_tier,
            func.count(func.distinct(tt.customer_id)),
        )
        .join(rel, rel.customer_id == tt.customer_id)
        .where(tt.run_id == run_id, rel.channel_id.is_not(None))
        .group_by(rel.channel_id, tt.dimension, tt.from_tier, tt.to_tier)
    ):
        if from_tier is not None:
            delta[(int(channel_id or 0), dimension, from_tier)] -= int(n)
        if to_tier is not None:
            delta[(int(channel_id or 0), dimension, to_tier)] += int(n)
    gm = GroupMember
    for channel_id, dimension, from_tier, to_tier, n in session.execute(
        select(
            gm.channel_id,
            tt.dimension,
            tt.from_tier,
            tt.to_tier,
            func.count(func.distinct(tt.customer_id)),
        )
        .join(gm, gm.customer_id == tt.customer_id)
        .where(tt.run_id == run_id, gm.channel_id.in_(_group_codes()))
        .group_by(gm.channel_id, tt.dimension, tt.from_tier, tt.to_tier)
    ):
        if from_tier is not None:
            delta[(int(channel_id or 0), dimension, from_tier)] -= int(n)
        if to_tier is not None:
            delta[(int(channel_id or 0), dimension, to_tier)] += int(n)
    touched = {(c, d) for c, d, _ in delta}
    if not touched:
        return
    kept: Counts = {}
    for channel_id, dimension in touched:
        for tier, n in session.execute(
            select(ChannelTierMix.tier, ChannelTierMix.customers).where(
                ChannelTierMix.channel_id == channel_id, ChannelTierMix.dimension == dimension
            )
        ):
            kept[(channel_id, dimension, tier)] = int(n)
        session.execute(
            delete(ChannelTierMix).where(
                ChannelTierMix.channel_id == channel_id, ChannelTierMix.dimension == dimension
            )
        )
    for key, n in delta.items():
        kept[key] = kept.get(key, 0) + n
    _insert(kept, session=session, now=None)


Mix = dict[int, dict[str | None, int]]  # channel_id -> tier (None: no tier) -> customers


def mix(dimension: str, *, session: Session) -> Mix:
    """Return per channel its customers by tier of `dimension` (None: no tier).

    Read from the rows written last; before any was written (a fresh install, before its
    first rollup or re-tier) counted in the caller's transaction instead.
    """
    counts: Counts = {
        (int(c), str(d), str(t)): int(n)
        for c, d, t, n in session.execute(
            select(
                ChannelTierMix.channel_id,
                ChannelTierMix.dimension,
                ChannelTierMix.tier,
                ChannelTierMix.customers,
            ).where(ChannelTierMix.dimension.in_([TOTAL, dimension]))
        )
    }
    if not counts and session.scalar(select(ChannelTierMix.channel_id).limit(1)) is None:
        counts = count(session=session)
    out: Mix = {}
    for (channel_id, dim, _), total in counts.items():
        if dim != TOTAL:
            continue
        held: dict[str | None, int] = {
            t: n for (c, d, t), n in counts.items() if c == channel_id and d == dimension
        }
        none = total - sum(n for n in held.values())
        if none > 0:
            held[None] = none
        out[channel_id] = held
    return out
