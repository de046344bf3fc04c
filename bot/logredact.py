"""Mask secrets in every log record: the settings' secrets and tokens in URLs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from bot.config import Settings

MASK = "***"
# Query parameters that carry a secret in WeCom URLs (third-party loggers print URLs).
_QUERY_SECRET = re.compile(
    r"((?:access_token|corpsecret|secret|token|encoding_aes_key)=)[^&\s\"']+", re.IGNORECASE
)
# A value this short would mask ordinary words; config validation keeps secrets longer.
_MIN_SECRET = 6


def settings_secrets(settings: Settings) -> list[str]:
    """Return the secret values a log line must never show."""
    w = settings.wecom
    values = [w.secret, w.token, w.encoding_aes_key, settings.server.admin_token]
    values += [c.webhook_secret for c in settings.outreach.campaigns if c.webhook_secret]
    return [v.get_secret_value() for v in values]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with the given secrets and secret-bearing query values masked."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, MASK)
    return _QUERY_SECRET.sub(rf"\g<1>{MASK}", text)


class RedactingFilter(logging.Filter):
    """Rewrite each record's message, exception and stack text with secrets masked.

    Installed on the handlers (not on loggers), so it sees records from every logger,
    ours and third-party ones alike, before they are written.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record, nor leak args
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg = redact(message, self._secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True
