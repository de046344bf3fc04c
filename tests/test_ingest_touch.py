"""Fresh data marks its customers for a re-tier; data sent again unchanged marks nobody."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from bot.customers import contacts
from bot.db.models import Customer, TouchedCustomer
from bot.runtime import Runtime
from tests.support.corp import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _rt(app: Flask) -> Runtime:
    rt: Runtime = app.extensions["tagbot"]
    return rt


def _touched(app: Flask) -> set[str]:
    with _rt(app).db.read() as s:
        return set(s.scalars(select(Customer.external_userid).join(TouchedCustomer)))


def _forget(app: Flask) -> None:
    with _rt(app).db.write() as s:
        s.execute(delete(TouchedCustomer))


def _post(client: FlaskClient, kind: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    resp = client.post(f"/api/{kind}", json=rows, headers=AUTH)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body is not None
    return body


def _order(order_id: str, ext: str, amount: str = "99.00") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "external_userid": ext,
        "amount": amount,
        "paid_at": "2026-05-01T10:00:00+08:00",
        "status": "paid",
    }


def _customers(app: Flask, *exts: str) -> None:
    with _rt(app).db.write() as s:
        for ext in exts:
            contacts.upsert_customer(session=s, external_userid=ext)


def test_orders_sent_again_unchanged_mark_nobody(client: FlaskClient, app: Flask) -> None:
    _customers(app, "wm_a", "wm_b")
    rows = [_order("T1", "wm_a"), _order("T2", "wm_b")]
    assert _post(client, "orders", rows)["inserted"] == 2
    assert _touched(app) == {"wm_a", "wm_b"}
    _forget(app)
    assert _post(client, "orders", rows)["unchanged"] == 2
    assert _touched(app) == set()
    # A refund of one order marks its customer again.
    refund = [{**rows[0], "status": "refunded"}, rows[1]]
    assert _post(client, "orders", refund)["updated"] == 1
    assert "wm_a" in _touched(app)


def test_events_sent_again_unchanged_mark_nobody(client: FlaskClient, app: Flask) -> None:
    _customers(app, "wm_e")
    rows = [
        {"event_id": "E1", "external_userid": "wm_e", "kind": "view", "occurred_at": "2026-05-01"}
    ]
    assert _post(client, "events", rows)["inserted"] == 1
    assert _touched(app) == {"wm_e"}
    _forget(app)
    assert _post(client, "events", rows)["unchanged"] == 1
    assert _touched(app) == set()


def test_profiles_mark_only_the_customers_whose_attributes_changed(
    client: FlaskClient, app: Flask
) -> None:
    _customers(app, "wm_p", "wm_q")
    rows = [
        {"external_userid": "wm_p", "会员等级": "金卡"},
        {"external_userid": "wm_q", "会员等级": "银卡"},
    ]
    assert _post(client, "profiles", rows)["inserted"] == 2
    assert _touched(app) == {"wm_p", "wm_q"}
    _forget(app)
    rows[1]["会员等级"] = "金卡"
    assert _post(client, "profiles", rows)["updated"] == 1
    assert _touched(app) == {"wm_q"}
