"""Which amounts and order times a shop export may contain, through POST /api/orders."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bot.db.models import Order
from bot.runtime import Runtime
from tests.support.corp import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _post(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    row = {
        "order_id": "N1",
        "external_userid": "wm_1",
        "amount": "1.00",
        "paid_at": "2026-05-01T10:00:00+08:00",
        "status": "paid",
    }
    row.update(fields)
    resp = client.post("/api/orders", json=[row], headers=AUTH)
    assert resp.status_code == 200
    assert resp.json is not None
    body: dict[str, Any] = resp.json
    return body


def _stored_amount(app: Flask) -> Decimal | None:
    rt: Runtime = app.extensions["tagbot"]
    with rt.db.read() as session:
        return session.scalar(select(Order.amount))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000", "1000.00"), ("1,000", "1000.00"), ("1,234,567.5", "1234567.50"), (" 12.3 ", "12.30")],
)
def test_plain_and_excel_grouped_amounts_are_accepted(
    client: FlaskClient, app: Flask, text: str, expected: str
) -> None:
    body = _post(client, amount=text)
    assert body["rejected"] == []
    assert _stored_amount(app) == Decimal(expected)


@pytest.mark.parametrize(
    "text", ["1_000", "１００", "1e3", "+5", ".5", "5.", "¥100", "1,00", "10,0000", "1 000", "٣"]
)
def test_other_spellings_of_numbers_are_refused(client: FlaskClient, app: Flask, text: str) -> None:
    body = _post(client, amount=text)
    assert [(r["field"], r["reason"][:6]) for r in body["rejected"]] == [("amount", "金额格式错误")]
    assert _stored_amount(app) is None


def test_a_negative_amount_keeps_its_own_reason(client: FlaskClient) -> None:
    body = _post(client, amount="-1,000.00")
    assert "负" in body["rejected"][0]["reason"]


@pytest.mark.parametrize(
    "paid_at",
    [
        "0001-01-01T00:00:00",
        "0001-01-01T00:00:00+00:00",
        "1999-12-31T23:59:59+00:00",
        "9999-12-31T23:59:59",
        "2999-01-01T00:00:00+08:00",
    ],
)
def test_order_times_outside_2000_to_tomorrow_are_refused(
    client: FlaskClient, app: Flask, paid_at: str
) -> None:
    body = _post(client, paid_at=paid_at)
    assert [r["field"] for r in body["rejected"]] == ["paid_at"]
    assert "超出范围" in body["rejected"][0]["reason"]
    assert _stored_amount(app) is None


def test_order_times_at_the_edges_are_accepted(client: FlaskClient) -> None:
    assert _post(client, paid_at="2000-01-01T00:00:00+00:00")["rejected"] == []


def test_the_future_bound_follows_the_clock_not_an_earlier_answer() -> None:
    """The remembered "a day from now" only widens what the clock allows, never more."""
    from datetime import UTC, datetime, timedelta

    from bot.ingest.numbers import time_in_range

    now = datetime.now(UTC)
    assert time_in_range(now + timedelta(hours=23))
    assert time_in_range(now)  # under the remembered bound
    assert not time_in_range(now + timedelta(days=1, minutes=5))
    assert time_in_range(now + timedelta(hours=23, minutes=59))
    assert not time_in_range(now + timedelta(days=400))
    assert not time_in_range(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))
