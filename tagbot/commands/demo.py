"""`tagbot demo`: the main job end to end, on embedded defaults, against the simulator.

Like `serve`, this is composition-root code: it starts the web app (handlers/) and the
background workers (jobs/) in this process, beside a WeCom simulator on a free port.
"""

from __future__ import annotations

import logging
import random
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import click
from sqlalchemy import func, select

from bot import job_runs, staff_alerts
from bot.callbacks import inbox
from bot.channels import lookup
from bot.config import Settings, load_settings
from bot.db.migrate import upgrade_to_head
from bot.db.models import (
    CampaignDelivery,
    CampaignRun,
    CampaignTask,
    Channel,
    Customer,
    FollowRelation,
    GroupChat,
    GroupMember,
    Order,
    RelationTag,
    Tag,
)
from bot.errors import TagbotError
from bot.ingest.service import import_file
from bot.outreach.report import METHOD, campaign_results
from bot.outreach.results import poll_results
from bot.outreach.service import run_campaign
from bot.reports.channel_stats import rollup
from bot.retier import retier_configured
from bot.runtime import Runtime, configure_logging
from bot.states import AlertStatus
from bot.sync import run_sync
from bot.tags import outbox
from bot.tags.push import drain_all
from tagbot.commands.imports import default_rejects_path, write_rejects
from tagbot.commands.outreach import ACTIONS
from tagbot.commands.outreach_results import render_table
from tagbot.demo import data
from tagbot.demo.receiver import WebhookReceiver
from wecom_sim import Simulator

# Shared by the demo config and its receiver; a demo value, not a credential.
WEBHOOK_SECRET = "demo-webhook-secret-0123456789"  # noqa: S105
# The 群发 campaign runs as of a month ago so its 30-day results can be shown; the month's
# orders after it are simulated (and said to be): order chances without and with it.
REPLAY_DAYS = 31
BASE_RATE, TREATED_RATE = 0.15, 0.30
# The demo's customer group (客户群) and its group live code's state (demo.toml).
VIP_GROUP, VIP_OWNER, VIP_STATE = "VIP会员群", "zhangwei", "vip_group"
GROUP_SHARE = 5  # every fifth new customer scans the VIP group's code


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Step:
    """One line of the summary: what happened, how long, which WeCom calls it cost."""

    title: str
    detail: list[str] = field(default_factory=list)
    seconds: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)


