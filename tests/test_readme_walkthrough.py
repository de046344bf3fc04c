"""The README's "Rehearsing against the simulator" run as an operator types it.

The commands are read from the README's blocks marked `<!-- walkthrough: ... -->` and run
one process each (bash, in a fresh folder holding config.toml and a `.venv` link), with the
README's ports 8900 and 8000 moved to free ones. Commands marked `# keeps running` are
started in the background. config.toml is written from config.example.toml as the README
says: the [wecom] values the simulator prints, an admin token, the example channel deleted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest

from bot.ingest.docs import example_csv
from bot.ingest.rows import EXAMPLES
from tests.support.processes import free_port, wait_healthy
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS_MARK = "<!-- walkthrough: commands"
WECOM_MARK = "<!-- walkthrough: the [wecom] section"
KEEPS_RUNNING = "# keeps running"
# The README's example order keeps its printed day; the rehearsal moves it to a week ago, so
# its customer stays 高价值 (a paid order within 365 days) whatever day the suite runs.
EXAMPLE_DAY = EXAMPLES["orders"][1][4][:10]
RECENT_DAY = (date.today() - timedelta(days=7)).isoformat()

# What each step must print, in the order the steps come: (command pattern, expected texts).
EXPECTED: list[tuple[str, tuple[str, ...]]] = [
    (r"tagbot check-config$", ("配置有效 / config OK", "channels=0")),
    (r"tagbot init-db$", ("数据库已升级 / database upgraded",)),
    (r"tagbot sync$", ("员工 staff:      2",)),
    (r"tagbot staff list$", ("zhangsan\t—\t张三", "lisi\t—\t李四")),
    (
        r"tagbot channel create 公众号文章 ",
        ("渠道已创建 / channel created: 公众号文章", "state=gzh01"),
    ),
    (r"/healthz$", ('"status":"ok"',)),
    (r"/control/scan .*gzh01", ('"callback_status":200', '"userid":"zhangsan"')),
    (r"/control/welcomes$", ("王小明您好，我是张三，有问题随时找我～",)),
    (r"tagbot import orders orders.csv$", ("新增 inserted:   1", "拒绝 rejected:   0")),
    # The running serve re-tiers the customer the import touched once he has been quiet for
    # 5 s: whether this run or that one records his move to 高价值 is a race (the README says
    # so); the next step checks his tier.
    (r"tagbot retier$", ("重新分层完成",)),
    (
        r"tagbot customer show wm_demo_0001$",
        ("王小明", "共 ¥5999.00", "价值分层/高价值", "来源渠道/公众号", "首次渠道/公众号文章"),
    ),
    (r"/control/staff ", ('"ok":true',)),
    (r"tagbot sync$", ("员工 staff:      3（新增 1",)),
    (r"tagbot channel create 小红书 ", ("渠道已创建 / channel created: 小红书",)),
    (r"/control/scan .*xhs01", ('"callback_status":200', '"userid":"wangwu"')),
    (r"tagbot customer show wm_demo_0002$", ("李小红", "渠道: 小红书", "来源渠道/小红书")),
    (r"tagbot outreach run 高价值关怀$", ("触达 1 人：王小明（wm_demo_0001）",)),
    (r"/control/group_msgs$", ('"sender":"zhangsan"', '"external_userid":"wm_demo_0001"')),
    (r"/control/group_msgs/confirm ", ('"wm_demo_0001":1',)),
]
# Steps that only read: retried until they show what they should (the bot works async).
READ_ONLY = re.compile(r"^curl -s http|tagbot customer show|tagbot staff list")


@dataclass
class Step:
    """One command of the walkthrough as bash will run it."""

    text: str
    background: bool = False
    heredoc: list[str] = field(default_factory=list)


def marked_blocks(mark: str, language: str) -> list[str]:
    """Return the fenced blocks of `language` that follow a line starting with `mark`."""
    pattern = re.escape(mark) + r"[^\n]*-->\n```" + language + r"\n(.*?)```"
    return re.findall(pattern, README, flags=re.S)


def steps() -> list[Step]:
    """Split the README's walkthrough blocks into commands (a heredoc stays with its line)."""
    found: list[Step] = []
    for block in marked_blocks(COMMANDS_MARK, "bash"):
        lines = iter(block.splitlines())
        for line in lines:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            step = Step(line, background=KEEPS_RUNNING in line)
            if "<<'EOF'" in line:
                for body in lines:
                    if body == "EOF":
                        break
                    step.heredoc.append(body)
                step.text = "\n".join([line, *step.heredoc, "EOF"])
            found.append(step)
    return found


def command_of(step: Step) -> str:
    """The command without its trailing comment, for matching expectations."""
    return step.text.split("  #", 1)[0].strip()


