"""Alertmanager label matchers: parse (`a="b"`, `a=~"x|y"`, `{a="b",c!~"d"}`), evaluate, compile to SQL.

Semantics follow Alertmanager: a missing label equals the empty string; regexes are fully anchored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

MAX_REGEX_LEN = 1024


class MatchOp(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


class MatcherError(ValueError):
    """A matcher that cannot be parsed; the message quotes it and says what is wrong."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return actual == self.value
        if self.op is MatchOp.NE:
            return actual != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(actual) is not None
        return hit if self.op is MatchOp.RE else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<name>[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*")\s*
        (?P<op>=~|!~|!=|=)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|[^,{}"\s]*)
    )\s*""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
# Python-only regex syntax PostgreSQL would read differently (or reject): refuse rather than mis-match.
_NOT_PORTABLE = re.compile(r"\(\?P[<=]|\(\?<[=!]|\\[AZz]")


def _unquote(text: str, whole: str) -> str:
    if not text.startswith('"'):
        return text
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise MatcherError(f"bad matcher {whole!r}: invalid escape in {text}")
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _make(name: str, op: str, value: str, whole: str) -> Matcher:
    mop = MatchOp(op)
    if not name:
        raise MatcherError(f"bad matcher {whole!r}: empty label name")
    regex = None
    if mop in (MatchOp.RE, MatchOp.NRE):
        if len(value) > MAX_REGEX_LEN:
            raise MatcherError(f"bad matcher {whole!r}: regex longer than {MAX_REGEX_LEN} characters")
        if _NOT_PORTABLE.search(value):
            raise MatcherError(f"bad matcher {whole!r}: regex uses syntax PostgreSQL does not share")
        try:
            regex = re.compile(f"(?:{value})")
        except re.error as exc:
            raise MatcherError(f"bad matcher {whole!r}: invalid regular expression: {exc}") from None
    return Matcher(name, mop, value, regex)


def parse_matchers(text: str) -> list[Matcher]:
    """One `filter=` value: a single matcher or the `{…}` list form (a trailing comma is allowed)."""
    body = text.strip()
    if not body:
        raise MatcherError("bad matcher '': empty")
    if body.startswith("{"):
        if not body.endswith("}"):
            raise MatcherError(f"bad matcher {text!r}: missing closing }}")
        body = body[1:-1]
        if not body.strip():
            return []
    out: list[Matcher] = []
    pos = 0
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if not m or m.end() == pos:
            raise MatcherError(
                f"bad matcher {text!r}: expected name, operator (=, !=, =~, !~) and value at {body[pos : pos + 20]!r}"
            )
        value = m.group("value")
        if value.startswith('"') and (len(value) < 2 or not value.endswith('"')):
            raise MatcherError(f"bad matcher {text!r}: unterminated quoted value")
        out.append(_make(_unquote(m.group("name"), text), m.group("op"), _unquote(value, text), text))
        pos = m.end()
        if pos < len(body):
            if body[pos] == '"':
                raise MatcherError(f"bad matcher {text!r}: unterminated quoted value")
            if body[pos] != ",":
                raise MatcherError(f"bad matcher {text!r}: expected ',' at {body[pos : pos + 20]!r}")
            pos += 1
            if not body[pos:].strip():  # a trailing comma closes the list
                break
    return out


def parse_filters(values: Iterable[str]) -> list[Matcher]:
    return [m for value in values for m in parse_matchers(value)]


_COLUMN = re.compile(r"^[a-z_][a-z0-9_.]*$")


def matchers_to_sql(
    matchers: Sequence[Matcher], column: str = "labels", first_param: int = 1
) -> tuple[list[str], list[object]]:
    """SQL boolean clauses (to AND) over a jsonb label column, and their positional parameters.

    Equality uses jsonb containment so a GIN (jsonb_path_ops) index serves it; no value is ever
    written into the SQL text.
    """
    assert _COLUMN.match(column), column
    clauses: list[str] = []
    params: list[object] = []

    def param(value: object) -> str:
        params.append(value)
        return f"${first_param + len(params) - 1}"

    equal = {m.name: m.value for m in matchers if m.op is MatchOp.EQ and m.value}
    if equal:
        clauses.append(f"{column} @> {param(json.dumps(equal))}::jsonb")
    for m in matchers:
        label = f"coalesce({column}->>{param(m.name)}, '')" if not (m.op is MatchOp.EQ and m.value) else None
        if label is None:
            continue
        if m.op is MatchOp.EQ:
            clauses.append(f"{label} = ''")
        elif m.op is MatchOp.NE:
            clauses.append(f"{label} <> {param(m.value)}")
        else:
            sql_op = "~" if m.op is MatchOp.RE else "!~"
            clauses.append(f"{label} {sql_op} {param(f'^(?:{m.value})$')}")
    return clauses, params
