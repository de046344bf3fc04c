"""The one error a tier rule raises: config key, rule text, position and message, with a caret."""

from __future__ import annotations

import unicodedata

from bot.errors import ValidationError


def _width(text: str) -> int:
    """Return the terminal columns `text` takes (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


class RuleError(ValidationError):
    """A tier rule is malformed: unknown name, wrong type or broken syntax.

    `start`/`end` are character offsets into `text`; `str()` renders the key, the message,
    the offending line and a caret under the offending part.
    """

    def __init__(self, message: str, *, text: str, start: int, end: int, key: str = "") -> None:
        self.message = message
        self.text = text
        self.start = max(0, min(start, len(text)))
        self.end = max(self.start + 1, min(end, len(text) + 1))
        self.key = key
        super().__init__(self.render())

    def with_key(self, key: str) -> RuleError:
        """Return the same error placed at a config key."""
        return RuleError(self.message, text=self.text, start=self.start, end=self.end, key=key)

    def render(self) -> str:
        """Return `key: message`, the offending line indented, and a caret under the part."""
        line_start = self.text.rfind("\n", 0, self.start) + 1
        line_end = self.text.find("\n", self.start)
        if line_end == -1:
            line_end = len(self.text)
        line = self.text[line_start:line_end]
        pad = _width(self.text[line_start : self.start])
        # An unexpected end (start == len(text)) still gets a one-column caret.
        carets = max(1, _width(self.text[self.start : min(self.end, line_end)]))
        head = f"{self.key}: {self.message}" if self.key else self.message
        return f"{head}\n    {line}\n    {' ' * pad}{'^' * carets}"
