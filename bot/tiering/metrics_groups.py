"""Customer group (客户群) metrics: how many groups now, the last join, the first join's
channel, the names of the groups a customer is in (for `group.<群名>`), and the joins the
customer made, counted as interactions.

Group members are WeCom ids: a stay belongs to the customer whose external_userid is the
member's (member_type 2), joined inside the operational database by its unique index.
A stay is current at as_of when it began by then and neither it nor its group had ended.
"""

from __future__ import annotations

from bot.rules.vocabulary import GROUP_NAMES_COLUMN
from bot.tiering.clock import Clock
from bot.tiering.source import Source, native, timestamp_expr

EXTERNAL = 2  # group_members.member_type of an external contact
# groupchat/get's join_scene of joins the customer made: 2 accepted a member's invitation
# link, 3 scanned the group's QR. 1 (pulled in directly by a member) is not their act.
OWN_JOIN_SCENES = (2, 3)
JOIN_KIND = "group_join"  # the kind group joins take among the staged interactions


def stage_stays(source: Source, *, ids: list[int] | None, clock: Clock) -> str:
    """Return SQL staging group stays begun by as_of as `g(cid, gid, name, channel, scene, joined, ago, now_in)`."""
    only = ""
    if ids is not None:
        only = " AND cu.id IN ({})".format(", ".join(str(int(i)) for i in ids) or "NULL")
    rows = native(
        source,
        "SELECT cu.id AS customer_id, gm.group_chat_id, gc.name AS group_name,"
        " ch.name AS channel, gm.join_scene, gm.joined_at, gm.left_at, gc.dismissed_at"
        " FROM {group_members} gm"
        " JOIN {customers} cu ON cu.external_userid = gm.member_userid"
        " JOIN {group_chats} gc ON gc.id = gm.group_chat_id"
        " LEFT JOIN {channels} ch ON ch.id = gm.channel_id"
        f" WHERE gm.member_type = {EXTERNAL}{only}",
        ("group_members", "customers", "group_chats", "channels"),
    )
    as_of = f"TIMESTAMP '{clock.as_of_utc}'"
    return f"""
        CREATE TABLE g AS
        SELECT cid, gid, name, channel, scene, joined, {clock.days_ago("joined")} AS ago,
               (left_ IS NULL OR left_ > {as_of}) AND (gone IS NULL OR gone > {as_of}) AS now_in
        FROM (
            SELECT CAST(customer_id AS BIGINT) AS cid, CAST(group_chat_id AS BIGINT) AS gid,
                   CAST(group_name AS VARCHAR) AS name, CAST(channel AS VARCHAR) AS channel,
                   CAST(join_scene AS INTEGER) AS scene,
                   {timestamp_expr(source, "joined_at")} AS joined,
                   {timestamp_expr(source, "left_at")} AS left_,
                   {timestamp_expr(source, "dismissed_at")} AS gone
            FROM {rows}
        )
        WHERE joined <= {as_of}"""


# The customer's own joins, as interactions (run after `e` is staged, before its metrics).
JOINS_AS_EVENTS = f"""
    INSERT INTO e
    SELECT cid, '{JOIN_KIND}', ago, NULL FROM g
    WHERE scene IN ({", ".join(str(s) for s in OWN_JOIN_SCENES)})
"""

# The channel is the earliest stay's that has one; joins at the same instant go by name.
GROUP_METRICS = """
    CREATE TABLE gm AS
    SELECT cid,
           count(DISTINCT gid) FILTER (WHERE now_in) AS groups_count,
           min(ago) AS days_since_group_join,
           arg_min(channel, struct_pack(j := joined, c := channel))
             FILTER (WHERE channel IS NOT NULL) AS group_channel,
           list_sort(list_distinct(list(name) FILTER (WHERE now_in))) AS group_names
    FROM g
    GROUP BY cid
"""

COLUMNS: dict[str, str] = {
    "groups_count": "coalesce(gm.groups_count, 0)",
    "days_since_group_join": "gm.days_since_group_join",
    "group_channel": "gm.group_channel",
}
# Not a metric: the names `group.<群名>` is tested against (empty, never NULL).
NAMES = f'coalesce(gm.group_names, CAST([] AS VARCHAR[])) AS "{GROUP_NAMES_COLUMN}"'