def test_the_walkthrough_blocks_are_there_and_rehearse_the_real_corp_steps() -> None:
    commands = [command_of(s) for s in steps()]
    assert len(commands) >= 15
    assert sum(s.background for s in steps()) == 2  # the simulator and serve
    assert len(marked_blocks(WECOM_MARK, "toml")) == 1
    corp = README.split("## Connecting a real WeCom corp", 1)[1].split("### Rehearsing", 1)[0]
    (real,) = re.findall(r"```bash\n(.*?)```", corp, flags=re.S)
    for line in real.splitlines():
        command = line.split("  #", 1)[0].strip()
        assert command in commands, f"the rehearsal lacks the real corp's step {command!r}"
    # The file the walkthrough imports is the documented example.
    (heredoc,) = [s.heredoc for s in steps() if s.heredoc]
    assert "\n".join(heredoc) + "\n" == example_csv("orders")


def write_config(folder: Path, wecom_block: str, bot_port: int) -> None:
    """config.example.toml with what the README says to change."""
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    section_end = text.index("\n[database]")
    head, rest = text[:section_end], text[section_end:]
    for line in wecom_block.splitlines()[1:]:
        key = line.split(" = ", 1)[0]
        head, n = re.subn(rf"(?m)^{key} = .*$", lambda _m, line=line: line, head)
        assert n == 1, key
    rest = re.sub(r'(?m)^admin_token = ".*"$', 'admin_token = "k9Qz2Lr8Vw4Xt6Yp3Bn7Mc5"', rest)
    rest = re.sub(r"(?m)^port = 8000$", f"port = {bot_port}", rest)
    start = rest.index("[[channels]]")
    stop = rest.index("\n# ----", start)  # the example channel, with its attachment
    rest = rest[:start] + rest[stop:]
    assert "[[channels]]" not in rest
    (folder / "config.toml").write_text(head + rest, encoding="utf-8")


@pytest.mark.slow
def test_the_readme_walkthrough_runs_against_the_simulator(tmp_path: Path) -> None:
    sim_port, bot_port = free_port(), free_port()

    def ported(text: str) -> str:
        text = text.replace("127.0.0.1:8900", f"127.0.0.1:{sim_port}")
        text = text.replace("--port 8900", f"--port {sim_port}")
        text = text.replace(EXAMPLE_DAY, RECENT_DAY)
        return text.replace("127.0.0.1:8000", f"127.0.0.1:{bot_port}")

    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGBOT_")}
    env["PYTHONUNBUFFERED"] = "1"
    expected = list(EXPECTED)
    background: list[subprocess.Popen[str]] = []
    try:
        for step in steps():
            command = ported(step.text)
            if step.background:
                log = tmp_path / f"background-{len(background)}.log"
                with log.open("w") as output:
                    proc = subprocess.Popen(
                        ["bash", "-c", f"exec {command.split('  #', 1)[0]}"],
                        cwd=tmp_path,
                        env=env,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        text=True,
                        start_new_session=True,
                    )
                background.append(proc)
                if "tagbot simulator" in command:
                    banner = _banner(proc, log)
                    (wecom,) = marked_blocks(WECOM_MARK, "toml")
                    assert ported(wecom.strip()) in banner, banner
                    write_config(tmp_path, ported(wecom.strip()), bot_port)
                else:
                    wait_healthy(bot_port)
                continue
            want: tuple[str, ...] = ()
            if expected and re.search(expected[0][0], command_of(step)):
                want = expected.pop(0)[1]
            out = _run(command, tmp_path, env, want, retry=bool(READ_ONLY.search(command)))
            missing = [w for w in want if w not in out]
            assert not missing, f"{command_of(step)!r} printed no {missing}:\n{out}"
        assert expected == [], f"steps the README no longer has: {expected}"
    finally:
        for proc in reversed(background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()


def _banner(proc: subprocess.Popen[str], log: Path) -> str:
    """Wait for the simulator's banner in its log and return it."""
    wait_for(
        lambda: "Press Ctrl-C" in log.read_text() or proc.poll() is not None,
        timeout=30,
        what="the simulator's banner",
    )
    text = log.read_text()
    assert "Press Ctrl-C" in text, f"the simulator ended before its banner:\n{text}"
    return text


def _run(command: str, cwd: Path, env: dict[str, str], want: tuple[str, ...], retry: bool) -> str:
    """Run one step with bash; it must exit 0 (a read-only step is retried until it shows `want`)."""
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        shows = done.returncode == 0 and all(w in done.stdout for w in want)
        if shows or not retry or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert done.returncode == 0, (
        f"{command!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout
