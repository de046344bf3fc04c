"""Where every table goes on a Citus cluster, and the rules that keep the schema ready for it.

The one list of placements: docs/citus.md (the plan) prints it from `placement_table()`
and tests/test_citus_ready.py checks the ORM metadata, the migrated PostgreSQL schema and
every row lock in the code against it. A table missing from the list fails that test.

Citus rules applied (citusdata docs, develop/reference_ddl.rst and reference_workarounds.rst):
a distributed table's primary and unique keys include its distribution column, which is
never NULL; foreign keys run between co-located distributed tables on the distribution
column (never ON DELETE SET NULL / SET DEFAULT then), from a distributed or local table to
a reference table, between reference tables, or between local tables; never from a
reference or local table to a distributed one, nor from a distributed table to a local one.
`SELECT … FOR UPDATE` works only in single-shard queries: the queues keep theirs on
coordinator-local tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from sqlalchemy import Engine, MetaData, UniqueConstraint, inspect, text


class Placement(StrEnum):
    DISTRIBUTED = "distributed"  # create_distributed_table(t, col, colocate_with => 'customers')
    REFERENCE = "reference"  # create_reference_table(t): a copy on every node
    LOCAL = "local"  # citus_add_local_table_to_metadata(t): data on the coordinator


# Distributed by customer, all in the co-location group of `customers`: table -> column.
DISTRIBUTED: Final[dict[str, str]] = {
    "customers": "id",
    "follow_relations": "customer_id",
    "relation_tags": "customer_id",
    "orders": "customer_id",
    "interaction_events": "customer_id",
    "profile_attributes": "customer_id",
    "tier_assignments": "customer_id",
    "tier_transitions": "customer_id",
    "tier_population": "customer_id",
    "tier_touched": "customer_id",
    "campaign_deliveries": "customer_id",
}

# Configuration and catalogues: small, read with the customer tables, rarely written.
REFERENCE: Final[frozenset[str]] = frozenset(
    {
        "staff",
        "channels",
        "channel_staff",
        "channel_tags",
        "group_chats",
        "tag_groups",
        "tags",
        "campaigns",
        "retier_runs",  # tier_transitions.run_id points here: a reference, not a local table
    }
)

# On the coordinator: queues claimed with row locks, leases, budgets, tokens, the console's
# own state and the small aggregates the console reads.
LOCAL: Final[frozenset[str]] = frozenset(
    {
        "inbox_events",
        "outbox_operations",
        "outbox_tag_changes",
        "outbox_tallies",  # kept by triggers on outbox_operations: both on one node
        "campaign_runs",  # locked FOR UPDATE by the run's state changes
        "campaign_tasks",  # a queue (per sender, no customer column)
        "campaign_group_deliveries",  # per group chat (group 群发), no customer column
        "staff_alerts",
        "leases",
        "wecom_budgets",
        "wecom_budget_slots",
        "wecom_tokens",
        "wecom_jsapi_tickets",
        "tier_population_state",  # locked FOR UPDATE by population updates
        "tier_run_moves",
        "tier_size_days",
        "channel_days",
        "channel_totals",
        "channel_tier_mix",
        "group_members",  # per group, members are staff too; see KNOWN_EXCEPTIONS
        "auth_failures",
        "job_runs",
        "console_sessions",
        "console_audit",
    }
)

_ORPHANS = (
    "rows stored before their customer is known keep customer_id NULL and are linked later"
    " (bot/customers/contacts.py link_orphans); Citus refuses a NULL distribution value and"
    " an UPDATE of it: unlinked rows move to a coordinator-local staging table (docs/citus.md"
    " §4.2)"
)
_SURROGATE = (
    "surrogate bigserial id, unique on its own: becomes PRIMARY KEY (customer_id, id) in the"
    " conversion; not now, SQLite cannot autoincrement a composite key"
)

# Violations known today, by (table, constraint or column): each is a step of docs/citus.md.
# Any violation not listed here fails tests/test_citus_ready.py; so does a listed one that
# no longer occurs (remove it from the list when it is fixed).
KNOWN_EXCEPTIONS: Final[dict[tuple[str, str], str]] = {
    ("customers", "uq_customers_external_userid"): (
        "WeCom's id of the customer, looked up by every callback: moves to a lookup table"
        " customer_keys(external_userid PRIMARY KEY, customer_id) distributed by"
        " external_userid (docs/citus.md §4.1)"
    ),
    ("follow_relations", "pk_follow_relations"): _SURROGATE
    + "; relation_tags references it (relation_tags gains customer_id first)",
    ("relation_tags", "customer_id"): (
        "keyed by relation: gains customer_id (filled from follow_relations) and the key"
        " (customer_id, relation_id, tag_id)"
    ),
    ("relation_tags", "pk_relation_tags"): "as relation_tags.customer_id",
    ("relation_tags", "fk_relation_tags_relation_id_follow_relations"): (
        "becomes (customer_id, relation_id) -> follow_relations (customer_id, id)"
    ),
    ("orders", "customer_id"): _ORPHANS,
    ("orders", "pk_orders"): _SURROGATE,
    ("orders", "uq_orders_order_id"): (
        "the business system's idempotency key, global: checked in orders_keys(order_id"
        " PRIMARY KEY, customer_id) distributed by order_id (docs/citus.md §4.1)"
    ),
    ("orders", "fk_orders_customer_id_customers"): "ON DELETE SET NULL; " + _ORPHANS,
    ("interaction_events", "customer_id"): _ORPHANS,
    ("interaction_events", "pk_interaction_events"): _SURROGATE,
    ("interaction_events", "uq_interaction_events_event_id"): (
        "global idempotency key, as orders.order_id (events_keys)"
    ),
    ("interaction_events", "fk_interaction_events_customer_id_customers"): (
        "ON DELETE SET NULL; " + _ORPHANS
    ),
    ("profile_attributes", "customer_id"): _ORPHANS,
    ("profile_attributes", "pk_profile_attributes"): _SURROGATE,
    ("profile_attributes", "uq_profile_attributes_subject_name"): (
        "keyed by subject (external_userid or unionid) so rows wait for their customer:"
        " (customer_id, name) once linked rows alone live here"
    ),
    ("profile_attributes", "fk_profile_attributes_customer_id_customers"): (
        "ON DELETE SET NULL; " + _ORPHANS
    ),
    ("tier_transitions", "pk_tier_transitions"): _SURROGATE
    + "; campaign_runs.transitions_upto reads its order",
    ("campaign_deliveries", "pk_campaign_deliveries"): _SURROGATE,
    ("campaign_deliveries", "fk_campaign_deliveries_run_id_campaign_runs"): (
        "campaign_runs stays local (row-locked): the foreign key is dropped in the"
        " conversion; nothing deletes runs today"
    ),
    ("campaign_deliveries", "fk_campaign_deliveries_task_id_campaign_tasks"): (
        "campaign_tasks is a local queue: the foreign key is dropped in the conversion;"
        " task_id stays a plain column"
    ),
    ("group_members", "fk_group_members_customer_id_customers"): (
        "a local table cannot reference a distributed one: dropped in the conversion;"
        " customer_id stays a plain column, linked as today"
    ),
}


def placement(table: str) -> Placement | None:
    """Return where `table` goes on a Citus cluster, or None when it is not classified."""
    if table in DISTRIBUTED:
        return Placement.DISTRIBUTED
    if table in REFERENCE:
        return Placement.REFERENCE
    if table in LOCAL:
        return Placement.LOCAL
    return None


# --- the schema as the checks see it ---------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A primary key, unique constraint or unique index."""

    table: str
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ForeignKey:
    table: str
    name: str
    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]
    ondelete: str  # "" for NO ACTION


