"""Upgrading to tag_groups.tier_dimension records what the evidence says, both backends."""

from __future__ import annotations

from alembic import command
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.migrate import alembic_config, upgrade_to_head
from bot.db.models import ChannelTag, FollowRelation, RelationTag, Tag, TagGroup, TierAssignment
from tests.tier_metrics_factory import customer, local, relation, staff

BEFORE = "bf794ee45aa2"


def _downgrade(db: Database) -> None:
    cfg = alembic_config(db.engine.url.render_as_string(hide_password=False))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, BEFORE)


def _old_channel(s: Session) -> int:
    """Add a live code with the columns the schema had then (the model has more now)."""
    return int(
        s.execute(
            text(
                "INSERT INTO channels (name, state, qr_code, welcome_text, welcome_attachments,"
                " skip_verify, source, scans, created_at, updated_at) VALUES ('门店', 's-door',"
                " '', '', '[]', false, 'cli', 0, :now, :now) RETURNING id"
            ),
            {"now": "2026-11-01 00:00:00"},
        ).scalar_one()
    )


def test_the_upgrade_gives_a_group_the_dimension_its_customers_tags_show(db: Database) -> None:
    _downgrade(db)
    try:
        with db.write() as s:
            st = staff(s, "u")
            groups = {}
            for name in ("活跃度", "来源", "混合", "手工"):
                row = {"name": name, "managed": name != "手工", "wecom_group_id": f"g{name}"}
                groups[name] = s.execute(insert(TagGroup).values(row).returning(TagGroup.id))
                groups[name] = groups[name].scalar_one()
            held = {  # customer -> (its assignments, the tags it carries)
                "c0": ({"activity": "活跃"}, [("活跃度", "活跃"), ("来源", "活跃")]),
                "c1": ({"activity": "沉睡"}, [("活跃度", "沉睡"), ("手工", "沉睡")]),
                # As much evidence for two dimensions: which one is not known.
                "c2": ({"value": "高", "level": "高"}, [("混合", "高")]),
            }
            tags: dict[tuple[str, str], int] = {}
            for ext, (assigned, carried) in held.items():
                c = customer(s, ext)
                relation(s, c, st, added=local(1))
                s.flush()
                rel = s.scalar(select(FollowRelation.id).where(FollowRelation.customer_id == c.id))
                for dim, tier in assigned.items():
                    s.add(TierAssignment(customer_id=c.id, dimension=dim, tier=tier))
                for path in carried:
                    if path not in tags:
                        managed = path[0] != "手工"
                        tag = Tag(group_id=groups[path[0]], name=path[1], managed=managed)
                        tag.wecom_tag_id = f"t{path[0]}{path[1]}"
                        s.add(tag)
                        s.flush()
                        tags[path] = tag.id
                    s.add(RelationTag(relation_id=rel, tag_id=tags[path]))
            s.add(ChannelTag(channel_id=_old_channel(s), group_name="来源", tag_name="活跃"))
    finally:
        upgrade_to_head(db.engine)
    with db.read() as s:
        rows = s.execute(text("SELECT name, tier_dimension FROM tag_groups ORDER BY name"))
        recorded = dict(rows.all())
    # A channel's group and a group the bot did not make are never given one.
    assert recorded == {"活跃度": "activity", "来源": None, "混合": None, "手工": None}
