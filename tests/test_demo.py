"""`tagbot demo` plays the whole scenario against the simulator and prints its summary."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests

from tagbot.cli import main
from tests.support.console import csrf_of
from tests.support.waiting import wait_for


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workdir = tmp_path / "demo"
    code = main(["demo", "--workdir", str(workdir), "--customers", "40"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "wecom-tagbot 演示小结" in out
    assert "校验通过" in out
    assert "40 位客户扫码添加员工" in out
    assert "回调全部应答 200：是" in out
    assert "欢迎语已发送 40 条" in out
    assert "拒绝 3" in out  # the three broken rows the demo writes on purpose
    assert "新导入客户 13 位" in out
    assert "第二次：改动 0 处" in out
    assert "按默认分层规则重新分层（13 个维度）" in out
    assert "客户 53 位；本次层级变动" in out
    assert "      首次渠道：" in out
    # The VIP group: customers joined through its group code, one left, the rest are in.
    assert "8 位客户扫群活码加入「VIP会员群」" in out
    assert "已记录入群 8 人（经渠道“VIP会员群”），退群 1 人，仍在群 7 人" in out
    assert "8 位入群客户的跟进关系打上了群活码的标签（入群渠道/VIP会员群）" in out
    assert "  VIP会员群   群活码 入群   8  仍在群   7" in out
    assert "      社群：未入群 46、已入群 7" in out
    # The console's address and both ways in.
    console_line = next(line for line in out.splitlines() if line.startswith("  运营后台 "))
    assert "http://127.0.0.1:" in console_line
    assert "/admin/" in console_line
    assert "企业微信扫码登录" in console_line
    # What the summary claims is what the database holds.
    with sqlite3.connect(workdir / "tagbot.db") as conn:
        customers = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        channels = conn.execute("SELECT count(*) FROM channels").fetchone()[0]
        tagged = conn.execute("SELECT count(DISTINCT relation_id) FROM relation_tags").fetchone()[0]
        by_channel = conn.execute(
            "SELECT count(DISTINCT rt.relation_id) FROM relation_tags rt"
            " JOIN tags t ON t.id = rt.tag_id JOIN tag_groups g ON g.id = t.group_id"
            " WHERE g.name = '来源渠道'"
        ).fetchone()[0]
        active = conn.execute(
            "SELECT count(*) FROM follow_relations WHERE status = 'active'"
        ).fetchone()[0]
        by_lifecycle = conn.execute(
            "SELECT count(DISTINCT rt.relation_id) FROM relation_tags rt"
            " JOIN tags t ON t.id = rt.tag_id JOIN tag_groups g ON g.id = t.group_id"
            " WHERE g.name = '生命周期'"
        ).fetchone()[0]
        lifecycle = conn.execute(
            "SELECT count(*) FROM tier_assignments WHERE dimension = 'lifecycle'"
        ).fetchone()[0]
        group = conn.execute(
            "SELECT gc.name, count(*), count(gm.left_at), count(gm.channel_id),"
            " count(gm.customer_id) FROM group_members gm"
            " JOIN group_chats gc ON gc.id = gm.group_chat_id WHERE gm.member_type = 2"
            " GROUP BY gc.name"
        ).fetchall()
        group_days = conn.execute(
            "SELECT sum(cd.added), sum(cd.lost_by_customer) FROM channel_days cd"
            " JOIN channels c ON c.id = cd.channel_id WHERE c.kind = 'group'"
        ).fetchone()
    assert group == [("VIP会员群", 8, 1, 8, 8)]
    assert group_days == (8, 1)  # the rollup counted the group code's joins and the leave
    # 40 who scanned, plus the 13 the corp had before the bot (imported by the first sync)
    assert (customers, channels) == (40 + 40 // 3, 4)  # three staff codes, one group code
    assert by_channel == 40  # the scanned customers carry their channel's tags
    # The re-tier's push reached WeCom: every active relation carries its lifecycle tag
    # (customers who deleted their member in the demo keep only what they had).
    assert by_lifecycle == active
    assert tagged == customers
    assert "层级标签已推送到企业微信：出站队列剩余 0，失败 0" in out
    assert lifecycle == customers  # every customer has a lifecycle stage (潜在客户 at least)
    assert (workdir / "orders.rejects.csv").exists()
    assert (workdir / "config.toml").exists()
    # One campaign of each kind ran and was sent, and the 群发's results table is printed.
    for title in (
        "触达活动「会员关怀」（群发",
        "触达活动「沉睡唤醒」（回访任务",
        "触达活动「意向转化短信」（Webhook",
    ):
        assert title in out
    assert "签名全部校验通过：是" in out
    assert re.search(r"指标\s+实验组\s+对照组\s+绝对提升 \[95% CI\]\s+相对提升", out), out
    assert "区间：比例差用 Newcombe (Wilson) 法，均值差用 Welch t 法" in out
    with sqlite3.connect(workdir / "tagbot.db") as conn:
        runs = conn.execute(
            "SELECT c.name, r.status, r.treatment, r.holdout FROM campaign_runs r"
            " JOIN campaigns c ON c.id = r.campaign_id ORDER BY r.id"
        ).fetchall()
        statuses = dict(
            conn.execute(
                "SELECT c.action || ':' || d.status, count(*) FROM campaign_deliveries d"
                " JOIN campaigns c ON c.id = d.campaign_id GROUP BY 1"
            ).fetchall()
        )
    assert [(name, status) for name, status, _, _ in runs] == [
        ("会员关怀", "done"),
        ("沉睡唤醒", "done"),
        ("意向转化短信", "done"),
    ]
    treated = {name: t for name, _, t, _ in runs}
    # Staff confirmed every 群发 in the simulator: each treated customer's result is recorded.
    assert statuses.get("group_message:sent", 0) == treated["会员关怀"] > 0
    assert statuses.get("follow_up:notified", 0) == treated["沉睡唤醒"]
    assert statuses.get("webhook:delivered", 0) == treated["意向转化短信"]
    assert sum(h for _, _, _, h in runs) == sum(
        v for k, v in statuses.items() if k.endswith(":holdout")
    )


def test_demo_points_at_a_real_customer_and_welcomes_name_staff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "demo"
    assert main(["demo", "--workdir", str(workdir), "--customers", "20"]) == 0
    out = capsys.readouterr().out
    shown = re.search(r"客户详情 +curl .*/api/customers/(\S+)$", out, re.MULTILINE)
    assert shown is not None, out
    with sqlite3.connect(workdir / "tagbot.db") as conn:
        found = conn.execute(
            "SELECT count(*) FROM customers WHERE external_userid = ?", (shown[1],)
        ).fetchone()[0]
    assert found == 1
    # The sync gets userids only; `{staff}` reads the display names of the demo's [staff].
    example = re.search(r"欢迎语示例：(.*)$", out, re.MULTILINE)
    assert example is not None, out
    assert any(name in example[1] for name in ("张伟", "李娜", "王芳", "刘洋", "陈静")), example[1]


def _console_block(out: str, workdir: Path) -> list[str]:
    """Return the lines the demo ends with, checked against its config: the console's."""
    lines = out.rstrip().splitlines()
    start = lines.index("打开运营后台：")
    block = lines[start:]
    config = tomllib.loads((workdir / "config.toml").read_text("utf-8"))
    server = config["server"]
    base = f"http://{server['host']}:{server['port']}"
    assert f"  登录页     {base}/admin/login" in block
    assert f"  管理令牌   {server['admin_token']}" in block
    assert any(line.startswith(f"  运营后台   {base}/admin/ ") for line in block)
    return block


