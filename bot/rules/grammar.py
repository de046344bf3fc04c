"""The tier rule grammar (lark, LALR) and the plain words its terminals are reported as."""

from __future__ import annotations

from functools import cache

from lark import Lark

GRAMMAR = r"""
start: _expr

_expr: or_
     | _term
or_: _expr _OR _term
_term: and_
     | _factor
and_: _term _AND _factor
_factor: not_
       | _atom
not_: _NOT _factor
_atom: compare
     | in_
     | not_in
     | missing
     | not_missing
     | _LPAR _expr _RPAR
     | _operand
compare: _operand COMP_OP _operand
in_: _operand _IN _list
not_in: _operand _NOT _IN _list
missing: name _IS _MISSING
not_missing: name _IS _NOT _MISSING
_list: _LSQB _literal (_COMMA _literal)* _COMMA? _RSQB
_operand: name | _literal
_literal: number | string | true | false
// `group["VIP 会员群"]`: a quoted name after group / profile / tier, for names that are
// not letters, digits and _ (spaces, punctuation, a leading digit).
name: NAME
    | NAME _LSQB STRING _RSQB
number: NUMBER
string: STRING
true: _TRUE
false: _FALSE

_OR: "or"
_AND: "and"
_NOT: "not"
_IN: "in"
_IS: "is"
_MISSING: "missing"
_TRUE: "true"
_FALSE: "false"
_LPAR: "("
_RPAR: ")"
_LSQB: "["
_RSQB: "]"
_COMMA: ","
COMP_OP: "==" | "!=" | "<=" | ">=" | "<" | ">"
// Letters (any script) or _, then word characters; one optional `.part` for profile./tier.
NAME: /[^\W\d]\w*(\.[^\W\d]\w*)?/
NUMBER: /-?[0-9]+(\.[0-9]+)?/
STRING: /"(?:[^"\\\n\x00]|\\[^\n\x00])*"|'(?:[^'\\\n\x00]|\\[^\n\x00])*'/

%ignore /[ \t\r\n]+/
"""

# How each terminal is named to an operator in "expected ..." messages.
PLAIN_WORDS: dict[str, str] = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a quoted string",
    "COMP_OP": "a comparison (== != < <= > >=)",
    "_OR": "'or'",
    "_AND": "'and'",
    "_NOT": "'not'",
    "_IN": "'in'",
    "_IS": "'is'",
    "_MISSING": "'missing'",
    "_TRUE": "'true'",
    "_FALSE": "'false'",
    "_LPAR": "'('",
    "_RPAR": "')'",
    "_LSQB": "'['",
    "_RSQB": "']'",
    "_COMMA": "','",
    "$END": "the end of the rule",
}


@cache
def parser() -> Lark:
    """Return the shared LALR parser (built once; lark parsers are reusable and thread-safe)."""
    # The basic lexer, not the contextual one: where no name may follow, the contextual lexer
    # would split `orders_365d` into `or` + `ders_365d` and report the wrong token.
    return Lark(
        GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False
    )
