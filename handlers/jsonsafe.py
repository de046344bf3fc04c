"""A JSON provider that cannot fail on hostile text (lone surrogates) when answering."""

from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider


class SafeJSONProvider(DefaultJSONProvider):
    """Keep Chinese readable, but escape text UTF-8 cannot carry instead of raising."""

    ensure_ascii = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        text = super().dumps(obj, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate echoed back from the request
            kwargs["ensure_ascii"] = True
            text = super().dumps(obj, **kwargs)
        return text