class CallMeter:
    """Count WeCom API calls per step from the simulator's counters."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.last = self._snapshot()

    def _snapshot(self) -> Counter[str]:
        return Counter({k: v for k, v in self.sim.calls.items() if isinstance(k, str)})

    def take(self) -> Counter[str]:
        now = self._snapshot()
        delta = now - self.last
        self.last = now
        return delta


class Demo:
    """The scenario, step by step; each step records its summary line."""

    def __init__(self, workdir: Path, n_customers: int, seed: int) -> None:
        self.workdir = workdir
        self.n_customers = n_customers
        self.rng = random.Random(seed)
        self.steps: list[Step] = []
        self.sim: Simulator | None = None
        self.rt: Runtime | None = None
        self._server: Any = None
        self._background: Any = None
        self.receiver = WebhookReceiver(WEBHOOK_SECRET)
        self.vip_chat_id = ""

    # --- plumbing -------------------------------------------------------------------

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        assert self.sim is not None
        meter = CallMeter(self.sim)
        record = Step(title)
        click.echo(f"▶ {title} …")
        started = time.monotonic()
        yield record
        record.seconds = time.monotonic() - started
        record.calls = meter.take()
        self.steps.append(record)

    def _write_config(self, api_base: str, port: int) -> Path:
        template = resources.files("tagbot.demo").joinpath("demo.toml").read_text("utf-8")
        db_path = (self.workdir / "tagbot.db").resolve()
        text = Template(template).substitute(
            api_base=api_base,
            web_login_url=api_base.removesuffix("cgi-bin/") + "wwlogin/sso/login",
            db_url=f"sqlite:///{db_path}",
            port=port,
            webhook_url=self.receiver.url,
            webhook_secret=WEBHOOK_SECRET,
            vip_chat_id=self.vip_chat_id,
        )
        path = self.workdir / "config.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def start(self) -> Settings:
        """Start the simulator and the bot on free ports, on a fresh SQLite file."""
        if self.workdir.exists():
            for leftover in self.workdir.glob("tagbot.db*"):
                leftover.unlink()
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        # Credentials come from the embedded config so both sides agree.
        probe = Template(
            resources.files("tagbot.demo").joinpath("demo.toml").read_text("utf-8")
        ).substitute(
            api_base="http://127.0.0.1:1/cgi-bin/",
            web_login_url="http://127.0.0.1:1/wwlogin/sso/login",
            db_url="sqlite://",
            port=port,
            webhook_url="http://127.0.0.1:1/",
            webhook_secret=WEBHOOK_SECRET,
            vip_chat_id="wrProbe",
        )
        import tomllib

        w = tomllib.loads(probe)["wecom"]
        self.sim = Simulator(
            corp_id=w["corp_id"],
            secret=w["secret"],
            agent_id=w["agent_id"],
            token=w["token"],
            encoding_aes_key=w["encoding_aes_key"],
        ).start()
        # Staff confirm 群发 tasks at once in the demo: results are there to poll right away.
        self.sim.groupmsg_task_delay = 0.0
        self.receiver.start()
        for userid, name in data.STAFF.items():
            self.sim.add_staff(userid, name)
        # The VIP group the corp runs; its group live code comes from the config.
        self.vip_chat_id = self.sim.create_group_chat(VIP_OWNER, VIP_GROUP, deliver=False).chat_id
        # Customers the corp had before installing the bot; the first sync imports them.
        for i in range(self.n_customers // 3):
            self.sim.add_relation(
                self.rng.choice(list(data.STAFF)),
                name=data.nickname(self.rng),
                unionid=f"oDemoOld{i:06d}",
            )
        settings = load_settings(self._write_config(self.sim.api_base, port))
        configure_logging("WARNING")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log in the summary
        self._start_bot(settings)
        return settings

    def _start_bot(self, settings: Settings) -> None:
        from werkzeug.serving import make_server

        from handlers.app import create_app
        from jobs.background import Background

        app = create_app(settings)
        self.rt = app.extensions["tagbot"]
        assert self.rt is not None
        upgrade_to_head(self.rt.db.engine)
        self._server = make_server(settings.server.host, settings.server.port, app, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._background = Background(self.rt)
        self._background.start_workers()
        assert self.sim is not None
        self.sim.callback_url = (
            f"http://{settings.server.host}:{settings.server.port}/wecom/callback"
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._background is not None:
            self._background.stop()
        if self.rt is not None:
            self.rt.close()
        if self.sim is not None:
            self.sim.stop()
        self.receiver.stop()

    def wait_until(self, what: str, done: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TagbotError(f"demo: timed out waiting for {what}")
            time.sleep(0.05)

    def queues_empty(self) -> bool:
        assert self.rt is not None
        with self.rt.db.read() as session:
            ib = inbox.counts(session=session)
            ob = outbox.counts(session=session)
        return ib.get("pending", 0) + ib.get("processing", 0) == 0 and (
            ob.get("pending", 0) + ob.get("in_flight", 0) == 0
        )

    def alerts_sent(self) -> bool:
        assert self.rt is not None
        with self.rt.db.read() as session:
            left = staff_alerts.counts(session=session)
        return left.get(AlertStatus.PENDING, 0) + left.get(AlertStatus.SENDING, 0) == 0

    # --- the scenario -----------------------------------------------------------------

    def verify_callback(self) -> None:
        assert self.sim is not None
        with self.step("企业微信校验回调 URL") as s:
            delivery = self.sim.verify_callback_url()
            ok = delivery.status == 200
            s.detail.append(
                f"GET /wecom/callback → {delivery.status}，{'校验通过' if ok else '校验失败'}"
            )
            if not ok:
                raise TagbotError("demo: the bot failed WeCom's URL verification")

    def create_channels(self) -> None:
        assert self.rt is not None
        with self.step("按配置创建渠道活码") as s:
            expected = len(self.rt.settings.channels)

            def all_there() -> bool:
                assert self.rt is not None
                with self.rt.db.read() as session:
                    n = session.scalar(select(func.count()).select_from(Channel)) or 0
                return n >= expected

            self.wait_until("channels from config", all_there, timeout=30)
            with self.rt.db.read() as session:
                for ch in lookup.list_all(session=session):
                    tags = "、".join(f"{t.group_name}/{t.tag_name}" for t in ch.tags)
                    s.detail.append(f"{ch.name}  state={ch.state}  标签：{tags}")

    def scans(self) -> list[data.DemoCustomer]:
        assert self.sim is not None
        people = data.customers(self.n_customers, self.rng)
        sim = self.sim
        with self.step(f"{len(people)} 位客户扫码添加员工") as s:
            started = time.monotonic()

            def scan(i_person: tuple[int, data.DemoCustomer]) -> Any:
                i, p = i_person
                # Every tenth callback is delivered twice, as WeCom does when an ack is late.
                return sim.scan(
                    p.state,
                    external_userid=p.external_userid,
                    name=p.name,
                    unionid=p.unionid,
                    duplicate=i % 10 == 0,
                )

            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(scan, enumerate(people)))
            self.wait_until("callbacks processed", self.queues_empty, timeout=120)
            elapsed = time.monotonic() - started
            acks = sorted(r.callback_ms for r in results if r.callback_ms is not None)
            welcomes = [w for w in sim.welcomes if w.sent_at is not None]
            latency = sorted((w.sent_at - w.issued_at) * 1000 for w in welcomes if w.sent_at)
            bad = sum(1 for r in results if r.callback_status != 200)
            s.detail.append(
                f"回调全部应答 200：{'是' if bad == 0 else f'否（{bad} 个失败）'}，其中 {len(people[::10])} 个被重复投递"
            )
            if acks:
                s.detail.append(
                    f"回调应答耗时 p50 {_pct(acks, 50):.1f} ms，p99 {_pct(acks, 99):.1f} ms"
                )
            if latency:
                s.detail.append(
                    f"欢迎语已发送 {len(latency)} 条，扫码→欢迎语 p50 {_pct(latency, 50):.0f} ms，p99 {_pct(latency, 99):.0f} ms（上限 20 秒）"
                )
            texts = [w.text for w in welcomes if w.text]
            if texts:
                s.detail.append(f"欢迎语示例：{texts[-1].splitlines()[0]}")
            s.detail.append(f"处理完 {len(people)} 个扫码共用时 {elapsed:.1f} 秒")
        return people

    def churn(self, people: list[data.DemoCustomer]) -> None:
        assert self.sim is not None
        assert self.rt is not None
        leaving = people[5 :: max(len(people) // 8, 1)][:8]
        with self.step(f"{len(leaving)} 位客户删除了员工（流失）") as s:
            for p in leaving:
                for userid in self.sim.followers(p.external_userid):
                    self.sim.customer_deletes_staff(p.external_userid, userid)
            self.wait_until("loss events processed", self.queues_empty)
            # Alerts gather for a second and go out per member at most every 10 s.
            self.wait_until("loss alerts sent", self.alerts_sent)
            alerts = list(self.sim.app_messages)
            s.detail.append(f"已提醒员工 {len(alerts)} 次，例如：")
            for m in alerts[:2]:
                body = m.get("text", {}).get("content") or m.get("textcard", {}).get(
                    "description", ""
                )
                s.detail.append(f"  → {m.get('touser')}: {str(body).splitlines()[0][:60]}")

    def join_group(self, people: list[data.DemoCustomer]) -> None:
        """Some new customers scan the VIP group's live code and join; one leaves again."""
        assert self.sim is not None
        assert self.rt is not None
        # Customers still following a member: their relations can carry the code's tag.
        joining = [p for p in people[2::GROUP_SHARE] if self.sim.followers(p.external_userid)]
        with self.step(f"{len(joining)} 位客户扫群活码加入「{VIP_GROUP}」") as s:
            for p in joining:
                self.sim.join_group_by_qr(VIP_STATE, external_userid=p.external_userid)
            self.wait_until("group joins processed", self.queues_empty)
            # One leaves after the bot has seen them join (when others stay in).
            for p in joining[-1:] if len(joining) > 1 else []:
                self.sim.leave_group(self.vip_chat_id, p.external_userid)
            self.wait_until("group leaves processed", self.queues_empty)
            with self.rt.db.read() as session:
                stays = session.execute(
                    select(GroupMember.member_userid, GroupMember.left_at, Channel.name)
                    .join(GroupChat, GroupChat.id == GroupMember.group_chat_id)
                    .outerjoin(Channel, Channel.id == GroupMember.channel_id)
                    .where(GroupChat.chat_id == self.vip_chat_id, GroupMember.member_type == 2)
                ).all()
            through = [m for m, _, channel in stays if channel]
            still = [m for m, left, _ in stays if left is None]
            s.detail.append(
                f"已记录入群 {len(through)} 人（经渠道“{stays[0][2] if through else '—'}”），"
                f"退群 {len(stays) - len(still)} 人，仍在群 {len(still)} 人"
            )
            with self.rt.db.read() as session:
                tagged = session.scalar(
                    select(func.count(func.distinct(FollowRelation.customer_id)))
                    .join(RelationTag, RelationTag.relation_id == FollowRelation.id)
                    .join(Tag, Tag.id == RelationTag.tag_id)
                    .where(Tag.name == VIP_GROUP)
                )
            s.detail.append(
                f"{tagged} 位入群客户的跟进关系打上了群活码的标签（入群渠道/{VIP_GROUP}）"
            )

    def import_orders(self, people: list[data.DemoCustomer]) -> None:
        assert self.rt is not None
        path = self.workdir / "orders.csv"
        rows = data.write_orders_csv(path, people, self.rng, datetime.now(UTC))
        with self.step(f"导入订单文件 {path.name}（{rows} 行）") as s:
            result = import_file("orders", path, db=self.rt.db, tz=self.rt.settings.tz)
            if result.rejected:
                write_rejects(result, default_rejects_path(path))
            s.detail.append(
                f"新增 {result.inserted}，更新 {result.updated}，未变 {result.unchanged}，拒绝 {len(result.rejected)}"
            )
            for rejected in result.rejected:
                e = rejected.error
                s.detail.append(f"  拒绝第 {e.index} 行 [{e.field}]：{e.reason}")
            with self.rt.db.read() as session:
                linked = session.scalar(select(func.count(func.distinct(Order.customer_id))))
            s.detail.append(f"订单已关联到 {linked} 位客户（按 external_userid，否则按 unionid）")

    def import_events(self, people: list[data.DemoCustomer]) -> None:
        assert self.rt is not None
        path = self.workdir / "events.csv"
        rows = data.write_events_csv(path, people, self.rng, datetime.now(UTC))
        with self.step(f"导入互动文件 {path.name}（{rows} 行：浏览、点击、加购、咨询）") as s:
            result = import_file("events", path, db=self.rt.db, tz=self.rt.settings.tz)
            s.detail.append(f"新增 {result.inserted}，拒绝 {len(result.rejected)}")

    def retier(self) -> None:
        assert self.rt is not None
        dims = len(self.rt.settings.tiering.dimensions)
        with self.step(f"按默认分层规则重新分层（{dims} 个维度）") as s:
            rt = self.rt
            report, handoff = retier_configured(
                db=rt.db,
                wecom=rt.wecom,
                settings=rt.settings,
                outbox_wakeup=rt.wakeups.outbox,
                alerts_wakeup=rt.wakeups.alerts,
            )
            s.detail.append(
                f"客户 {report.customers} 位；本次层级变动 {report.transitions} 次，"
                f"涉及 {report.changed_customers} 位客户"
            )
            if report.model is not None:
                s.detail.append(f"预测模型：{report.model.summary()}")
            groups = {d.name: d.tag_group for d in self.rt.settings.tiering.dimensions}
            sizes: dict[str, list[str]] = {}
            for m in report.sizes:
                sizes.setdefault(m.dimension, []).append(f"{m.to_tier} {m.customers}")
            for name, group in groups.items():
                s.detail.append(f"  {group}：{'、'.join(sizes.get(name, [])) or '（无人）'}")
            pushed = (
                "企业微信暂不可达，稍后用 tagbot push --tiers 排队"
                if handoff is None or handoff.queued is None
                else f"已排队 {handoff.queued} 个关系"
            )
            s.detail.append(
                f"推送这些层级标签需 {report.relations_to_mark} 次 mark_tag"
                f"（每个变动的跟进关系一次）；{pushed}"
            )
            if handoff is not None and handoff.queued:
                # alongside the outbox workers, until none is left
                drain_all(db=self.rt.db, wecom=self.rt.wecom, stopping=self.rt.stopping)
                with self.rt.db.read() as session:
                    left = outbox.counts(session=session)
                s.detail.append(
                    f"层级标签已推送到企业微信：出站队列剩余 {left.get('pending', 0)}，"
                    f"失败 {left.get('dead', 0)}"
                )

    def outreach(self) -> dict[str, int]:
        """Run every configured campaign once; return each campaign's run id."""
        assert self.rt is not None
        assert self.sim is not None
        rt, sim = self.rt, self.sim
        runs: dict[str, int] = {}
        for campaign in rt.settings.outreach.campaigns:
            replay = campaign.action == "group_message"
            title = (
                f"触达活动「{campaign.name}」（{ACTIONS[campaign.action]}，"
                f"{campaign.dimension}：{'、'.join(campaign.tiers)}）"
                + (f"，按 {REPLAY_DAYS} 天前运行以演示效果" if replay else "")
            )
            as_of = datetime.now(UTC) - timedelta(days=REPLAY_DAYS if replay else 0)
            with self.step(title) as s:
                plan = run_campaign(
                    campaign.name,
                    db=rt.db,
                    wecom=rt.wecom,
                    settings=rt.settings,
                    stopping=rt.stopping,
                    alerts_wakeup=rt.wakeups.alerts,
                    as_of=as_of,
                )
                if plan.run_id is not None:
                    runs[campaign.name] = plan.run_id
                s.detail.append(
                    f"受众 {plan.audience} 人：触达 {len(plan.treatment)}，"
                    f"对照组 {len(plan.holdout)}（只记录、从不触达，用来衡量效果），"
                    f"无有效跟进员工 {len(plan.unreachable)}；运行状态 {plan.status}"
                )
                if plan.run_id is None:
                    continue
                if campaign.action == "group_message":
                    self._confirm_group_messages(plan.run_id, s)
                elif campaign.action == "follow_up":
                    notes = [
                        m
                        for m in sim.app_messages
                        if campaign.text in str(m.get("text", {}).get("content", ""))
                    ]
                    s.detail.append(f"已给 {len(notes)} 位员工发回访提醒，例如：")
                    for m in notes[:1]:
                        body = str(m["text"]["content"]).splitlines()[0]
                        s.detail.append(f"  → {m.get('touser')}: {body[:70]}")
                else:
                    r = self.receiver
                    s.detail.append(
                        f"接收端收到 {len(r.batches)} 批、{r.customers()} 位客户，"
                        f"签名全部校验通过：{'是' if r.bad_signatures == 0 else '否'}"
                    )
                s.detail.append(self._delivery_line(plan.run_id))
        return runs

    def _confirm_group_messages(self, run_id: int, s: Step) -> None:
        """Staff confirm their 群发 tasks in WeCom; the bot polls the send results."""
        assert self.rt is not None
        assert self.sim is not None
        with self.rt.db.read() as session:
            tasks = [
                (t.msgid, t.sender, t.customers)
                for t in session.scalars(
                    select(CampaignTask)
                    .where(CampaignTask.run_id == run_id, CampaignTask.msgid.is_not(None))
                    .order_by(CampaignTask.id)
                )
            ]
        s.detail.append(
            f"已创建 {len(tasks)} 个群发任务（每位员工一个，共 {sum(t[2] for t in tasks)} 位客户），"
            "并提醒员工去确认"
        )
        for msgid, sender, _ in tasks:
            if msgid:
                self.sim.confirm_group_msg(msgid, sender)
        # As the results worker would after its next 30-minute poll.
        polled = poll_results(
            db=self.rt.db, wecom=self.rt.wecom, now=datetime.now(UTC) + timedelta(hours=1)
        )
        s.detail.append(f"员工确认后拉取发送结果：企业微信调用 {polled.calls} 次")

    def _delivery_line(self, run_id: int) -> str:
        assert self.rt is not None
        with self.rt.db.read() as session:
            counts = Counter(
                dict(
                    session.execute(
                        select(CampaignDelivery.status, func.count())
                        .where(CampaignDelivery.run_id == run_id)
                        .group_by(CampaignDelivery.status)
                    ).all()
                )
            )
        names = {
            "sent": "已送达",
            "created": "待员工确认",
            "unconfirmed": "员工未确认",
            "not_friend": "已不是好友",
            "over_quota": "超出每日群发上限",
            "notified": "已提醒员工",
            "delivered": "已推送",
            "failed": "失败",
            "holdout": "对照组",
            "queued": "排队中",
        }
        return "逐客户记录：" + "，".join(
            f"{names.get(k, k)} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
        )

    def results(self, runs: dict[str, int]) -> None:
        """Report each campaign; the replayed 群发 with a simulated month of orders after it."""
        assert self.rt is not None
        rt = self.rt
        with self.step("效果衡量：实验组 vs 对照组（95% 置信区间）") as s:
            target = next(
                (c.name for c in rt.settings.outreach.campaigns if c.action == "group_message"),
                None,
            )
            for name in runs:
                if name != target:
                    s.detail.append(
                        f"「{name}」刚运行：7/14/30 天观察期未满，之后用 tagbot outreach results {name} 查看"
                    )
            if target is None or target not in runs:
                return
            orders = self._simulate_month(runs[target])
            s.detail.append(
                f"「{target}」运行后 30 天的订单为模拟数据（{orders} 单，经真实导入路径写入；"
                f"对照组下单概率 {BASE_RATE:.0%}，实验组 {TREATED_RATE:.0%}）："
            )
            with rt.db.read() as session:
                results = campaign_results(target, session=session)
            overall = results.segments[0]
            s.detail.extend(render_table(overall.itt))
            if overall.warning:
                s.detail.append(f"⚠ {overall.warning}")
            s.detail.append(METHOD)
            s.detail.append(f"按层级分组、已触达客户的对比：tagbot outreach results {target}")

    def _simulate_month(self, run_id: int) -> int:
        """Import the month of orders after a run (a known effect); return how many."""
        assert self.rt is not None
        with self.rt.db.read() as session:
            run = session.get(CampaignRun, run_id)
            assert run is not None
            as_of = run.as_of
            rows = session.execute(
                select(Customer.external_userid, CampaignDelivery.arm)
                .join(Customer, Customer.id == CampaignDelivery.customer_id)
                .where(CampaignDelivery.run_id == run_id)
                .order_by(CampaignDelivery.id)
            ).all()
        path = self.workdir / "orders_after_campaign.csv"
        data.write_followup_orders_csv(
            path,
            [(str(ext), arm == "treatment") for ext, arm in rows],
            self.rng,
            start=as_of,
            rates=(BASE_RATE, TREATED_RATE),
        )
        result = import_file("orders", path, db=self.rt.db, tz=self.rt.settings.tz)
        return result.inserted

    def sync(self) -> None:
        assert self.rt is not None
        with self.step("与企业微信全量对账（成员、标签库、客户关系），连续两次") as s:
            rt = self.rt
            # Recorded as `tagbot sync` records them: the console's 系统 page lists them.
            first = job_runs.run_recorded(
                rt.db, "sync", job_runs.MANUAL, lambda: run_sync(db=rt.db, wecom=rt.wecom)
            )
            s.detail.append(
                f"第一次：员工 {first.staff} 名，标签 {first.tags} 个，跟进关系 {first.relations} 条"
                f"（新导入客户 {first.customers_added} 位，即接入前已有的老客户），"
                f"企业微信调用 {first.total_calls} 次"
            )
            second = job_runs.run_recorded(
                rt.db, "sync", job_runs.MANUAL, lambda: run_sync(db=rt.db, wecom=rt.wecom)
            )
            s.detail.append(
                f"第二次：改动 {second.changed} 处（幂等），企业微信调用 {second.total_calls} 次"
            )

    def summary(self) -> None:
        assert self.rt is not None
        assert self.sim is not None
        with self.rt.db.read() as session:
            customers = session.scalar(select(func.count()).select_from(Customer)) or 0
            active = (
                session.scalar(
                    select(func.count())
                    .select_from(FollowRelation)
                    .where(FollowRelation.status == "active")
                )
                or 0
            )
            lost = (
                session.scalar(
                    select(func.count())
                    .select_from(FollowRelation)
                    .where(FollowRelation.status == "lost")
                )
                or 0
            )
            tagged = session.scalar(select(func.count(func.distinct(RelationTag.relation_id)))) or 0
            # A customer from this run with a tagged, active relation: a card worth opening.
            sample = session.scalar(
                select(Customer.external_userid)
                .join(FollowRelation, FollowRelation.customer_id == Customer.id)
                .join(RelationTag, RelationTag.relation_id == FollowRelation.id)
                .where(FollowRelation.status == "active")
                .order_by(Customer.id)
                .limit(1)
            )
            views = [
                lookup.view(ch, session=session, tz=self.rt.settings.tz)
                for ch in lookup.list_all(session=session)
            ]
            # A group code's funnel: members who joined through it, and those still in.
            group_counts = {
                str(name): (int(joined), int(still))
                for name, joined, still in session.execute(
                    select(
                        Channel.name,
                        func.count(func.distinct(GroupMember.member_userid)),
                        func.count(func.distinct(GroupMember.member_userid)).filter(
                            GroupMember.left_at.is_(None)
                        ),
                    )
                    .join(GroupMember, GroupMember.channel_id == Channel.id)
                    .group_by(Channel.name)
                )
            }
        total_calls: Counter[str] = Counter()
        click.echo("")
        click.echo("═" * 72)
        click.echo("wecom-tagbot 演示小结")
        click.echo("═" * 72)
        for st in self.steps:
            total_calls += st.calls
            n = sum(st.calls.values())
            click.echo(f"■ {st.title}（{st.seconds:.1f} 秒，企业微信接口调用 {n} 次）")
            for line in st.detail:
                click.echo(f"    {line}")
            if st.calls:
                click.echo(
                    "    接口：" + "，".join(f"{k} ×{v}" for k, v in sorted(st.calls.items()))
                )
        click.echo("")
        click.echo("渠道漏斗：")
        for v in views:
            if v.kind == "group":
                joined, still = group_counts.get(v.name, (0, 0))
                click.echo(f"  {v.name:<8} 群活码 入群 {joined:>3}  仍在群 {still:>3}")
                continue
            click.echo(f"  {v.name:<8} 扫码 {v.scans:>4}  添加 {v.adds:>4}  流失 {v.lost:>3}")
        click.echo(f"客户 {customers} 位；有效关系 {active}，流失 {lost}；已打标签的关系 {tagged}")
        click.echo(f"企业微信接口调用合计 {sum(total_calls.values())} 次（模拟器计数）")
        click.echo("")
        click.echo("去哪里看：")
        s = self.rt.settings
        base = f"http://{s.server.host}:{s.server.port}"
        click.echo(f"  健康检查   {base}/healthz")
        click.echo(f"  指标       {base}/metrics")
        if sample:
            click.echo(
                f"  客户详情   curl -H 'Authorization: Bearer {s.server.admin_token.get_secret_value()}' {base}/api/customers/{sample}"
            )
            click.echo(
                f"             或 tagbot --config {(self.workdir / 'config.toml').resolve()} customer show {sample}"
            )
        click.echo(f"  模拟器     {self.sim.url}/  （/control/welcomes、/control/app_messages）")
        click.echo(
            f"  配置与数据 {self.workdir.resolve()}（config.toml、tagbot.db、orders.rejects.csv）"
        )

    def console_lines(self, *, keep_running: bool) -> None:
        """End with the console: its address, how to sign in, and whether it is still up."""
        assert self.rt is not None
        s = self.rt.settings
        base = f"http://{s.server.host}:{s.server.port}"
        token = s.server.admin_token.get_secret_value()
        click.echo("")
        click.echo("打开运营后台：")
        click.echo(
            f"  运营后台   {base}/admin/  （输入管理令牌 {token} 登录；"
            "或点「企业微信扫码登录」，在模拟器页面选 张伟（管理员）或 李娜（只读））"
        )
        click.echo(f"  登录页     {base}/admin/login")
        click.echo(f"  管理令牌   {token}")
        click.echo(
            f"  系统页     {base}/admin/system （同步记录、回调与写入死信、定时任务、配置检查）"
        )
        if keep_running:
            click.echo("机器人与模拟器保持运行中（含定时任务），按 Ctrl-C 结束。")
        else:
            click.echo(
                "演示结束后机器人随即停止，上面的地址将无法打开："
                "加 --keep-running 重新运行，演示结束后保持运行，即可在浏览器里登录后台。"
            )

    def rollup(self) -> None:
        """Count the day's adds and losses now, as the scheduler would every 10 minutes."""
        assert self.rt is not None
        rt = self.rt
        job_runs.run_recorded(
            rt.db, "channel-stats", job_runs.MANUAL, lambda: rollup(rt.db, tz=rt.settings.tz)
        )

    def start_scheduler(self) -> None:
        """Run the scheduled jobs too, so a console kept running stays current."""
        assert self._background is not None
        self._background.start_scheduler()


