"""The deployment recipes hold together: docker-compose.yml, the Dockerfile, the systemd units.

No Docker daemon runs here, so the image is not built in the suite; what can be checked
offline is: compose's environment alone makes valid settings, every service runs a real
`tagbot` command, the image installs the lock with hashes as a non-root user and copies
every package pyproject ships, and the units' commands and example environment are real.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings
from tagbot.cli import COMMANDS
from tests.support.configs import FILLED_IN

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = {"init-db", "check-config", "serve", "worker", "scheduler"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")
# What an operator puts in .env beside docker-compose.yml.
DOT_ENV = {
    **FILLED_IN,
    "POSTGRES_PASSWORD": "pg-secret",
    "TAGBOT_WECOM__AGENT_ID": "1000002",
    "TAGBOT_SERVER__PUBLIC_URL": "https://tagbot.brand.cn",
    "TAGBOT_CONSOLE__ADMINS": "zhangsan,lisi",
}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    return data


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Substitute `${X}`, `${X:-default}` and `${X:?message}` as compose does."""

    def one(match: re.Match[str]) -> str:
        name, kind, arg = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise LookupError(f"{name}: {arg}")
        return arg or ""

    return _VARIABLE.sub(one, value)


def test_registered_commands_include_the_ones_the_recipes_run() -> None:
    names = {spec.partition(":")[2] for spec in COMMANDS}
    assert {"init_db", "check_config", "serve", "worker", "scheduler"} <= names


@pytest.mark.parametrize("service", ["migrate", "web", "worker", "scheduler"])
def test_each_compose_service_is_configured_from_the_environment_alone(service: str) -> None:
    spec = _compose()["services"][service]
    env = {k: _interpolate(str(v), DOT_ENV) for k, v in spec["environment"].items()}
    assert env["TAGBOT_CONFIG"] == "env"
    settings = load_settings(env["TAGBOT_CONFIG"], environ=env)
    assert settings.database.url == "postgresql+psycopg://tagbot:pg-secret@postgres:5432/tagbot"
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - the container's own interface
    assert settings.server.public_url == "https://tagbot.brand.cn"
    assert settings.console.admins == ("zhangsan", "lisi")
    assert spec["command"][0] in SUBCOMMANDS
    if service != "migrate":
        assert spec["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}


def test_compose_names_every_required_variable_in_its_header() -> None:
    text = (ROOT / "docker-compose.yml").read_text("utf-8")
    required = {m.group(1) for m in _VARIABLE.finditer(text) if m.group(2) == "?"}
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert len(required) == 8
    assert required - set(re.findall(r"\b([A-Z][A-Z0-9_]+)\b", header)) == set()
    # And a missing one stops compose with its name rather than starting a broken bot.
    spec = _compose()["services"]["web"]
    short = {k: v for k, v in DOT_ENV.items() if k != "TAGBOT_WECOM__SECRET"}
    with pytest.raises(LookupError, match="TAGBOT_WECOM__SECRET"):
        for value in spec["environment"].values():
            _interpolate(str(value), short)


def test_compose_runs_postgres_web_workers_and_one_scheduler() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "migrate", "web", "worker", "scheduler"}
    assert services["web"]["command"] == ["serve", "--no-jobs"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert "deploy" not in services["scheduler"]
    # The image's healthcheck asks /healthz, which only the web serves.
    for name in ("migrate", "worker", "scheduler"):
        assert services[name]["healthcheck"] == {"disable": True}
    assert "healthcheck" not in services["web"]


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text("utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), " ".join(rest.split())))
    return out


def test_dockerfile_installs_the_lock_with_hashes_and_runs_as_a_non_root_user() -> None:
    steps = _dockerfile()
    assert steps[0][0] == "FROM"
    assert "-slim" in steps[0][1]
    runs = [rest for ins, rest in steps if ins == "RUN"]
    assert "python -m pip install --require-hashes -r requirements.lock" in runs
    assert any("pip install --no-deps --no-build-isolation ." in r for r in runs)
    users = [rest for ins, rest in steps if ins == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    # The lock is installed before any source is copied (its layer survives code edits).
    order = [ins + " " + rest for ins, rest in steps]
    lock_step = order.index("RUN python -m pip install --require-hashes -r requirements.lock")
    assert all(not s.startswith("COPY bot") for s in order[:lock_step])
    (health,) = [rest for ins, rest in steps if ins == "HEALTHCHECK"]
    assert "/healthz" in health
    env = " ".join(rest for ins, rest in steps if ins == "ENV")
    assert "TAGBOT_CONFIG=env" in env


def test_dockerfile_copies_every_package_pyproject_ships() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {rest.split()[0] for ins, rest in _dockerfile() if ins == "COPY"}
    assert packages <= copied
    allowed = {
        line.strip().lstrip("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.startswith("!")
    }
    assert copied - {"requirements.lock", "pyproject.toml", "README.md"} <= allowed
    assert {"requirements.lock", "pyproject.toml", "README.md"} <= allowed


def _unit(path: Path) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in path.read_text("utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


@pytest.mark.parametrize(
    ("unit", "command"),
    [
        ("tagbot-web.service", ["serve", "--no-jobs"]),
        ("tagbot-worker@.service", ["worker"]),
        ("tagbot-scheduler.service", ["scheduler"]),
    ],
)
def test_systemd_units_run_tagbot_as_its_own_user_from_the_env_file(
    unit: str, command: list[str]
) -> None:
    keys = _unit(ROOT / "deploy" / "systemd" / unit)
    assert keys["User"] == ["tagbot"]
    assert keys["EnvironmentFile"] == ["/etc/tagbot/tagbot.env"]
    (start,) = keys["ExecStart"]
    assert start.split()[0].endswith("/bin/tagbot")
    assert start.split()[1:] == command
    assert keys["KillSignal"] == ["SIGTERM"]


def test_the_example_env_file_loads_once_its_blanks_are_filled_in() -> None:
    env, blanks = {}, set()
    for line in (ROOT / "deploy" / "tagbot.env.example").read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            if not value:
                blanks.add(name)
            env[name] = value or DOT_ENV[name]
    assert blanks == set(FILLED_IN) | {"TAGBOT_WECOM__AGENT_ID", "TAGBOT_CONSOLE__ADMINS"}
    settings = load_settings(env["TAGBOT_CONFIG"], environ=env)
    assert settings.server.trusted_proxies == ("127.0.0.1/32",)
    assert settings.console.admins == ("zhangsan", "lisi")
