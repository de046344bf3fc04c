"""Two corps on one PostgreSQL server: one deployment per corp, each in its own schema.

The choice (README, "Several corps"): a corp is a deployment — its own config, processes and
schema (or database); nothing in a schema names the corp, so nothing can leak across. These
tests run two such deployments side by side against two simulated corps and check that
neither sees the other's customers, tags, WeCom budget, access token or wake-ups.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select, text

from bot.callbacks import inbox
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.db.models import Customer, FollowRelation, Tag, WeComBudgetSlot, WeComToken
from bot.runtime import Runtime
from bot.wecom.events import parse_event
from jobs import inbox_listener
from tests.support.channels import welcome_channel
from tests.support.configs import toml_text
from tests.support.corp import ADMIN_TOKEN, PG_URL
from tests.support.processes import free_port, serve, wait_healthy
from tests.support.waiting import wait_for
from wecom_sim import Simulator

# Two corps with nothing in common: ids, app secrets, callback tokens and keys all differ.
CORPS = {
    "a": {
        "corp_id": "wwcorpalpha00001",
        "secret": "secret-of-corp-alpha-app",
        "agent_id": 1000011,
        "token": "alphaCallbackToken",
        "encoding_aes_key": "A" * 20 + "lphaKeyForCorpAlpha0000",
    },
    "b": {
        "corp_id": "wwcorpbeta000002",
        "secret": "secret-of-corp-beta-app",
        "agent_id": 1000022,
        "token": "betaCallbackToken",
        "encoding_aes_key": "B" * 20 + "etaKeyForCorpBeta000000",
    },
}


@dataclass
class Corp:
    """One corp's deployment: its simulator, schema URL and config."""

    sim: Simulator
    url: str
    cfg: dict[str, Any]


def _pg_admin() -> Database:
    db = Database(PG_URL)
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect: skip, saying why
        db.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    return db


@pytest.fixture
def corps() -> Iterator[dict[str, Corp]]:
    """Two corps, each a simulator and a migrated schema of the same database."""
    admin = _pg_admin()
    made: dict[str, Corp] = {}
    schemas = []
    try:
        for name, creds in CORPS.items():
            schema = f"tagbot_corp_{name}_{uuid.uuid4().hex[:8]}"
            schemas.append(schema)
            with admin.engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
            db = Database(url)
            upgrade_to_head(db.engine)
            db.dispose()
            sim = Simulator(**creds).start()  # type: ignore[arg-type]
            sim.add_staff("alice")
            cfg = {
                "wecom": {**creds, "api_base": sim.api_base, "timeout_seconds": 2.0},
                "database": {"url": url},
                "server": {"host": "127.0.0.1", "port": free_port(), "admin_token": ADMIN_TOKEN},
                "app": {"log_level": "WARNING"},
            }
            made[name] = Corp(sim, url, cfg)
        yield made
    finally:
        for corp in made.values():
            corp.sim.stop()
        with admin.engine.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _read(url: str, stmt: Any) -> list[Any]:
    db = Database(url)
    try:
        with db.read() as session:
            return list(session.execute(stmt).all())
    finally:
        db.dispose()


def _tag_ids(sim: Simulator) -> set[str]:
    return {tag for group in sim.tag_catalogue().values() for tag in group.values()}


def _tokens(sim: Simulator) -> set[str]:
    """Every access token this corp's WeCom has issued."""
    with sim.state.lock:
        return set(sim.state.tokens)


@pytest.mark.slow  # real `tagbot serve` processes
def test_two_corps_served_side_by_side_see_only_their_own(
    tmp_path: Path, corps: dict[str, Corp]
) -> None:
    procs = []
    scanned: dict[str, set[str]] = {}
    try:
        for name, corp in corps.items():
            rt = Runtime(settings_from_mapping(corp.cfg, environ={}))
            state = welcome_channel(rt)  # the channel 活动, tag 来源/活动, in this corp's WeCom
            rt.close()
            config = tmp_path / f"{name}.toml"
            config.write_text(toml_text(corp.cfg), encoding="utf-8")
            procs.append(serve(config, log=tmp_path / f"{name}.log"))
            port = corp.cfg["server"]["port"]
            wait_healthy(port)
            corp.sim.callback_url = f"http://127.0.0.1:{port}/wecom/callback"
            n = 3 if name == "a" else 2
            scanned[name] = {corp.sim.scan(state).external_userid for _ in range(n)}

        for name, corp in corps.items():
            wait_for(
                lambda corp=corp, name=name: all(
                    corp.sim.relation_tags("alice", ext) for ext in scanned[name]
                ),
                timeout=60,
                what=f"corp {name}'s scans tagged",
            )

        for name, corp in corps.items():
            other = "b" if name == "a" else "a"
            # Customers and relations: exactly this corp's scans.
            customers = {r[0] for r in _read(corp.url, select(Customer.external_userid))}
            assert customers == scanned[name]
            relations = {
                r[0] for r in _read(corp.url, select(Customer.external_userid).join(FollowRelation))
            }
            assert relations == scanned[name]
            # Tags: the ids this corp's WeCom issued, none of the other's.
            tag_ids = {r[0] for r in _read(corp.url, select(Tag.wecom_tag_id))}
            assert tag_ids
            assert tag_ids <= _tag_ids(corp.sim)
            assert not tag_ids & _tag_ids(corps[other].sim)
            # WeCom's budget and the access token: booked and cached under this corp only.
            budget_corps = {r[0] for r in _read(corp.url, select(WeComBudgetSlot.corp_id))}
            assert budget_corps == {CORPS[name]["corp_id"]}
            tokens = [r[0] for r in _read(corp.url, select(WeComToken.access_token))]
            assert len(tokens) == 1
            assert tokens[0] in _tokens(corp.sim)
            assert tokens[0] not in _tokens(corps[other].sim)
            # Each corp's WeCom saw only its own customers: one welcome and one mark_tag per scan.
            assert corp.sim.calls.get("externalcontact/send_welcome_msg") == len(scanned[name])
            assert corp.sim.calls.get("externalcontact/mark_tag") == len(scanned[name])
            # The HTTP API answers for its own corp only.
            port = corp.cfg["server"]["port"]
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            own = next(iter(scanned[name]))
            foreign = next(iter(scanned[other]))
            base = f"http://127.0.0.1:{port}/api/customers/"
            assert requests.get(base + own, headers=headers, timeout=10).status_code == 200
            assert requests.get(base + foreign, headers=headers, timeout=10).status_code == 404
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)


def test_a_new_event_in_one_schema_wakes_no_listener_of_another(
    corps: dict[str, Corp],
) -> None:
    """NOTIFY reaches every listener of the database; the payload names the schema."""
    runtimes = {n: Runtime(settings_from_mapping(c.cfg, environ={})) for n, c in corps.items()}
    try:
        assert inbox_listener._step(runtimes["b"]) == 0  # listening from now on

        def store(name: str, n: int) -> None:
            xml = corps[name].sim.event_xml(
                "change_external_contact",
                "add_external_contact",
                {"UserID": "alice", "ExternalUserID": f"wmWake{name}{n}", "State": "s"},
            )
            with runtimes[name].db.write_driver() as txn:
                assert inbox.store(parse_event(xml), "x", txn=txn) is not None

        store("a", 1)
        assert inbox_listener._step(runtimes["b"]) == 0  # corp a's event: not b's business
        store("b", 1)
        assert inbox_listener._step(runtimes["b"]) == 1  # its own: woken
    finally:
        for rt in runtimes.values():
            rt.stopping.set()
            inbox_listener._step(rt)  # closes the listening connection on the way out
            rt.close()
