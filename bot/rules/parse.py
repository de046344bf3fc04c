"""Parse a tier rule's text into the typed tree; syntax errors become RuleError, never lark's."""

from __future__ import annotations

from typing import Any, cast

from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.tree import Meta

from bot.rules.errors import RuleError
from bot.rules.grammar import PLAIN_WORDS, parser
from bot.rules.nodes import (
    And,
    Bool,
    Compare,
    CompareOp,
    Expr,
    InList,
    IsMissing,
    Literal_,
    Name,
    Not,
    Number,
    Operand,
    Or,
    Span,
    String,
)
from bot.rules.vocabulary import GROUP_PREFIX, PROFILE_PREFIX, TIER_PREFIX

_ESCAPES = {"n": "\n", "t": "\t"}
# The names a quoted name may follow: `group["…"]` reads as `group.…`.
QUOTED_PREFIXES = tuple(p.rstrip(".") for p in (GROUP_PREFIX, PROFILE_PREFIX, TIER_PREFIX))


def _span(meta: Meta) -> Span:
    return (meta.start_pos, meta.end_pos)


def _unquote(raw: str) -> str:
    """Strip the quotes and resolve backslash escapes (`\\"`, `\\'`, `\\\\`, `\\n`, `\\t`)."""
    body, out, i = raw[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@v_args(meta=True)
class _ToNodes(Transformer[Token, Expr]):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def start(self, meta: Meta, children: list[Expr]) -> Expr:
        return children[0]

    def name(self, meta: Meta, children: list[Token]) -> Name:
        if len(children) == 1:
            return Name(str(children[0]), _span(meta))
        prefix, quoted = str(children[0]), _unquote(str(children[1]))
        if prefix not in QUOTED_PREFIXES:
            raise RuleError(
                f'{prefix!r} takes no quoted name; write group["群名"], profile["属性"]'
                ' or tier["维度"]',
                text=self.text,
                start=meta.start_pos,
                end=meta.end_pos,
            )
        if not quoted.strip():
            raise RuleError(
                f"{prefix}[...] needs a name inside the quotes",
                text=self.text,
                start=meta.start_pos,
                end=meta.end_pos,
            )
        return Name(f"{prefix}.{quoted}", _span(meta))

    def number(self, meta: Meta, children: list[Token]) -> Number:
        raw = str(children[0])
        value: int | float = float(raw) if "." in raw else int(raw)
        return Number(value, _span(meta))

    def string(self, meta: Meta, children: list[Token]) -> String:
        return String(_unquote(str(children[0])), _span(meta))

    def true(self, meta: Meta, children: list[Any]) -> Bool:
        return Bool(True, _span(meta))

    def false(self, meta: Meta, children: list[Any]) -> Bool:
        return Bool(False, _span(meta))

    def compare(self, meta: Meta, children: list[Any]) -> Compare:
        left, op, right = children
        return Compare(cast(CompareOp, str(op)), left, right, _span(meta))

    def in_(self, meta: Meta, children: list[Any]) -> InList:
        return InList(cast(Operand, children[0]), tuple(children[1:]), False, _span(meta))

    def not_in(self, meta: Meta, children: list[Any]) -> InList:
        return InList(cast(Operand, children[0]), tuple(children[1:]), True, _span(meta))

    def missing(self, meta: Meta, children: list[Name]) -> IsMissing:
        return IsMissing(children[0], False, _span(meta))

    def not_missing(self, meta: Meta, children: list[Name]) -> IsMissing:
        return IsMissing(children[0], True, _span(meta))

    def not_(self, meta: Meta, children: list[Expr]) -> Not:
        return Not(children[0], _span(meta))

    def and_(self, meta: Meta, children: list[Expr]) -> And:
        return And(children[0], children[1], _span(meta))

    def or_(self, meta: Meta, children: list[Expr]) -> Or:
        return Or(children[0], children[1], _span(meta))


def _expected(names: set[str] | frozenset[str]) -> str:
    words = sorted({PLAIN_WORDS.get(n, n.lower()) for n in names})
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1] if words else ""


def _syntax_error(text: str, exc: UnexpectedInput) -> RuleError:
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        ch = text[pos]
        if ch in "\"'":
            return RuleError("unterminated string", text=text, start=pos, end=len(text))
        if ch == "=":
            msg = "unexpected '='; compare with '=='"
        else:
            msg = f"unexpected character {ch!r}"
            if exc.allowed:
                msg += f"; expected {_expected(exc.allowed)}"
        return RuleError(msg, text=text, start=pos, end=pos + 1)
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    accepts = set(exc.accepts or exc.expected)
    # LALR reduces before it sees the error, which can drop 'and' from the set; wherever
    # 'or' may follow, a term just ended, so 'and' may follow too.
    if "_OR" in accepts:
        accepts.add("_AND")
    # '[' after a name opens a quoted name (group["…"]): worth naming only where it is all
    # that may follow (a list after 'in').
    if len(accepts) > 1:
        accepts.discard("_LSQB")
    expected = _expected(accepts)
    if token.type == "$END":
        return RuleError(
            f"unexpected end of rule; expected {expected}",
            text=text,
            start=len(text.rstrip()),
            end=len(text.rstrip()) + 1,
        )
    start = token.start_pos or 0
    return RuleError(
        f"unexpected {str(token)!r}; expected {expected}",
        text=text,
        start=start,
        end=token.end_pos or start + 1,
    )


def parse_rule(text: str) -> Expr:
    """Parse rule text into an unchecked tree; raise RuleError (no key) on a syntax error."""
    try:
        tree = parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    try:
        return _ToNodes(text).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, RuleError):
            raise exc.orig_exc from None
        raise


__all__ = ["Literal_", "parse_rule"]