def _pct(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


@click.command()
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-work"),
    show_default=True,
    help="Where the demo keeps its config, SQLite file and generated files.",
)
@click.option(
    "--customers",
    "n_customers",
    type=click.IntRange(10, 20000),
    default=300,
    show_default=True,
    help="How many new customers scan the channels' live codes.",
)
@click.option(
    "--seed", type=int, default=7, show_default=True, help="Random seed for the generated data."
)
@click.option(
    "--keep-running", is_flag=True, help="Leave the bot and the simulator up until Ctrl-C."
)
def demo(workdir: Path, n_customers: int, seed: int, keep_running: bool) -> None:
    """Play scans, welcomes, tags, order and event imports, a sync and a re-tier against the simulator."""
    scenario = Demo(workdir, n_customers, seed)
    try:
        settings = scenario.start()
        click.echo(
            f"模拟器 {scenario.sim.url if scenario.sim else ''}，机器人 http://{settings.server.host}:{settings.server.port}"
        )
        scenario.verify_callback()
        scenario.create_channels()
        people = scenario.scans()
        scenario.churn(people)
        scenario.join_group(people)
        scenario.import_orders(people)
        scenario.import_events(people)
        scenario.sync()
        scenario.retier()
        runs = scenario.outreach()
        scenario.results(runs)
        scenario.rollup()
        scenario.summary()
        if keep_running:
            scenario.start_scheduler()
        scenario.console_lines(keep_running=keep_running)
        if keep_running:
            threading.Event().wait()
    finally:
        scenario.stop()