@dataclass(frozen=True)
class Schema:
    columns: dict[str, dict[str, bool]]  # table -> column -> nullable
    keys: tuple[Key, ...]
    foreign_keys: tuple[ForeignKey, ...]
    triggers: tuple[tuple[str, str], ...] = ()  # (table, trigger name); PostgreSQL only


def schema_from_metadata(metadata: MetaData) -> Schema:
    """Describe the ORM's tables."""
    columns: dict[str, dict[str, bool]] = {}
    keys: list[Key] = []
    fks: list[ForeignKey] = []
    for table in metadata.sorted_tables:
        columns[table.name] = {c.name: bool(c.nullable) for c in table.columns}
        pk = table.primary_key
        keys.append(Key(table.name, str(pk.name), tuple(c.name for c in pk.columns)))
        for cons in table.constraints:
            if isinstance(cons, UniqueConstraint):
                keys.append(Key(table.name, str(cons.name), tuple(c.name for c in cons.columns)))
        for index in table.indexes:
            if index.unique:
                cols = tuple(c.name for c in index.columns)
                keys.append(Key(table.name, str(index.name), cols))
        for fk in table.foreign_key_constraints:
            fks.append(
                ForeignKey(
                    table.name,
                    str(fk.name),
                    tuple(fk.column_keys),
                    fk.referred_table.name,
                    tuple(e.column.name for e in fk.elements),
                    (fk.ondelete or "").upper(),
                )
            )
    return Schema(columns, tuple(keys), tuple(fks))


_TRIGGERS_SQL = """
SELECT c.relname, t.tgname FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
"""


def schema_from_database(engine: Engine) -> Schema:
    """Describe the tables of the database's current schema as migrated (PostgreSQL)."""
    insp = inspect(engine)
    columns: dict[str, dict[str, bool]] = {}
    keys: list[Key] = []
    fks: list[ForeignKey] = []
    for table in insp.get_table_names():
        if table == "alembic_version":
            continue
        columns[table] = {c["name"]: bool(c["nullable"]) for c in insp.get_columns(table)}
        pk = insp.get_pk_constraint(table)
        keys.append(Key(table, str(pk["name"]), tuple(pk["constrained_columns"])))
        names = {str(pk["name"])}
        for uq in insp.get_unique_constraints(table):
            keys.append(Key(table, str(uq["name"]), tuple(uq["column_names"])))
            names.add(str(uq["name"]))
        for index in insp.get_indexes(table):
            if index["unique"] and index["name"] not in names:
                cols = tuple(str(c) for c in index["column_names"])
                keys.append(Key(table, str(index["name"]), cols))
        for fk in insp.get_foreign_keys(table):
            fks.append(
                ForeignKey(
                    table,
                    str(fk["name"]),
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    str(fk.get("options", {}).get("ondelete") or "").upper(),
                )
            )
    triggers: tuple[tuple[str, str], ...] = ()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            triggers = tuple((str(r[0]), str(r[1])) for r in conn.execute(text(_TRIGGERS_SQL)))
    return Schema(columns, tuple(keys), tuple(fks), triggers)


