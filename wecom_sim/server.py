"""The Simulator: a fake WeCom over real HTTP, with Python methods to drive and inspect it."""

from __future__ import annotations

import contextlib
import copy
import io
import random
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from wecom_sim import group_chats, jssdk, people
from wecom_sim.api import normalise
from wecom_sim.app import create_app
from wecom_sim.callbacks import CallbackSender, Delivery
from wecom_sim.crypto import CallbackCrypto, random_id
from wecom_sim.events import FieldValue, event_xml
from wecom_sim.group_chats import GroupChange
from wecom_sim.models import ContactWay, Customer, GroupChat, GroupMsg, JoinWay, WelcomeRecord
from wecom_sim.state import CallKey, ErrorRate, Fault, FaultWindow, SimState, Stall

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

IDLE_TIMEOUT = 60.0  # seconds a kept-open API connection may sit idle
GROUPMSG_TASK_DELAY = 2.0  # seconds get_groupmsg_task answers 41063 after add_msg_template


@dataclass(frozen=True)
class ScanResult:
    """What happened when a customer scanned a live code."""

    external_userid: str
    userid: str
    welcome_code: str | None
    callback_status: int | None  # the bot's HTTP status for the (first) delivery
    callback_ms: float | None
    xml: str | None = None  # the add event's plaintext (to deliver later, out of order)


@dataclass(frozen=True)
class GroupEvent:
    """A customer-group action: the group, the members it concerned, its events and posts."""

    chat_id: str
    members: tuple[str, ...]
    xml: tuple[str, ...]  # the events in the order WeCom posts them; () when nothing changed
    deliveries: tuple[Delivery, ...]  # () when not delivered (or no callback_url)


class _KeepAliveHandler(WSGIRequestHandler):
    """Werkzeug's request handler, keeping HTTP/1.1 connections open and not logging requests.

    WeCom's API keeps connections alive and the bot pools them. Werkzeug's development
    server closes every connection and then waits up to 10 ms for stray request bytes, so
    each API call cost the bot a TCP connect and the simulator a thread; under load that
    charged both sides CPU a real WeCom would not. Requests with a Content-Length (all the
    bot sends) are answered here in one write on a kept-open connection; anything else
    goes through werkzeug's own path, which closes the connection as before.
    """

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT  # an idle kept-open connection is closed after this
    server: _Server

    def setup(self) -> None:
        """Register the connection so `stop()` can end it."""
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        """Forget the connection."""
        self.server.track(self.connection, add=False)
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip the per-request access log line."""

    def log_error(self, format: str, *args: Any) -> None:
        """Log errors, except an idle kept-open connection timing out."""
        if not format.startswith("Request timed out"):
            super().log_error(format, *args)

    def run_wsgi(self) -> None:
        """Answer one request; keep the connection open when its framing allows."""
        length = self.headers.get("Content-Length", "0")
        chunked = "Transfer-Encoding" in self.headers
        if chunked or not length.isdigit() or self.server.stopping:
            super().run_wsgi()  # werkzeug's path: answers and closes the connection
            return
        # Read the whole body first, so the next request starts where this one ended even
        # when the app does not read it.
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            self.close_connection = True
            return
        self.environ = environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return chunks.append

        try:
            result = self.server.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:  # as werkzeug does: log it and answer 500
            self.log_error("Error on request:\n%s", traceback.format_exc())
            chunks.clear()
            result = InternalServerError()(environ, start_response)
            chunks.extend(result)
            self.close_connection = True
        status, headers = started
        payload = b"".join(chunks)
        lines = [
            f"{self.protocol_version} {status}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
        ]
        lines += [f"{key}: {value}" for key, value in headers]
        code = int(status.split(None, 1)[0])
        sized = any(key.lower() == "content-length" for key, _ in headers)
        if not sized and code >= 200 and code not in (204, 304):
            lines.append(f"Content-Length: {len(payload)}")
        if self.close_connection or self.server.stopping:
            self.close_connection = True
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # One write, where werkzeug makes two (head, then body): on a kept-open connection
        # the small second segment could wait on Nagle for the peer's delayed ACK.
        self.wfile.write(head if self.command == "HEAD" else head + payload)


class _Server(ThreadedWSGIServer):
    """Werkzeug's threaded server, able to end the kept-open connections when stopping."""

    def __init__(self, host: str, port: int, app: WSGIApplication) -> None:
        super().__init__(host, port, app, handler=_KeepAliveHandler)
        self.stopping = False
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket, *, add: bool) -> None:
        """Add or remove an open connection."""
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def end_connections(self) -> None:
        """Make idle connections see end of input; busy ones close after their answer."""
        self.stopping = True
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RD)


