"""The webhook signature: what a receiver computes by hand, and what `verify` refuses."""

from __future__ import annotations

import hashlib
import hmac

from bot.outreach.signature import sign, verify

SECRET = "whsec-3f9a1c7e5b2d4860aa"
BODY = '{"campaign":"短信唤醒","run_id":7,"batch":0}'.encode()
TS = 1_790_000_000


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1790000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, TS, BODY) == f"sha256={expected}"
    assert sign(SECRET.encode(), str(TS), BODY) == sign(SECRET, TS, BODY)


def test_verify_accepts_a_fresh_signature_and_refuses_every_alteration() -> None:
    header = sign(SECRET, TS, BODY)
    assert verify(SECRET, str(TS), BODY, header, max_age=300, now=TS + 299)
    assert verify(SECRET, TS, BODY, f"  {header} ", max_age=300, now=TS - 10)
    refused = [
        (SECRET, str(TS), BODY + b" ", header),  # body changed
        (SECRET, str(TS + 1), BODY, header),  # timestamp changed
        ("another-secret-value", str(TS), BODY, header),
        (SECRET, str(TS), BODY, header.removeprefix("sha256=")),
        (SECRET, str(TS), BODY, header.upper()),
        (SECRET, str(TS), BODY, None),
        (SECRET, str(TS), BODY, ""),
        (SECRET, None, BODY, header),
        (SECRET, "yesterday", BODY, header),
    ]
    for secret, ts, body, given in refused:
        assert not verify(secret, ts, body, given, max_age=300, now=TS), (ts, given)


def test_verify_refuses_a_replay_older_or_newer_than_max_age() -> None:
    header = sign(SECRET, TS, BODY)
    assert not verify(SECRET, TS, BODY, header, max_age=300, now=TS + 301)
    assert not verify(SECRET, TS, BODY, header, max_age=300, now=TS - 301)