def test_demo_ends_with_the_console_and_records_its_syncs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "demo"
    assert main(["demo", "--workdir", str(workdir), "--customers", "10"]) == 0
    out = capsys.readouterr().out
    block = _console_block(out, workdir)
    # Without --keep-running the bot stops at once: the last line says so and how to keep it.
    assert "--keep-running" in block[-1]
    assert "停止" in block[-1]
    with sqlite3.connect(workdir / "tagbot.db") as conn:
        runs = conn.execute("SELECT job, trigger, outcome FROM job_runs ORDER BY id").fetchall()
    # The demo's two syncs and its channel rollup, as the console's 系统 page lists them.
    assert runs == [
        ("sync", "manual", "ok"),
        ("sync", "manual", "ok"),
        ("channel-stats", "manual", "ok"),
    ]


@pytest.mark.slow
def test_demo_keep_running_leaves_the_console_up_to_sign_in(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tagbot.cli", "demo", "--workdir", str(workdir)),
                *("--customers", "10", "--keep-running"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: "保持运行中" in log.read_text("utf-8") or proc.poll() is not None,
            timeout=240,
            what="the demo to finish its scenario",
        )
        text = log.read_text("utf-8")
        assert proc.poll() is None, text
        block = _console_block(text, workdir)
        assert "按 Ctrl-C 结束" in block[-1]
        config = tomllib.loads((workdir / "config.toml").read_text("utf-8"))
        base = f"http://{config['server']['host']}:{config['server']['port']}"
        web = requests.Session()
        login = web.get(f"{base}/admin/login", timeout=10)
        signed_in = web.post(
            f"{base}/admin/login",
            data={"token": config["server"]["admin_token"], "csrf_token": csrf_of(login.text)},
            timeout=10,
        )
        assert signed_in.status_code == 200  # followed to the overview
        assert signed_in.url == f"{base}/admin/"
        system = web.get(f"{base}/admin/system", timeout=10).text
        assert system.count('<tr class="sync-run"') == 2
        # The kept-running demo runs the scheduled jobs too.
        assert 'id="scheduler-none"' not in system
        assert re.search(
            r'id="scheduler-owner".*?<code>[^<]+:\d+:[0-9a-f]+:\d+</code>', system, re.S
        )
        # The VIP group shows out of the box: its code's row and a member's groups.
        channels = web.get(f"{base}/admin/channels", timeout=10).text
        assert re.search(r'<span class="chip group"[^>]*>VIP会员群</span>', channels)
        with sqlite3.connect(workdir / "tagbot.db") as conn:
            (member,) = conn.execute(
                "SELECT member_userid FROM group_members"
                " WHERE member_type = 2 AND left_at IS NULL LIMIT 1"
            ).fetchone()
        page = web.get(f"{base}/admin/customers/{member}", timeout=10).text
        shown = re.search(r'<tr data-chat="[^"]+" data-current="true">(.*?)</tr>', page, re.S)
        assert shown is not None, page
        assert "VIP会员群" in shown[1]
        assert "在群中" in shown[1]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