# --- the checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    table: str
    name: str  # the constraint, index, trigger or column at fault
    problem: str

    def __str__(self) -> str:
        return f"{self.table}.{self.name}: {self.problem}"


def _fk_violation(fk: ForeignKey) -> str | None:
    here, there = placement(fk.table), placement(fk.referred_table)
    if here is None or there is None:
        return None  # reported as unclassified
    if there is Placement.DISTRIBUTED:
        if here is not Placement.DISTRIBUTED:
            return f"a {here} table cannot reference the distributed {fk.referred_table}"
        mine, theirs = DISTRIBUTED[fk.table], DISTRIBUTED[fk.referred_table]
        pairs = set(zip(fk.columns, fk.referred_columns, strict=True))
        if (mine, theirs) not in pairs:
            return f"references {fk.referred_table} without {mine} -> {theirs}"
        if fk.ondelete in ("SET NULL", "SET DEFAULT"):
            return f"ON DELETE {fk.ondelete} on a key holding the distribution column"
        return None
    if there is Placement.LOCAL and here is not Placement.LOCAL:
        return f"a {here} table cannot reference the coordinator-local {fk.referred_table}"
    if there is Placement.LOCAL and here is Placement.REFERENCE and fk.ondelete == "CASCADE":
        return "ON DELETE CASCADE from a reference to a local table"
    return None


def violations(schema: Schema) -> list[Violation]:
    """Return every way `schema` breaks the placements and Citus's rules."""
    found: list[Violation] = []
    tables = set(schema.columns)
    for table in sorted(tables):
        if placement(table) is None:
            found.append(Violation(table, "-", "not classified in bot/db/citus.py"))
    for table in sorted((set(DISTRIBUTED) | REFERENCE | LOCAL) - tables):
        found.append(Violation(table, "-", "classified in bot/db/citus.py but not in the schema"))
    for table, column in DISTRIBUTED.items():
        if table not in tables:
            continue
        nullable = schema.columns[table].get(column)
        if nullable is None:
            found.append(Violation(table, column, "distribution column missing"))
        elif nullable:
            found.append(Violation(table, column, "distribution column is nullable"))
    for key in schema.keys:
        dist = DISTRIBUTED.get(key.table)
        if dist is not None and dist not in key.columns:
            cols = ", ".join(key.columns)
            found.append(Violation(key.table, key.name, f"key ({cols}) lacks {dist}"))
    for fk in schema.foreign_keys:
        problem = _fk_violation(fk)
        if problem is not None:
            found.append(Violation(fk.table, fk.name, problem))
    for table, trigger in schema.triggers:
        if placement(table) in (Placement.DISTRIBUTED, Placement.REFERENCE):
            found.append(Violation(table, trigger, f"trigger on a {placement(table)} table"))
    return found


def new_violations(found: Iterable[Violation]) -> list[Violation]:
    """Return the violations KNOWN_EXCEPTIONS does not list."""
    return [v for v in found if (v.table, v.name) not in KNOWN_EXCEPTIONS]


def stale_exceptions(found: Iterable[Violation]) -> list[tuple[str, str]]:
    """Return the KNOWN_EXCEPTIONS entries that no longer occur (fixed: remove them)."""
    seen = {(v.table, v.name) for v in found}
    return sorted(k for k in KNOWN_EXCEPTIONS if k not in seen)


def placement_table() -> str:
    """Return the Markdown table of placements docs/citus.md holds."""
    lines = ["| placement | tables |", "|---|---|"]
    dist = ", ".join(
        f"`{t}` ({c})" if c != "customer_id" else f"`{t}`" for t, c in DISTRIBUTED.items()
    )
    lines.append(f"| distributed by customer id, co-located with `customers` | {dist} |")
    lines.append(f"| reference | {', '.join(f'`{t}`' for t in sorted(REFERENCE))} |")
    lines.append(f"| local to the coordinator | {', '.join(f'`{t}`' for t in sorted(LOCAL))} |")
    return "\n".join(lines) + "\n"


def exceptions_table() -> str:
    """Return the Markdown table of known exceptions docs/citus.md holds."""
    lines = [
        "| table | key, column or constraint | why, and the step that fixes it |",
        "|---|---|---|",
    ]
    for (table, name), reason in KNOWN_EXCEPTIONS.items():
        cell = reason.replace("|", "\\|")
        lines.append(f"| `{table}` | `{name}` | {cell} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(placement_table())
    print(exceptions_table(), end="")
