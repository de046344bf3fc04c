"""POST /api/orders|events|profiles and GET /api/customers/<id>, over the Flask client."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bot.customers import contacts
from bot.db.models import InteractionEvent, Order, ProfileAttribute
from bot.runtime import Runtime
from handlers.api import MAX_ROWS
from tests.support.corp import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _rt(app: Flask) -> Runtime:
    rt: Runtime = app.extensions["tagbot"]
    return rt


def _order(order_id: str, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "order_id": order_id,
        "external_userid": "wm_1",
        "amount": "199.90",
        "paid_at": "2026-05-01T10:00:00+08:00",
        "status": "paid",
        "category": "美妆",
        "is_new_product": "否",
    }
    row.update(over)
    return row


def test_orders_good_and_bad_rows(client: FlaskClient, app: Flask) -> None:
    rows = [
        _order("A1"),
        _order("A2", amount="12.345"),  # three decimals
        _order("A3", status="shipped"),
        _order("A4", paid_at="yesterday"),
        _order("", amount="1"),
        _order("A1", amount="1.00"),  # the same id again in one request
        _order("A5", amount=-3),
        _order("A6", external_userid=None, unionid=None),
        _order("A7", amount=88, unionid="un_7", external_userid=None, colour="red"),
        "not an object",
    ]
    resp = client.post("/api/orders", json=rows, headers=AUTH)
    assert resp.status_code == 200
    body = resp.json
    assert body is not None
    assert (body["accepted"], body["inserted"], body["updated"]) == (2, 2, 0)
    rejected = {r["index"]: (r["field"], r["reason"]) for r in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 5, 6, 7, 9]
    assert rejected[1][0] == "amount"
    assert "两位小数" in rejected[1][1]
    assert rejected[2][0] == "status"
    assert "shipped" in rejected[2][1]
    assert rejected[3][0] == "paid_at"
    assert "ISO 8601" in rejected[3][1]
    assert rejected[4] == ("order_id", "缺少必填值")
    assert rejected[5][0] == "order_id"
    assert "序号 0" in rejected[5][1]
    assert rejected[6][0] == "amount"
    assert "负" in rejected[6][1]
    assert rejected[7][0] == "external_userid"
    assert rejected[9] == ("", "应为 JSON 对象")
    assert body["warnings"] == ["未知字段已忽略 / unknown fields ignored: colour"]
    with _rt(app).db.read() as session:
        orders = {o.order_id: o for o in session.scalars(select(Order))}
    assert set(orders) == {"A1", "A7"}
    a1 = orders["A1"]
    assert a1.amount == Decimal("199.90")
    assert a1.paid_at == datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
    assert (a1.status, a1.category, a1.is_new_product) == ("paid", "美妆", False)
    assert orders["A7"].amount == Decimal("88.00")


def test_resending_changes_nothing_and_a_refund_flips_the_status(
    client: FlaskClient, app: Flask
) -> None:
    rows = [_order("B1"), _order("B2", paid_at="2026-05-01 10:00", is_new_product="是")]
    first = client.post("/api/orders", json=rows, headers=AUTH).json
    again = client.post("/api/orders", json=rows, headers=AUTH).json
    assert first is not None
    assert again is not None
    assert (first["inserted"], first["updated"], first["unchanged"]) == (2, 0, 0)
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2)
    refund = client.post("/api/orders", json=[_order("B1", status="refunded")], headers=AUTH).json
    assert refund is not None
    assert (refund["inserted"], refund["updated"], refund["unchanged"]) == (0, 1, 0)
    with _rt(app).db.read() as session:
        orders = {o.order_id: o for o in session.scalars(select(Order))}
    assert len(orders) == 2
    assert orders["B1"].status == "refunded"
    # A naive time means Asia/Shanghai.
    assert orders["B2"].paid_at == datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
    assert orders["B2"].is_new_product is True


def test_customers_matched_by_external_userid_else_unionid(client: FlaskClient, app: Flask) -> None:
    db = _rt(app).db
    with db.write() as session:
        known = contacts.upsert_customer(session=session, external_userid="wm_k", unionid="un_k")
        known_id = known.id
    rows = [
        _order("C1", external_userid="wm_k"),
        _order("C2", external_userid=None, unionid="un_k"),
        _order("C3", external_userid="wm_new", unionid="un_new"),
    ]
    assert client.post("/api/orders", json=rows, headers=AUTH).status_code == 200
    with db.read() as session:
        linked = dict(session.execute(select(Order.order_id, Order.customer_id)).all())
    assert linked == {"C1": known_id, "C2": known_id, "C3": None}
    with db.write() as session:
        new_id = contacts.upsert_customer(session=session, external_userid="wm_new").id
    with db.read() as session:
        assert session.scalar(select(Order.customer_id).where(Order.order_id == "C3")) == new_id


def test_events_and_profiles(client: FlaskClient, app: Flask) -> None:
    events = [
        {"event_id": "E1", "external_userid": "wm_1", "kind": "visit", "occurred_at": "2026-05-02"},
        {"event_id": "E2", "unionid": "un_1", "kind": "coupon_use", "occurred_at": "bad"},
        {"event_id": "E3", "external_userid": "wm_1", "kind": "", "occurred_at": "2026-05-02"},
    ]
    body = client.post("/api/events", json=events, headers=AUTH).json
    assert body is not None
    assert body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "occurred_at"),
        (2, "kind"),
    ]
    profiles = [
        {"external_userid": "wm_1", "region": "华东", "age": 31, "会员等级": "金卡"},
        {"unionid": "un_2", "region": "华南", "occupation": ""},
        {"external_userid": "wm_1", "region": "华北"},  # repeated customer
        {"external_userid": "wm_3"},  # nothing to store
    ]
    body = client.post("/api/profiles", json=profiles, headers=AUTH).json
    assert body is not None
    assert (body["accepted"], body["inserted"]) == (2, 2)
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(2, "external_userid"), (3, "")]
    again = client.post("/api/profiles", json=profiles[:2], headers=AUTH).json
    assert again is not None
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2)
    changed = [{"external_userid": "wm_1", "age": "32"}]
    body = client.post("/api/profiles", json=changed, headers=AUTH).json
    assert body is not None
    assert body["updated"] == 1
    with _rt(app).db.read() as session:
        attrs = {(p.subject, p.name): p.value for p in session.scalars(select(ProfileAttribute))}
        assert session.scalar(select(InteractionEvent.kind)) == "visit"
    assert attrs == {
        ("wm_1", "region"): "华东",
        ("wm_1", "age"): "32",
        ("wm_1", "会员等级"): "金卡",
        ("unionid:un_2", "region"): "华南",
    }


def test_customer_endpoint(client: FlaskClient, app: Flask) -> None:
    with _rt(app).db.write() as session:
        customer = contacts.upsert_customer(
            session=session, external_userid="wm_1", unionid="un_1", name="李四"
        )
        contacts.upsert_relation(
            session=session, staff_userid="zhangsan", customer=customer, state="s1"
        )
    client.post(
        "/api/orders",
        json=[_order("D1"), _order("D2", amount="0.10"), _order("D3", status="refunded")],
        headers=AUTH,
    )
    client.post("/api/profiles", json=[{"unionid": "un_1", "region": "华东"}], headers=AUTH)
    resp = client.get("/api/customers/wm_1", headers=AUTH)
    assert resp.status_code == 200
    card = resp.json
    assert card is not None
    assert card["name"] == "李四"
    assert card["orders"]["paid_count"] == 2
    assert card["orders"]["paid_amount"] == "200.00"
    assert card["orders"]["refunded_count"] == 1
    assert card["attributes"] == {"region": "华东"}
    assert [r["staff_userid"] for r in card["relations"]] == ["zhangsan"]
    assert card["relations"][0]["status"] == "active"
    assert client.get("/api/customers/nobody", headers=AUTH).status_code == 404
    assert client.get("/api/customers/wm_1").status_code == 401


def test_bad_requests_are_4xx(client: FlaskClient) -> None:
    assert client.post("/api/orders", json=[_order("X")]).status_code == 401
    wrong = {"Authorization": "Bearer wrong-token-wrong-token"}
    assert client.post("/api/orders", json=[_order("X")], headers=wrong).status_code == 401
    for body in (b"{", b'{"order_id": "X"}', b"", b"null"):
        resp = client.post("/api/orders", data=body, headers=AUTH)
        assert resp.status_code == 400, body
    too_many = [_order(str(i)) for i in range(MAX_ROWS + 1)]
    assert client.post("/api/orders", json=too_many, headers=AUTH).status_code == 413
    huge = b"[" + b"1," * (17 * 1024 * 1024) + b"1]"
    assert client.post("/api/events", data=huge, headers=AUTH).status_code == 413
    assert client.post("/api/nothing", json=[], headers=AUTH).status_code == 404
    empty = client.post("/api/orders", json=[], headers=AUTH).json
    assert empty is not None
    assert empty["accepted"] == 0


def test_values_of_the_wrong_json_type_are_rejected_not_500(client: FlaskClient) -> None:
    odd: list[Any] = [[], {}, None, True, 1.5, "x" * 100, {"a": 1}, [1, 2]]
    rows = []
    for value in odd:
        for name in (
            "order_id",
            "external_userid",
            "amount",
            "paid_at",
            "status",
            "is_new_product",
        ):
            row = _order(f"W{len(rows)}")
            row[name] = value
            rows.append(row)
    resp = client.post("/api/orders", json=rows, headers=AUTH)
    assert resp.status_code == 200
    body = resp.json
    assert body is not None
    assert body["accepted"] + len(body["rejected"]) == len(rows)
    profiles = [{"external_userid": "wm", "x": v} for v in odd] + [{"unionid": [1]}]
    resp = client.post("/api/profiles", json=profiles, headers=AUTH)
    assert resp.status_code == 200
    events: list[Any] = [{"event_id": v, "kind": v, "occurred_at": v} for v in odd]
    assert client.post("/api/events", json=events, headers=AUTH).status_code == 200


def test_text_no_database_can_store_is_a_row_error_not_500(client: FlaskClient) -> None:
    # Raw JSON: \u0000 is fine in JSON but PostgreSQL text refuses it; a lone surrogate
    # can't be encoded at all; year-1/9999 edges overflow the UTC conversion.
    good = '"external_userid": "wm_nul", "amount": "1", "paid_at": "2026-05-01", "status": "paid"'
    body = (
        "["
        f'{{"order_id": "N\\u0000", {good}}},'
        f'{{"order_id": "N1", "category": "a\\u0000b", {good}}},'
        f'{{"order_id": "N2", "category": "\\ud800", {good}}},'
        f'{{"order_id": "N3", {good.replace("2026-05-01", "0001-01-01T00:00:00+14:00")}}},'
        f'{{"order_id": "N4", {good.replace("2026-05-01", "0001-01-01T00:00:00")}}},'
        f'{{"order_id": "N5", {good}}}'
        "]"
    )
    resp = client.post("/api/orders", data=body, content_type="application/json", headers=AUTH)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    answer = resp.json
    assert answer is not None
    assert answer["inserted"] == 1
    fields = [(r["index"], r["field"]) for r in answer["rejected"]]
    assert fields == [
        (0, "order_id"),
        (1, "category"),
        (2, "category"),
        (3, "paid_at"),
        (4, "paid_at"),
    ]

    profiles = (
        '[{"external_userid": "wm_nul", "city": "x\\u0000"},'
        ' {"external_userid": "wm_nul", "ci\\u0000ty": "x"},'
        ' {"external_userid": "wm_nul", "\\udc80": "x"},'
        ' {"external_userid": "wm_nul", "city": NaN},'
        ' {"external_userid": "wm_nul", "city": Infinity},'
        ' {"external_userid": "wm_nul", "city": "上海"}]'
    )
    resp = client.post(
        "/api/profiles", data=profiles, content_type="application/json", headers=AUTH
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    answer = resp.json
    assert answer is not None
    assert [r["index"] for r in answer["rejected"]] == [0, 1, 2, 3, 4]
    assert answer["accepted"] == 1

    events = '[{"event_id": "E\\u0000", "external_userid": "wm_nul", "kind": "v", "occurred_at": "2026-05-01"}]'
    resp = client.post("/api/events", data=events, content_type="application/json", headers=AUTH)
    assert resp.status_code == 200
    assert resp.json is not None
    assert resp.json["rejected"][0]["field"] == "event_id"


def test_customer_id_with_nul_is_404_not_500(client: FlaskClient) -> None:
    resp = client.get("/api/customers/wm%00x", headers=AUTH)
    assert resp.status_code == 404
