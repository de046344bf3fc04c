"""Verify and decrypt WeCom callbacks (https://developer.work.weixin.qq.com/document/path/91144)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

from wechatpy.crypto.base import WeChatCipher
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from bot.errors import CallbackError
from bot.wecom.xmlguard import safe_parse

_BLOCK = 32  # WeCom pads PKCS#7 to 32 bytes, not AES's 16


class CallbackCrypto:
    """Check signatures and decrypt callback payloads for one corp's self-built app."""

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str) -> None:
        self._token = token
        self._corp_id = corp_id
        try:
            self._crypto = WeChatCrypto(token, encoding_aes_key, corp_id)
        except (AssertionError, binascii.Error, ValueError):
            raise ValueError("encoding_aes_key must be 43 base64 characters") from None

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Check a URL-verification GET and return the decrypted echostr (doc 90238)."""
        # A '+' left unescaped in the query string arrives as a space; base64 has no spaces.
        echostr = echostr.replace(" ", "+")
        self._check_signature(msg_signature, timestamp, nonce, echostr)
        self._check_ciphertext(echostr)
        try:
            plain = self._crypto.check_signature(msg_signature, timestamp, nonce, echostr)
        except Exception as exc:
            raise self._translate(exc) from None
        return str(plain)

    def decrypt(self, msg_signature: str, timestamp: str, nonce: str, body: bytes) -> str:
        """Check an event POST and return its decrypted XML (hostile XML refused)."""
        envelope = safe_parse(body, what="callback envelope")
        encrypt = (envelope.findtext("Encrypt") or "").strip()
        if not encrypt:
            raise CallbackError("callback envelope has no Encrypt element", status=400)
        self._check_signature(msg_signature, timestamp, nonce, encrypt)
        if msg_signature != msg_signature.lower():  # wechatpy's own check was this strict
            raise CallbackError("msg_signature does not match", status=401)
        # Decrypted once, here: the checked plaintext is the message (wechatpy's layout:
        # 16 random bytes, a big-endian length, the XML, the corp id).
        body = self._check_ciphertext(encrypt)
        size = struct.unpack(">I", body[:4])[0]
        try:
            xml = body[4 : 4 + size].decode()
            corp_id = body[4 + size :].decode()
        except UnicodeDecodeError:
            raise CallbackError(
                "cannot decrypt callback (UnicodeDecodeError)", status=400
            ) from None
        if corp_id != self._corp_id:
            raise CallbackError("message was encrypted for a different corp id", status=403)
        safe_parse(xml, what="decrypted message")
        return xml

    def _check_signature(self, signature: str, timestamp: str, nonce: str, data: str) -> None:
        """Compare the SHA1 signature in constant time before any decryption."""
        parts = sorted([self._token, timestamp, nonce, data])
        expected = hashlib.sha1("".join(parts).encode(), usedforsecurity=False).hexdigest()
        if not hmac.compare_digest(expected, (signature or "").lower()):
            raise CallbackError("msg_signature does not match (forged or wrong token)", status=401)

    def _check_ciphertext(self, data: str) -> bytes:
        """Refuse ciphertext that is not strict base64 of padded 32-byte blocks; decrypt it.

        Returns the plaintext without its 16 random bytes and its padding.
        """
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise CallbackError("ciphertext is not valid base64", status=400) from None
        if not raw or len(raw) % _BLOCK:
            raise CallbackError(f"ciphertext length {len(raw)} is not whole blocks", status=400)
        # wechatpy strips padding without checking it; a corrupt message must not pass.
        plain: bytes = WeChatCipher(self._crypto.key).decrypt(raw)
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CallbackError("ciphertext has invalid PKCS#7 padding", status=400)
        body = plain[16:-pad]
        if len(body) < 4 or struct.unpack(">I", body[:4])[0] > len(body) - 4:
            raise CallbackError("decrypted message length field is out of range", status=400)
        return body

    @staticmethod
    def _translate(exc: Exception) -> CallbackError:
        """Map wechatpy's and the decoder's exceptions to one CallbackError."""
        if isinstance(exc, InvalidSignatureException):
            return CallbackError("msg_signature does not match", status=401)
        if isinstance(exc, InvalidCorpIdException):
            return CallbackError("message was encrypted for a different corp id", status=403)
        return CallbackError(f"cannot decrypt callback ({type(exc).__name__})", status=400)