class Simulator:
    """A fake WeCom server API and callback sender for one corp and one self-built app."""

    def __init__(
        self,
        corp_id: str,
        secret: str,
        agent_id: int,
        token: str,
        encoding_aes_key: str,
        callback_url: str | None = None,
        token_ttl: int = 7200,
        rate_limit_per_minute: int = 10000,
        rate_limit_per_hour: int = 150_000,
        welcome_code_ttl: float = 20.0,
        monthly_quota: int | None = None,
        *,
        unionid_bound: bool = True,
        groupmsg_task_delay: float = GROUPMSG_TASK_DELAY,
    ) -> None:
        self.state = SimState(
            corp_id=corp_id,
            secret=secret,
            agent_id=agent_id,
            token_ttl=token_ttl,
            rate_limit_per_minute=rate_limit_per_minute,
            rate_limit_per_hour=rate_limit_per_hour,
            welcome_code_ttl=welcome_code_ttl,
            monthly_quota=monthly_quota,
            unionid_bound=unionid_bound,
            groupmsg_task_delay=groupmsg_task_delay,
        )
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.token = token
        self.encoding_aes_key = encoding_aes_key
        self.crypto = CallbackCrypto(token, encoding_aes_key, corp_id)
        self.sender = CallbackSender(self.crypto, corp_id, agent_id)
        self.callback_url = callback_url
        self._deliveries: list[Delivery] = []
        self.app = create_app(self)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Simulator:
        """Serve HTTP on a daemon thread (port 0 picks a free port) and return self."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server(host, port, self.app)
        self._server = server
        self.state.public_url = self.url
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits one poll; keep test teardown quick
            name=f"wecom-simulator-{server.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for the server thread."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.end_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Simulator:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Return the base URL, like http://127.0.0.1:PORT."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://{self._server.host}:{self._server.port}"

    @property
    def api_base(self) -> str:
        """Return the /cgi-bin/ base URL to configure as wecom.api_base."""
        return self.url + "/cgi-bin/"

    @property
    def web_login_url(self) -> str:
        """Return the web login page to configure as wecom.web_login_url."""
        return self.url + "/wwlogin/sso/login"

    @property
    def oauth_url(self) -> str:
        """Return the OAuth2 authorize page to configure as wecom.oauth_url."""
        return self.url + "/connect/oauth2/authorize"

    # --- settings that tests tune while running ---------------------------------

    @property
    def token_ttl(self) -> int:
        """Seconds an access token lives."""
        return self.state.token_ttl

    @token_ttl.setter
    def token_ttl(self, value: int) -> None:
        with self.state.lock:
            self.state.token_ttl = value

    @property
    def rate_limit_per_minute(self) -> int:
        """Calls per API path per minute before 45009."""
        return self.state.rate_limit_per_minute

    @rate_limit_per_minute.setter
    def rate_limit_per_minute(self, value: int) -> None:
        with self.state.lock:
            self.state.rate_limit_per_minute = value

    @property
    def rate_limit_per_hour(self) -> int:
        """Calls per API path per hour before 45009."""
        return self.state.rate_limit_per_hour

    @rate_limit_per_hour.setter
    def rate_limit_per_hour(self, value: int) -> None:
        with self.state.lock:
            self.state.rate_limit_per_hour = value

    def set_rate_limit(
        self,
        api_path: str | None = None,
        *,
        per_minute: int | None = None,
        per_hour: int | None = None,
    ) -> None:
        """Set the per-API limits for every path, or override them for one path."""
        for value in (per_minute, per_hour):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError("rate limits must be whole numbers >= 0")
        with self.state.lock:
            if api_path is None:
                if per_minute is not None:
                    self.state.rate_limit_per_minute = per_minute
                if per_hour is not None:
                    self.state.rate_limit_per_hour = per_hour
            else:
                self.state.path_limits[normalise(api_path)] = (per_minute, per_hour)

    @property
    def unionid_bound(self) -> bool:
        """Whether the corp bound a WeChat developer account (customers then carry unionid)."""
        return self.state.unionid_bound

    @unionid_bound.setter
    def unionid_bound(self, value: bool) -> None:
        with self.state.lock:
            self.state.unionid_bound = value

    @property
    def groupmsg_task_delay(self) -> float:
        """Seconds after add_msg_template during which get_groupmsg_task answers 41063."""
        return self.state.groupmsg_task_delay

    @groupmsg_task_delay.setter
    def groupmsg_task_delay(self, value: float) -> None:
        with self.state.lock:
            self.state.groupmsg_task_delay = value

    @property
    def welcome_code_ttl(self) -> float:
        """Seconds a welcome code stays usable."""
        return self.state.welcome_code_ttl

    @welcome_code_ttl.setter
    def welcome_code_ttl(self, value: float) -> None:
        with self.state.lock:
            self.state.welcome_code_ttl = value

    def advance_time(self, seconds: float) -> None:
        """Move the simulated clock forward (token and welcome-code expiry, timestamps)."""
        with self.state.lock:
            self.state.skew += seconds

    # --- directory and data ------------------------------------------------------

    def add_staff(self, userid: str, name: str = "", active: bool = True) -> None:
        """Create (or update) a corp member."""
        with self.state.lock:
            self.state.add_staff(userid, name, active)

    def seed(
        self,
        staff: int,
        customers_per_staff: int,
        *,
        tag_groups: dict[str, list[str]] | None = None,
        prefix: str = "seed",
    ) -> None:
        """Bulk-create members `{prefix}_u0000`…, their customers and console tags; no events."""
        with self.state.lock:
            people.seed(self.state, staff, customers_per_staff, tag_groups, prefix)

    def add_relation(
        self,
        userid: str,
        external_userid: str | None = None,
        *,
        name: str | None = None,
        unionid: str | None = None,
        state: str = "",
        tag_ids: list[str] | None = None,
        personal_tags: list[tuple[str, str]] | None = None,
    ) -> str:
        """Make a member and a customer friends silently; return the external_userid.

        `tag_ids` holds corp or rule-group tag ids; `personal_tags` (group, name) pairs of
        the member's own tags (type 2, no id).
        """
        with self.state.lock:
            return people.add_relation(
                self.state,
                userid,
                external_userid,
                name=name,
                unionid=unionid,
                add_state=state,
                tag_ids=tag_ids,
                personal_tags=personal_tags,
            )

    def add_rule_tag(self, group_name: str, tag_name: str) -> str:
        """Create a rule-group (规则组) tag, outside the corp tag library; return its id."""
        with self.state.lock:
            return people.add_rule_tag(self.state, group_name, tag_name)

    # --- people acting in WeCom ---------------------------------------------------

    def login_code(self, userid: str) -> str:
        """Return the code a member's web login scan hands the app ("" for an outsider)."""
        with self.state.lock:
            return self.state.issue_login_code(userid)

    def is_active_member(self, userid: str) -> bool:
        """Tell whether `userid` is an active member of the corp."""
        with self.state.lock:
            member = self.state.staff.get(userid)
            return member is not None and member.active

    @property
    def oauth_member(self) -> str | None:
        """Return who the simulated client signs in by OAuth2 (None: nobody picked).

        Picked by the control API, else the member of the open chat (`open_chat`).
        """
        with self.state.lock:
            if self.state.oauth_member is not None:
                return self.state.oauth_member
            chat = self.state.open_chat
            return chat.userid if chat is not None and chat.userid else None

    def set_oauth_member(self, userid: str | None, *, outsider: bool = False) -> None:
        """Pick the member the simulated WeCom client opens app pages as (None: nobody)."""
        if outsider:
            userid = ""
        elif userid is not None and not self.is_active_member(userid):
            raise LookupError(f"no active member {userid!r}")
        with self.state.lock:
            self.state.oauth_member = userid

    def scan(
        self,
        state: str,
        *,
        external_userid: str | None = None,
        name: str | None = None,
        unionid: str | None = None,
        deliver: bool = True,
        duplicate: bool = False,
        chatted: bool | None = None,
    ) -> ScanResult:
        """A customer scans the live code with this state; post the add event when `deliver`.

        An existing friend's scan adds nobody and posts nothing. A pair that were friends
        before (or `chatted=True`) gets an add event without WelcomeCode.
        """
        with self.state.lock:
            scanned = people.scan(
                self.state,
                state,
                external_userid=external_userid,
                name=name,
                unionid=unionid,
                chatted=chatted,
            )
        status = elapsed = None
        deliveries: list[Delivery] = []
        if deliver and scanned.xml is not None:
            deliveries = self.post_callback(scanned.xml, times=2 if duplicate else 1)
        if deliveries:
            status, elapsed = deliveries[0].status, deliveries[0].elapsed_ms
        return ScanResult(
            scanned.external_userid,
            scanned.userid,
            scanned.welcome_code,
            status,
            elapsed,
            scanned.xml,
        )

    def customer_deletes_staff(self, external_userid: str, userid: str) -> Delivery | None:
        """The customer deletes the member: relation gone, del_follow_user posted."""
        with self.state.lock:
            xml = people.remove_relation(self.state, external_userid, userid, by_customer=True)
        return self._post_one(xml)

    def staff_deletes_customer(self, external_userid: str, userid: str) -> Delivery | None:
        """The member deletes the customer: relation gone, del_external_contact posted."""
        with self.state.lock:
            xml = people.remove_relation(self.state, external_userid, userid, by_customer=False)
        return self._post_one(xml)

    def staff_edit_tags(
        self,
        userid: str,
        external_userid: str,
        add: list[str] | None = None,
        remove: list[str] | None = None,
    ) -> Delivery | None:
        """The member edits the customer's tags in the client; edit_external_contact posted."""
        with self.state.lock:
            xml = people.staff_edit_tags(
                self.state, userid, external_userid, list(add or []), list(remove or [])
            )
        return self._post_one(xml)

    def admin_create_tag(self, group_name: str, tag_name: str) -> str:
        """An admin creates a tag in the console; change_external_tag/create posted."""
        with self.state.lock:
            tag_id, events = people.admin_create_tag(self.state, group_name, tag_name)
        for xml in events:
            self._post_one(xml)
        return tag_id

    def admin_rename_tag(self, tag_id: str, new_name: str) -> None:
        """An admin renames a tag (or group) in the console; change_external_tag/update posted."""
        with self.state.lock:
            xml = people.admin_rename(self.state, tag_id, new_name)
        self._post_one(xml)

    def admin_delete_tag(self, tag_id: str) -> None:
        """An admin deletes a tag in the console; change_external_tag/delete posted."""
        with self.state.lock:
            xml = people.admin_delete_tag(self.state, tag_id)
        self._post_one(xml)

    def admin_delete_group(self, group_id: str) -> None:
        """An admin deletes a tag group in the console; change_external_tag/delete posted."""
        with self.state.lock:
            xml = people.admin_delete_group(self.state, group_id)
        self._post_one(xml)

    def confirm_group_msg(self, msgid: str, userid: str) -> dict[str, int]:
        """The member confirms a 群发 task; return external_userid -> status (1, 2 or 3)."""
        with self.state.lock:
            return people.confirm_group_msg(self.state, msgid, userid)

    def confirm_waiting_group_msgs(self, userid: str | None = None) -> dict[str, dict[str, int]]:
        """Members (or one) confirm every 群发 waiting for them; return msgid -> statuses."""
        confirmed: dict[str, dict[str, int]] = {}
        with self.state.lock:
            for msgid, msg in self.state.group_msgs.items():
                for task in msg.tasks.values():
                    if task.status == 0 and userid in (None, task.userid):
                        statuses = people.confirm_group_msg(self.state, msgid, task.userid)
                        confirmed.setdefault(msgid, {}).update(statuses)
        return confirmed

    # --- customer groups (wecom_sim/group_chats.py) ------------------------------------
    # Each action posts its events unless `deliver=False` (the XML comes back, to post later
    # in any order) and posts each twice with `duplicate=True`, as a WeCom retry does.

    def _group_action(
        self,
        action: Callable[[SimState], GroupChange | tuple[GroupChange, list[str]]],
        *,
        deliver: bool = True,
        duplicate: bool = False,
    ) -> GroupEvent:
        with self.state.lock:
            done = action(self.state)
        change, before = done if isinstance(done, tuple) else (done, [])
        events = (*before, *([change.xml] if change.xml else []))
        posted: list[Delivery] = []
        if deliver:
            for xml in events:
                posted += self.post_callback(xml, times=2 if duplicate else 1)
        return GroupEvent(change.chat_id, change.members, events, tuple(posted))

    def create_group_chat(
        self,
        owner: str,
        name: str,
        members: list[str] | None = None,
        *,
        chat_id: str | None = None,
        notice: str = "",
        deliver: bool = True,
        duplicate: bool = False,
    ) -> GroupEvent:
        """A member creates a customer group with these members; create is posted."""
        return self._group_action(
            lambda s: group_chats.create(
                s, owner, name, list(members or []), chat_id=chat_id, notice=notice
            ),
            deliver=deliver,
            duplicate=duplicate,
        )

    def invite_to_group(
        self,
        chat_id: str,
        members: list[str],
        invitor: str,
        *,
        by_link: bool = False,
        deliver: bool = True,
        duplicate: bool = False,
    ) -> GroupEvent:
        """A member invites people (join_scene 1, or 2 by link); add_member is posted."""
        return self._group_action(
            lambda s: group_chats.invite(s, chat_id, members, invitor, by_link=by_link),
            deliver=deliver,
            duplicate=duplicate,
        )

    def join_group_by_qr(
        self,
        state: str,
        *,
        external_userid: str | None = None,
        name: str | None = None,
        unionid: str | None = None,
        deliver: bool = True,
        duplicate: bool = False,
    ) -> GroupEvent:
        """A customer scans the join way with this state: add_member with JoinScene 3.

        A group the join way opens because the others are full is created (and posted) first.
        """
        return self._group_action(
            lambda s: group_chats.join_by_qr(
                s, state, external_userid=external_userid, name=name, unionid=unionid
            ),
            deliver=deliver,
            duplicate=duplicate,
        )

    def leave_group(
        self,
        chat_id: str,
        member: str,
        *,
        removed: bool = False,
        deliver: bool = True,
        duplicate: bool = False,
    ) -> GroupEvent:
        """A member leaves (QuitScene 0) or is removed (1); del_member is posted."""
        return self._group_action(
            lambda s: group_chats.leave(s, chat_id, member, removed=removed),
            deliver=deliver,
            duplicate=duplicate,
        )

    def rename_group(self, chat_id: str, name: str, **delivery: bool) -> GroupEvent:
        """Rename a group; change_name is posted (`deliver`, `duplicate` as above)."""
        return self._group_action(lambda s: group_chats.rename(s, chat_id, name), **delivery)

    def change_group_notice(self, chat_id: str, notice: str, **delivery: bool) -> GroupEvent:
        """Change a group's notice; change_notice is posted."""
        return self._group_action(
            lambda s: group_chats.change_notice(s, chat_id, notice), **delivery
        )

    def change_group_owner(self, chat_id: str, userid: str, **delivery: bool) -> GroupEvent:
        """Hand a group to another member in it; change_owner is posted."""
        return self._group_action(
            lambda s: group_chats.change_owner(s, chat_id, userid), **delivery
        )

    def dismiss_group(self, chat_id: str, **delivery: bool) -> GroupEvent:
        """The owner dismisses a group; dismiss is posted."""
        return self._group_action(lambda s: group_chats.dismiss(s, chat_id), **delivery)

    @property
    def group_chats(self) -> dict[str, GroupChat]:
        """Return the customer groups by chat_id, dismissed ones included."""
        with self.state.lock:
            return copy.deepcopy(self.state.group_chats)

    @property
    def join_ways(self) -> dict[str, JoinWay]:
        """Return the 加入群聊 join ways by config_id."""
        with self.state.lock:
            return copy.deepcopy(self.state.join_ways)

    # --- callbacks ----------------------------------------------------------------

    def event_xml(
        self,
        event: str,
        change_type: str,
        fields: dict[str, FieldValue | None] | None = None,
        *,
        create_time: int | None = None,
    ) -> str:
        """Return the plaintext XML of any event from this corp."""
        return event_xml(self.corp_id, event, change_type, fields, create_time=create_time)

    def build_callback(self, xml: str) -> tuple[dict[str, str], bytes]:
        """Return (query params, POST body) of the encrypted callback carrying `xml`."""
        return self.sender.build(xml)

    def post_callback(self, xml: str, *, times: int = 1) -> list[Delivery]:
        """POST `xml` to callback_url `times` times (identical requests); [] when no URL."""
        url = self.callback_url
        if not url:
            return []
        deliveries = self.sender.deliver(url, xml, times=times)
        with self.state.lock:
            self._deliveries.extend(deliveries)
        return deliveries

    def _post_one(self, xml: str) -> Delivery | None:
        deliveries = self.post_callback(xml)
        return deliveries[0] if deliveries else None

    def verify_callback_url(self, echo: str | None = None) -> Delivery:
        """Send the URL-verification GET; the bot must answer 200 with the echo's plaintext."""
        if not self.callback_url:
            raise LookupError("no callback_url set")
        return self.sender.verify_url(self.callback_url, echo or random_id("", 19, "0123456789"))

    # --- faults ----------------------------------------------------------------------

    def inject_fault(self, api_path: str, errcode: int = -1, count: int = 1) -> None:
        """Answer the next `count` calls of `api_path` with `errcode`."""
        with self.state.lock:
            self.state.faults.setdefault(normalise(api_path), []).append(Fault(errcode, count))

    def inject_error_rate(
        self, api_path: str, rate: float, errcode: int = -1, *, seed: int = 0
    ) -> None:
        """Answer a share `rate` (0..1) of the calls of `api_path` with `errcode`.

        Drawn from a random.Random(seed), so a run repeats; rate 0 stops it.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        with self.state.lock:
            path = normalise(api_path)
            if rate == 0.0:
                self.state.error_rates.pop(path, None)
            else:
                self.state.error_rates[path] = ErrorRate(errcode, rate, random.Random(seed))

    def inject_fault_window(self, api_path: str, seconds: float, errcode: int = 45009) -> None:
        """Answer every call of `api_path` with `errcode` for the next `seconds`."""
        with self.state.lock:
            self.state.fault_windows[normalise(api_path)] = FaultWindow(
                errcode, self.state.now() + seconds
            )

    def inject_stall(self, api_path: str, seconds: float, count: int = 1) -> None:
        """Sleep `seconds` before answering the next `count` calls of `api_path`."""
        with self.state.lock:
            self.state.stalls.setdefault(normalise(api_path), []).append(Stall(seconds, count))

    def expire_tokens(self) -> None:
        """Make every issued access token answer 42001; gettoken issues a new one."""
        with self.state.lock:
            for token in self.state.tokens:
                self.state.tokens[token] = 0.0
            self.state.current_token = None

    def reset_counters(self) -> None:
        """Forget call counts and rate-limit windows."""
        with self.state.lock:
            self.state.calls.clear()
            self.state.windows.clear()
            self.state.hour_windows.clear()
            self.state.ticket_windows.clear()
            self.state.ticket_fetches.clear()
            self.state.jssdk_calls.clear()

    # --- JS-SDK: tickets and the client around the page (wecom_sim/jssdk.py) --------------

    @property
    def ticket_fetches(self) -> dict[str, int]:
        """Return the JS-SDK tickets handed out so far, by kind (corp, agent)."""
        with self.state.lock:
            return {kind: self.state.ticket_fetches[kind] for kind in ("corp", "agent")}

    def set_ticket_limits(
        self, *, per_hour_corp: int | None = None, per_hour_app: int | None = None
    ) -> None:
        """Change the hourly ticket limits (400 per corp, 100 per app, per kind)."""
        with self.state.lock:
            if per_hour_corp is not None:
                self.state.tickets_per_hour_corp = per_hour_corp
            if per_hour_app is not None:
                self.state.tickets_per_hour_app = per_hour_app

    def expire_js_tickets(self) -> None:
        """Make every JS-SDK ticket handed out so far invalid (signatures over them fail)."""
        with self.state.lock:
            self.state.js_tickets.clear()

    def verify_js_signature(
        self,
        kind: str,
        *,
        url: str,
        timestamp: int | str,
        nonce_str: str,
        signature: str,
        corp_id: str | None = None,
        agent_id: int | str | None = None,
    ) -> bool:
        """Tell whether WeCom would accept this signature for `url` (kind: corp or agent)."""
        signed = {"timestamp": str(timestamp), "nonceStr": nonce_str, "signature": signature}
        with self.state.lock:
            return jssdk.signature_valid(
                self.state,
                kind,
                corp_id=self.corp_id if corp_id is None else corp_id,
                agent_id=str(self.agent_id if agent_id is None else agent_id),
                href=url,
                signed=signed,
            )

    def open_chat(
        self, userid: str, external_userid: str = "", *, entry: str = "single_chat_tools"
    ) -> None:
        """Open the page inside WeCom from `entry` (ww.getContext), with that customer."""
        with self.state.lock:
            jssdk.open_chat(self.state, userid, external_userid, entry)

    def outside_wecom(self) -> None:
        """Open the page in a plain browser: ww.env.isWeCom is false, every ww call fails."""
        with self.state.lock:
            self.state.in_wecom = False
            self.state.open_chat = None

    def jssdk_summary(self) -> dict[str, Any]:
        """Return the stand-in's calls and answers, the open chat and the ticket counts."""
        with self.state.lock:
            chat = self.state.open_chat
            return {
                "in_wecom": self.state.in_wecom,
                "open_chat": None if chat is None else asdict(chat),
                "calls": [dict(c) for c in self.state.jssdk_calls],
                "ticket_fetches": dict(self.state.ticket_fetches),
            }

    # --- introspection ----------------------------------------------------------------

    @property
    def calls(self) -> dict[CallKey, int]:
        """Return call counts keyed by api path and by (api path, errcode)."""
        with self.state.lock:
            return dict(self.state.calls)

    @property
    def welcomes(self) -> list[WelcomeRecord]:
        """Return every welcome code issued, with what was sent for it."""
        with self.state.lock:
            return [
                replace(w, attachments=list(w.attachments)) for w in self.state.welcomes.values()
            ]

    @property
    def app_messages(self) -> list[dict[str, Any]]:
        """Return the message/send payloads accepted, oldest first."""
        with self.state.lock:
            return copy.deepcopy(self.state.app_messages)

    @property
    def app_message_drops(self) -> dict[str, int]:
        """Return, per member, the app messages WeCom would have dropped silently."""
        with self.state.lock:
            return dict(self.state.app_msg_drops)

    @property
    def contact_ways(self) -> dict[str, ContactWay]:
        """Return the live codes by config_id."""
        with self.state.lock:
            return copy.deepcopy(self.state.contact_ways)

    @property
    def group_msgs(self) -> dict[str, GroupMsg]:
        """Return the 群发 tasks by msgid."""
        with self.state.lock:
            return copy.deepcopy(self.state.group_msgs)

    @property
    def deliveries(self) -> list[Delivery]:
        """Return every callback POST made, with the bot's answers."""
        with self.state.lock:
            return list(self._deliveries)

    def relation_tags(self, userid: str, external_userid: str) -> set[str]:
        """Return the tag ids on a relation (empty when there is no relation)."""
        with self.state.lock:
            relation = self.state.relation(userid, external_userid)
            return set(relation.tag_ids) if relation else set()

    def relation_tag_kinds(self, userid: str, external_userid: str) -> dict[str, list[Any]]:
        """Return a relation's tags by kind: corp and rule ids, personal (group, name) pairs."""
        with self.state.lock:
            relation = self.state.relation(userid, external_userid)
            if relation is None:
                return {"corp": [], "personal": [], "rule": []}
            return {
                "corp": list(relation.tag_ids),
                "personal": [list(p) for p in relation.personal_tags],
                "rule": list(relation.rule_tag_ids),
            }

    def tag_catalogue(self) -> dict[str, dict[str, str]]:
        """Return the live tag library as group name -> tag name -> tag id."""
        with self.state.lock:
            return self.state.tag_catalogue()

    def tag_group_id(self, group_name: str) -> str | None:
        """Return the id of the live group with that name."""
        with self.state.lock:
            group = self.state.live_group_by_name(group_name)
            return group.group_id if group else None

    def customer(self, external_userid: str) -> Customer | None:
        """Return a customer's profile."""
        with self.state.lock:
            customer = self.state.customers.get(external_userid)
            return replace(customer) if customer else None

    def followers(self, external_userid: str) -> list[str]:
        """Return the userids of the members who have this customer."""
        with self.state.lock:
            return list(self.state.by_customer.get(external_userid, {}))

    def customers_of(self, userid: str) -> list[str]:
        """Return the external_userids of one member's customers."""
        with self.state.lock:
            return list(self.state.by_user.get(userid, {}))

    def summary(self) -> dict[str, Any]:
        """Return counts of what the simulator holds, for / and the demo."""
        with self.state.lock:
            return {
                "corp_id": self.corp_id,
                "api_base": self.api_base if self._server else None,
                "callback_url": self.callback_url,
                "staff": len(self.state.staff),
                "customers": len(self.state.customers),
                "relations": sum(len(r) for r in self.state.by_user.values()),
                "tags": sum(len(t) for t in self.state.tag_catalogue().values()),
                "contact_ways": len(self.state.contact_ways),
                "welcomes": len(self.state.welcomes),
                "group_msgs": len(self.state.group_msgs),
                "group_chats": sum(not c.dismissed for c in self.state.group_chats.values()),
                "join_ways": len(self.state.join_ways),
                "app_messages": len(self.state.app_messages),
                "app_messages_dropped": sum(self.state.app_msg_drops.values()),
            }
