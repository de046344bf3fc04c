"""What a fault test started and what became of it: "nothing lost, nothing twice".

A test records every operation it starts (a scan and its welcome code, the tags a relation
must end with) and, once the bot has settled, `check` compares the record with the
simulator's final state and the database's queues. It returns every problem found, each a
sentence naming the operation, so a failure says what was lost or done twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select

from bot.db import Database
from bot.db.models import InboxEvent, OutboxOperation
from bot.states import InboxStatus, OutboxStatus
from wecom_sim import Simulator

WELCOME = "externalcontact/send_welcome_msg"
SHOWN = 10  # examples quoted per kind of problem


@dataclass(frozen=True)
class Scan:
    """A scan the test made: who, the welcome code WeCom issued, the bot's first answer."""

    userid: str
    external_userid: str
    welcome_code: str | None
    acked: bool  # some delivery of its event was answered 200


@dataclass
class History:
    """Every operation a fault test started, to check against the end state."""

    scans: list[Scan] = field(default_factory=list)
    desired: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def scanned(self, scan: Scan) -> None:
        """Record a scan; its channel tags are desired separately (`desire`)."""
        self.scans.append(scan)

    def desire(self, userid: str, external_userid: str, tag_ids: Iterable[str]) -> None:
        """Record tags the relation must carry in WeCom at the end."""
        self.desired.setdefault((userid, external_userid), set()).update(tag_ids)

    def check(self, sim: Simulator, db_url: str, *, permanent: Iterable[int] = ()) -> list[str]:
        """Return every way the end state breaks the history (empty: it holds).

        `permanent` lists errcodes a dead outbox row may end on; any other dead row is a
        retryable error given up on, a loss.
        """
        return [
            *self._tags(sim),
            *self._welcomes(sim),
            *_queues(db_url, frozenset(permanent)),
        ]

    def _tags(self, sim: Simulator) -> list[str]:
        missing = []
        for (userid, ext), wanted in sorted(self.desired.items()):
            lacking = wanted - sim.relation_tags(userid, ext)
            if lacking:
                missing.append(f"{userid}×{ext} lacks {sorted(lacking)}")
        return _problems("desired tag states not reached", missing, len(self.desired))

    def _welcomes(self, sim: Simulator) -> list[str]:
        sent = {w.welcome_code for w in sim.welcomes if w.sent_at is not None}
        acked = [s for s in self.scans if s.acked and s.welcome_code]
        unsent = [
            f"{s.external_userid} ({s.welcome_code})" for s in acked if s.welcome_code not in sent
        ]
        problems = _problems("acknowledged scans never welcomed", unsent, len(acked))
        calls = sim.calls
        succeeded = calls.get((WELCOME, 0), 0)
        if succeeded != len(sent):
            problems.append(
                f"send_welcome_msg succeeded {succeeded} times for {len(sent)} welcome codes: "
                "a welcome went out twice"
            )
        mine = {s.welcome_code for s in self.scans}
        strangers = sorted(sent - mine)
        problems += _problems("welcomes sent for codes no scan issued", strangers, len(sent))
        return problems


def _queues(db_url: str, permanent: frozenset[int]) -> list[str]:
    db = Database(db_url)
    try:
        with db.read() as session:
            inbox = list(
                session.execute(select(InboxEvent.id, InboxEvent.status, InboxEvent.last_error))
            )
            outbox = list(
                session.execute(
                    select(
                        OutboxOperation.id,
                        OutboxOperation.kind,
                        OutboxOperation.status,
                        OutboxOperation.last_errcode,
                        OutboxOperation.last_error,
                    )
                )
            )
    finally:
        db.dispose()
    finished = {InboxStatus.DONE, InboxStatus.IGNORED}
    open_events = [f"#{i} {st}: {err}" for i, st, err in inbox if st not in finished]
    problems = _problems("inbox events not finished", open_events, len(inbox))
    unfinished = [
        f"#{i} {kind} {st}"
        for i, kind, st, _, _ in outbox
        if st not in (OutboxStatus.DONE, OutboxStatus.DEAD)
    ]
    problems += _problems("outbox rows not finished", unfinished, len(outbox))
    wrongly_dead = [
        f"#{i} {kind} errcode {code}: {err}"
        for i, kind, st, code, err in outbox
        if st == OutboxStatus.DEAD and code not in permanent
    ]
    problems += _problems("outbox rows dead on a retryable error", wrongly_dead, len(outbox))
    return problems


def _problems(what: str, cases: list[str], total: int) -> list[str]:
    if not cases:
        return []
    shown = "; ".join(cases[:SHOWN]) + (" …" if len(cases) > SHOWN else "")
    return [f"{what}: {len(cases)} of {total}: {shown}"]


def status_counts(db_url: str) -> dict[str, Counter[str]]:
    """Return the inbox's and the outbox's rows by status (for a failure message)."""
    db = Database(db_url)
    try:
        with db.read() as session:
            return {
                "inbox": Counter(session.scalars(select(InboxEvent.status))),
                "outbox": Counter(session.scalars(select(OutboxOperation.status))),
            }
    finally:
        db.dispose()
