"""WeCom callback crypto, written independently of wechatpy so each checks the other.

See https://developer.work.weixin.qq.com/document/path/91144 (加解密方案说明).
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import secrets
import string
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeCom pads to 32 bytes, not AES's 16


class CallbackCryptoError(ValueError):
    """A callback payload failed signature, decryption or receive-id checks."""


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """Return the msg_signature of a callback: sha1 over the four sorted strings."""
    joined = "".join(sorted([token, timestamp, nonce, encrypt])).encode()
    return hashlib.sha1(joined, usedforsecurity=False).hexdigest()


def nonce() -> str:
    """Return a random numeric nonce like the ones WeCom sends."""
    return str(secrets.randbelow(10**10))


class CallbackCrypto:
    """Encrypt, decrypt and sign callback payloads for one corp's app."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != 43:
            raise CallbackCryptoError("EncodingAESKey must be 43 characters")
        self.token = token
        self.key = base64.b64decode(encoding_aes_key + "=")
        self.receive_id = receive_id

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, message: str, *, random_prefix: bytes | None = None) -> str:
        """Return base64(AES-CBC(random16 | len | message | receive_id)) with 32-byte padding."""
        body = message.encode()
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        plain = prefix + struct.pack(">I", len(body)) + body + self.receive_id.encode()
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypt: str) -> str:
        """Return the message inside `encrypt`, checking padding and receive id."""
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except ValueError as exc:
            raise CallbackCryptoError("encrypt is not base64") from exc
        if not raw or len(raw) % 16:
            raise CallbackCryptoError("ciphertext length is not a multiple of the AES block")
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CallbackCryptoError("bad padding")
        plain = plain[:-pad]
        if len(plain) < 20:
            raise CallbackCryptoError("plaintext too short")
        (length,) = struct.unpack(">I", plain[16:20])
        message, receive_id = plain[20 : 20 + length], plain[20 + length :]
        if len(message) != length:
            raise CallbackCryptoError("bad message length")
        if receive_id.decode() != self.receive_id:
            raise CallbackCryptoError("receive id mismatch")
        return message.decode()

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """Return the msg_signature for `encrypt` with this app's token."""
        return signature(self.token, timestamp, nonce, encrypt)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Raise CallbackCryptoError unless `msg_signature` signs `encrypt`."""
        if not secrets.compare_digest(self.sign(timestamp, nonce, encrypt), msg_signature):
            raise CallbackCryptoError("signature mismatch")


def random_id(
    prefix: str, length: int, alphabet: str = string.ascii_letters + string.digits
) -> str:
    """Return `prefix` followed by `length` random characters, like WeCom's opaque ids."""
    # ids need to be unique, not secret; random.choices keeps bulk seeding fast
    return prefix + "".join(random.choices(alphabet, k=length))
