"""The simulator's world: one lock guards every record, counter and fault."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from wecom_sim.crypto import random_id
from wecom_sim.models import (
    ContactWay,
    Customer,
    GroupChat,
    GroupMsg,
    JoinWay,
    Relation,
    RuleTag,
    Staff,
    Tag,
    TagGroup,
    WelcomeRecord,
)

CallKey = str | tuple[str, int]


class ApiError(Exception):
    """An API call answered with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass
class Fault:
    """An injected answer for the next `remaining` calls of one API path."""

    errcode: int
    remaining: int


@dataclass
class ErrorRate:
    """A share of one API path's calls answered with an errcode, drawn from a seeded RNG."""

    errcode: int
    rate: float
    rng: random.Random


@dataclass
class FaultWindow:
    """Every call of one API path answers `errcode` until `until` (the simulated clock)."""

    errcode: int
    until: float


@dataclass
class Stall:
    """An injected delay for the next `remaining` calls of one API path."""

    seconds: float
    remaining: int


@dataclass
class RateWindow:
    """Calls of one API path in the current window (a minute or an hour)."""

    started: float
    count: int = 0


@dataclass
class LoginCode:
    """A code WeCom's web login or OAuth handed back: single use, valid a few minutes."""

    userid: str  # empty: someone outside the corp scanned (getuserinfo answers an openid)
    openid: str
    expires_at: float


@dataclass(frozen=True)
class JsTicket:
    """A JS-SDK ticket handed out: the corp's (agent_id 0) or an app's, valid until expiry."""

    kind: str  # corp | agent
    agent_id: int
    expires_at: float


@dataclass(frozen=True)
class OpenChat:
    """What the WeCom client has open around the page: the member, the customer, the entry."""

    userid: str
    external_userid: str
    entry: str


LOGIN_CODE_TTL = 300.0  # seconds (wecom-api.md section 7.3)
TICKET_TTL = 7200  # seconds a JS-SDK ticket lives (doc 90506)
# Ticket fetches an hour (doc 90506): 400 per corp, 100 per app, for each kind of ticket.
TICKETS_PER_HOUR_CORP = 400
TICKETS_PER_HOUR_APP = 100
APP_MSGS_PER_MINUTE = 30  # per member, doc 90312; beyond this WeCom drops silently
APP_MSGS_PER_HOUR = 1000
GROUP_CAPACITY = 500  # members a customer group holds before a join way moves on (assumed)


