"""The simulator used by hand: /control/ lists its endpoints, --help too, it starts with staff."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from wecom_sim import Simulator
from wecom_sim.command import EXAMPLE_STAFF, simulator_command
from wecom_sim.control_index import ENDPOINTS

ROOT = Path(__file__).resolve().parent.parent


def _control_routes(sim: Simulator) -> set[tuple[str, str]]:
    """(method, path) of every /control route the app registers."""
    routes = set()
    for rule in sim.app.url_map.iter_rules():
        if rule.rule.startswith("/control"):
            path = rule.rule.removeprefix("/control") or "/"
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                routes.add((method, path))
    return routes


def _listed() -> set[tuple[str, str]]:
    return {(m, e.path) for e in ENDPOINTS for m in e.method.split("|")}


def test_the_index_names_exactly_the_routes_and_answers_at_control(simulator: Simulator) -> None:
    assert _control_routes(simulator) == _listed()
    answer = requests.get(simulator.url + "/control/", timeout=5)
    assert answer.status_code == 200
    rows = answer.json()["endpoints"]
    assert [(r["method"], r["path"]) for r in rows] == [
        (e.method, f"/control{e.path}") for e in ENDPOINTS
    ]
    assert all((r.get("example") or r["template"]).startswith("curl -s") for r in rows)
    assert simulator.url in next(r["example"] for r in rows if r["path"] == "/control/staff")


def test_every_example_curl_works_on_a_simulator_with_the_example_staff(
    simulator: Simulator,
) -> None:
    simulator.add_staff("zhangsan", "张三")
    simulator.add_relation("zhangsan", "wm_demo_0001")
    token = requests.get(
        simulator.api_base + "gettoken",
        params={"corpid": simulator.corp_id, "corpsecret": simulator.state.secret},
        timeout=5,
    ).json()["access_token"]
    way = {"type": 1, "scene": 2, "user": ["zhangsan"], "state": "gzh01"}
    created = requests.post(
        simulator.api_base + "externalcontact/add_contact_way",
        params={"access_token": token},
        json=way,
        timeout=5,
    ).json()
    assert created["errcode"] == 0
    rows = requests.get(simulator.url + "/control/", timeout=5).json()["endpoints"]
    examples = [r["example"] for r in rows if "example" in r]
    assert len(examples) >= 10
    for example in examples:
        done = subprocess.run(
            [*shlex.split(example), "-o", "/dev/null", "-w", "%{http_code}"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout == "200", example
    assert "wangwu" in simulator.state.staff
    assert simulator.state.customers["wm_demo_0002"].name == "李小红"


def test_help_lists_every_endpoint_and_says_how_it_starts() -> None:
    result = CliRunner().invoke(simulator_command, ["--help"])
    assert result.exit_code == 0
    for e in ENDPOINTS:
        assert f"{e.method} /control{e.path}" in result.output
    assert "zhangsan" in result.output
    assert "--no-staff" in result.output


def test_it_starts_with_the_staff_config_example_names() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    userids = [entry.split(":")[0] for entry in EXAMPLE_STAFF]
    assert userids == list(example["staff"])
    assert [e.split(":")[1] for e in EXAMPLE_STAFF] == list(example["staff"].values())
    for channel in example["channels"]:
        assert set(channel["staff"]) <= set(userids)


def _banner(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    tagbot = Path(sys.executable).with_name("tagbot")
    proc = subprocess.Popen(
        [str(tagbot), "simulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            break
    return proc, lines


def _stop(proc: subprocess.Popen[str]) -> int:
    """SIGTERM the simulator; return its exit code."""
    proc.terminate()
    proc.communicate(timeout=10)
    return proc.returncode


@pytest.mark.slow
def test_the_banner_names_its_staff_and_the_wecom_section_and_sigterm_stops_it() -> None:
    proc, lines = _banner()
    try:
        url = lines[0].rsplit(" ", 1)[1]
        block = "\n".join(lines[lines.index("[wecom]") : -1])
        wecom = tomllib.loads(block)["wecom"]
        assert wecom["api_base"] == f"{url}/cgi-bin/"
        token = requests.get(
            wecom["api_base"] + "gettoken",
            params={"corpid": wecom["corp_id"], "corpsecret": wecom["secret"]},
            timeout=5,
        ).json()["access_token"]
        follow = requests.get(
            wecom["api_base"] + "externalcontact/get_follow_user_list",
            params={"access_token": token},
            timeout=5,
        ).json()["follow_user"]
        assert follow == ["zhangsan", "lisi"]
        assert "  staff:        zhangsan (张三), lisi (李四)" in lines
    finally:
        assert _stop(proc) == 0

    proc, lines = _banner("--no-staff")
    assert _stop(proc) == 0
    assert "  staff:        (none; POST /control/staff, then tagbot sync)" in lines
