"""CallbackCrypto against the official doc-91144 vectors, and its refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from typing import Any

import pytest
from wechatpy.crypto.base import WeChatCipher

from bot.errors import CallbackError
from bot.wecom.crypto import CallbackCrypto
from tests.support.corp import VECTORS


@pytest.fixture(scope="module")
def vec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


@pytest.fixture
def crypto(vec: dict[str, Any]) -> CallbackCrypto:
    c = vec["config"]
    return CallbackCrypto(c["token"], c["encoding_aes_key"], c["corp_id"])


def _sign(token: str, timestamp: str, nonce: str, data: str) -> str:
    raw = "".join(sorted([token, timestamp, nonce, data])).encode()
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()


def _encrypt(key43: str, plaintext: bytes, receiveid: str, *, pad_ok: bool = True) -> str:
    """Encrypt like WeCom does (independently of wechatpy's encoder)."""
    key = base64.b64decode(key43 + "=")
    body = b"R" * 16 + struct.pack(">I", len(plaintext)) + plaintext + receiveid.encode()
    pad = 32 - len(body) % 32
    body += bytes([pad]) * pad if pad_ok else bytes([pad]) * (pad - 1) + b"\x00"
    return base64.b64encode(WeChatCipher(key).encrypt(body)).decode()


def _envelope(encrypt: str, to: str = "wx5823bf96d3bd56c7") -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
    ).encode()


def test_verify_url_decrypts_official_echostr(crypto: CallbackCrypto, vec: dict[str, Any]) -> None:
    g = vec["url_verify_get"]
    out = crypto.verify_url(g["msg_signature"], g["timestamp"], g["nonce"], g["echostr"])
    assert out == g["expected_echostr_plaintext"]


def test_verify_url_tolerates_plus_decoded_as_space(
    crypto: CallbackCrypto, vec: dict[str, Any]
) -> None:
    g = vec["url_verify_get"]
    mangled = g["echostr"].replace("+", " ")
    out = crypto.verify_url(g["msg_signature"], g["timestamp"], g["nonce"], mangled)
    assert out == g["expected_echostr_plaintext"]


def test_decrypt_official_post(crypto: CallbackCrypto, vec: dict[str, Any]) -> None:
    p = vec["post"]
    out = crypto.decrypt(p["msg_signature"], p["timestamp"], p["nonce"], p["body"].encode())
    assert out == p["expected_plaintext"]


@pytest.mark.parametrize("which", ["get", "post"])
def test_tampered_signature_is_refused(
    crypto: CallbackCrypto, vec: dict[str, Any], which: str
) -> None:
    with pytest.raises(CallbackError) as err:
        if which == "get":
            g = vec["url_verify_get"]
            crypto.verify_url("0" * 40, g["timestamp"], g["nonce"], g["echostr"])
        else:
            p = vec["post"]
            sig = p["msg_signature"][:-1] + ("0" if p["msg_signature"][-1] != "0" else "1")
            crypto.decrypt(sig, p["timestamp"], p["nonce"], p["body"].encode())
    assert err.value.status == 401
    assert "signature" in err.value.reason


def test_tampered_timestamp_is_refused(crypto: CallbackCrypto, vec: dict[str, Any]) -> None:
    p = vec["post"]
    with pytest.raises(CallbackError) as err:
        crypto.decrypt(p["msg_signature"], "1409659814", p["nonce"], p["body"].encode())
    assert err.value.status == 401


def test_wrong_corp_id_is_refused(vec: dict[str, Any]) -> None:
    c = vec["config"]
    other = CallbackCrypto(c["token"], c["encoding_aes_key"], "wwsomeothercorp")
    p = vec["post"]
    with pytest.raises(CallbackError) as err:
        other.decrypt(p["msg_signature"], p["timestamp"], p["nonce"], p["body"].encode())
    assert err.value.status == 403
    assert "corp id" in err.value.reason
    g = vec["url_verify_get"]
    with pytest.raises(CallbackError) as err:
        other.verify_url(g["msg_signature"], g["timestamp"], g["nonce"], g["echostr"])
    assert err.value.status == 403


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><ToUserName>&lol4;</ToUserName><Encrypt><![CDATA[abc]]></Encrypt></xml>"""


def test_billion_laughs_envelope_is_refused(crypto: CallbackCrypto, vec: dict[str, Any]) -> None:
    p = vec["post"]
    with pytest.raises(CallbackError) as err:
        crypto.decrypt(p["msg_signature"], p["timestamp"], p["nonce"], BILLION_LAUGHS)
    assert err.value.status == 400
    assert "hostile" in err.value.reason


def test_hostile_plaintext_is_refused_even_when_signed(vec: dict[str, Any]) -> None:
    c = vec["config"]
    crypto = CallbackCrypto(c["token"], c["encoding_aes_key"], c["corp_id"])
    enc = _encrypt(c["encoding_aes_key"], BILLION_LAUGHS, c["corp_id"])
    sig = _sign(c["token"], "1", "n", enc)
    with pytest.raises(CallbackError) as err:
        crypto.decrypt(sig, "1", "n", _envelope(enc))
    assert err.value.status == 400
    assert "decrypted message" in err.value.reason


def test_external_entity_envelope_is_refused(crypto: CallbackCrypto) -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<xml><Encrypt>&e;</Encrypt></xml>"
    )
    with pytest.raises(CallbackError) as err:
        crypto.decrypt("x", "1", "n", body)
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not xml at all", "malformed"),
        (b"<xml><ToUserName>a</ToUserName></xml>", "no Encrypt"),
    ],
)
def test_malformed_envelope_is_400(crypto: CallbackCrypto, body: bytes, needle: str) -> None:
    with pytest.raises(CallbackError) as err:
        crypto.decrypt("x", "1", "n", body)
    assert err.value.status == 400
    assert needle in err.value.reason


def test_signed_garbage_ciphertext_is_400(vec: dict[str, Any]) -> None:
    c = vec["config"]
    crypto = CallbackCrypto(c["token"], c["encoding_aes_key"], c["corp_id"])
    for enc in ["!!!notbase64!!!", base64.b64encode(b"x" * 20).decode()]:
        sig = _sign(c["token"], "1", "n", enc)
        with pytest.raises(CallbackError) as err:
            crypto.decrypt(sig, "1", "n", _envelope(enc))
        assert err.value.status == 400


def test_signed_bad_padding_is_400(vec: dict[str, Any]) -> None:
    c = vec["config"]
    crypto = CallbackCrypto(c["token"], c["encoding_aes_key"], c["corp_id"])
    enc = _encrypt(c["encoding_aes_key"], b"<xml/>", c["corp_id"], pad_ok=False)
    sig = _sign(c["token"], "1", "n", enc)
    with pytest.raises(CallbackError) as err:
        crypto.decrypt(sig, "1", "n", _envelope(enc))
    assert err.value.status == 400
    assert "padding" in err.value.reason


def test_round_trip_with_independent_encoder(vec: dict[str, Any]) -> None:
    c = vec["config"]
    crypto = CallbackCrypto(c["token"], c["encoding_aes_key"], c["corp_id"])
    xml = "<xml><Event><![CDATA[change_external_contact]]></Event><X>中文</X></xml>"
    enc = _encrypt(c["encoding_aes_key"], xml.encode(), c["corp_id"])
    sig = _sign(c["token"], "1700000000", "abc", enc)
    assert crypto.decrypt(sig, "1700000000", "abc", _envelope(enc)) == xml


def test_bad_aes_key_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="43"):
        CallbackCrypto("t", "short", "ww1")