@dataclass
class SimState:
    """Everything the fake WeCom knows; hold `lock` while reading or changing it."""

    corp_id: str
    secret: str
    agent_id: int
    token_ttl: int
    rate_limit_per_minute: int
    rate_limit_per_hour: int
    welcome_code_ttl: float
    monthly_quota: int | None
    # The corp bound a WeChat developer account: only then do customers carry a unionid.
    unionid_bound: bool = True
    # Seconds after add_msg_template during which get_groupmsg_task answers 41063.
    groupmsg_task_delay: float = 0.0
    app_msgs_per_minute: int = APP_MSGS_PER_MINUTE
    app_msgs_per_hour: int = APP_MSGS_PER_HOUR
    lock: threading.RLock = field(default_factory=threading.RLock)
    public_url: str = ""  # the server's base URL, for QR code links
    skew: float = 0.0  # added to the wall clock, so tests can jump ahead
    staff: dict[str, Staff] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    by_user: dict[str, dict[str, Relation]] = field(default_factory=dict)
    by_customer: dict[str, dict[str, Relation]] = field(default_factory=dict)
    groups: dict[str, TagGroup] = field(default_factory=dict)
    tags: dict[str, Tag] = field(default_factory=dict)
    contact_ways: dict[str, ContactWay] = field(default_factory=dict)
    welcomes: dict[str, WelcomeRecord] = field(default_factory=dict)
    group_msgs: dict[str, GroupMsg] = field(default_factory=dict)
    quota_used: Counter[tuple[str, str]] = field(default_factory=Counter)
    app_messages: list[dict[str, object]] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expires at
    current_token: str | None = None
    calls: Counter[CallKey] = field(default_factory=Counter)
    windows: dict[str, RateWindow] = field(default_factory=dict)
    hour_windows: dict[str, RateWindow] = field(default_factory=dict)
    # per-path (per minute, per hour) limits overriding the corp-wide ones
    path_limits: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    app_msg_times: dict[str, list[float]] = field(default_factory=dict)  # member -> sends
    app_msg_drops: Counter[str] = field(default_factory=Counter)  # member -> dropped
    rule_tags: dict[str, RuleTag] = field(default_factory=dict)
    former_pairs: set[tuple[str, str]] = field(default_factory=set)  # (userid, external)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    login_codes: dict[str, LoginCode] = field(default_factory=dict)
    login_code_ttl: float = LOGIN_CODE_TTL
    # Who the simulated WeCom client is signed in as for OAuth2 (None: nobody picked, the
    # authorize page asks; "": someone outside the corp).
    oauth_member: str | None = None
    stalls: dict[str, list[Stall]] = field(default_factory=dict)
    error_rates: dict[str, ErrorRate] = field(default_factory=dict)
    fault_windows: dict[str, FaultWindow] = field(default_factory=dict)
    # JS-SDK: tickets issued (ticket -> what it signs for), fetches per kind, the hourly
    # windows per (kind, scope), and what the client shows around the page.
    ticket_ttl: int = TICKET_TTL
    tickets_per_hour_corp: int = TICKETS_PER_HOUR_CORP
    tickets_per_hour_app: int = TICKETS_PER_HOUR_APP
    js_tickets: dict[str, JsTicket] = field(default_factory=dict)
    ticket_fetches: Counter[str] = field(default_factory=Counter)
    ticket_windows: dict[tuple[str, str], RateWindow] = field(default_factory=dict)
    in_wecom: bool = True  # False: the page is open in a plain browser, every ww call fails
    open_chat: OpenChat | None = None
    jssdk_calls: list[dict[str, str]] = field(default_factory=list)
    # Customer groups (客户群) by chat_id, in creation order, and the 加入群聊 join ways.
    group_chats: dict[str, GroupChat] = field(default_factory=dict)
    join_ways: dict[str, JoinWay] = field(default_factory=dict)
    group_capacity: int = GROUP_CAPACITY

    def now(self) -> float:
        """Return the simulated wall-clock time in seconds."""
        return time.time() + self.skew

    def now_int(self) -> int:
        """Return the simulated time as WeCom's integer timestamps."""
        return int(self.now())

    # --- people and relations -------------------------------------------------

    def add_staff(self, userid: str, name: str = "", active: bool = True) -> Staff:
        """Create or update a member."""
        member = self.staff.get(userid)
        if member is None:
            member = self.staff[userid] = Staff(userid, name or userid, active)
            self.by_user.setdefault(userid, {})
        else:
            member.name = name or member.name
            member.active = active
        return member

    def new_customer(
        self,
        external_userid: str | None = None,
        name: str | None = None,
        unionid: str | None = None,
    ) -> Customer:
        """Return the customer with that id, creating it (with generated ids) when new."""
        if external_userid and external_userid in self.customers:
            return self.customers[external_userid]
        ext = external_userid or random_id("wm", 30)
        customer = Customer(
            external_userid=ext,
            name=name or f"客户{ext[-4:]}",
            unionid=unionid or random_id("o", 27),
        )
        self.customers[ext] = customer
        self.by_customer.setdefault(ext, {})
        return customer

    def relation(self, userid: str, external_userid: str) -> Relation | None:
        """Return the relation between a member and a customer, if any."""
        return self.by_user.get(userid, {}).get(external_userid)

    def add_relation(self, relation: Relation) -> None:
        """Store a relation under both its member and its customer."""
        self.by_user.setdefault(relation.userid, {})[relation.external_userid] = relation
        self.by_customer.setdefault(relation.external_userid, {})[relation.userid] = relation

    def remove_relation(self, userid: str, external_userid: str) -> Relation:
        """Delete a relation; raise KeyError when there is none."""
        relation = self.by_user.get(userid, {}).pop(external_userid)
        self.by_customer[external_userid].pop(userid, None)
        self.former_pairs.add((userid, external_userid))
        return relation

    def issue_login_code(self, userid: str) -> str:
        """Return a fresh login code for a member ("" for someone outside the corp)."""
        code = random_id("", 64)
        openid = "" if userid else random_id("o", 27)
        self.login_codes[code] = LoginCode(userid, openid, self.now() + self.login_code_ttl)
        return code

    # --- corp tags --------------------------------------------------------------

    def live_group_by_name(self, name: str) -> TagGroup | None:
        """Return the undeleted group with that name."""
        return next((g for g in self.groups.values() if g.name == name and not g.deleted), None)

    def create_group(self, name: str, *, by_app: bool, order: int = 0) -> TagGroup:
        """Create an (initially empty) tag group."""
        group = TagGroup(random_id("et", 20), name, self.now_int(), order, by_app)
        self.groups[group.group_id] = group
        return group

    def create_tag(self, group: TagGroup, name: str, *, by_app: bool, order: int = 0) -> Tag:
        """Return the group's live tag of that name, creating it when missing."""
        for tag_id in group.tag_ids:
            tag = self.tags[tag_id]
            if tag.name == name and not tag.deleted:
                return tag  # duplicate names collapse into the existing tag
        tag = Tag(random_id("et", 20), name, group.group_id, self.now_int(), order, by_app)
        self.tags[tag.tag_id] = tag
        group.tag_ids.append(tag.tag_id)
        return tag

    def live_tag(self, tag_id: str) -> Tag | None:
        """Return the tag unless it is unknown or deleted."""
        tag = self.tags.get(tag_id)
        return tag if tag is not None and not tag.deleted else None

    def delete_tag(self, tag_id: str) -> bool:
        """Delete a tag everywhere; return True when its group became empty and was deleted."""
        tag = self.tags[tag_id]
        tag.deleted = True
        for relations in self.by_user.values():
            for relation in relations.values():
                if tag_id in relation.tag_ids:
                    relation.tag_ids.remove(tag_id)
        group = self.groups[tag.group_id]
        if not group.deleted and all(self.tags[t].deleted for t in group.tag_ids):
            group.deleted = True  # WeCom keeps no empty groups
            return True
        return False

    def delete_group(self, group_id: str) -> None:
        """Delete a group and all its tags."""
        group = self.groups[group_id]
        for tag_id in group.tag_ids:
            if not self.tags[tag_id].deleted:
                self.delete_tag(tag_id)
        group.deleted = True

    def tag_catalogue(self) -> dict[str, dict[str, str]]:
        """Return live tags as group name -> tag name -> tag id."""
        return {
            group.name: {self.tags[t].name: t for t in group.tag_ids if not self.tags[t].deleted}
            for group in self.groups.values()
            if not group.deleted
        }

    # --- live codes -------------------------------------------------------------

    def contact_way_by_state(self, state: str) -> ContactWay | None:
        """Return the newest live code with that state."""
        matches = [w for w in self.contact_ways.values() if w.state == state]
        return matches[-1] if matches else None  # dicts keep creation order

    # --- customer groups ---------------------------------------------------------------

    def live_chat(self, chat_id: str) -> GroupChat | None:
        """Return the group unless it is unknown or dismissed."""
        chat = self.group_chats.get(chat_id)
        return chat if chat is not None and not chat.dismissed else None

    def join_way_by_state(self, state: str) -> JoinWay | None:
        """Return the newest join way with that state."""
        matches = [w for w in self.join_ways.values() if w.state == state]
        return matches[-1] if matches else None
