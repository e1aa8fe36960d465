"""Alertmanager label matchers: parse (`a="b"`, `a=~"x|y"`, `{a="b",c!~"d"}`), evaluate, compile to SQL.

Semantics follow Alertmanager: a missing label equals the empty string; regexes are fully anchored and
are RE2 (Alertmanager's Go regexp), so matching one in Python takes linear time whatever the input.
A regex that PostgreSQL runs (`matchers_to_sql`) must also compile there: the read views check that
before their query (web/api.py `read_tx`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import re2

MAX_REGEX_LEN = 1024
MAX_FILTER_LEN = 4096  # one filter= value
MAX_MATCHERS = 32  # of one request, across its filter= values

_RE2 = re2.Options()
_RE2.log_errors = False  # a user's bad regex is their 400, not a line on our stderr


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
    _regex: Any = field(default=None, compare=False, repr=False)  # re2._Regexp (the package has no stubs)

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
        return f"{self.name}{self.op}{json.dumps(self.value, ensure_ascii=False)}"

    @property
    def sql_regex(self) -> str:
        """The regex as PostgreSQL runs it: anchored like Alertmanager's; a leading `(?i)` (the one flag both
        RE2 and PostgreSQL read the same way, and only at the start in PostgreSQL) stays in front."""
        value = self.value
        if value.startswith("(?i)"):
            return f"(?i)^(?:{value[4:]})$"
        return f"^(?:{value})$"


def compile_re2(pattern: str) -> Any:
    """An RE2 regex (matching takes linear time); ValueError saying why for one RE2 does not accept."""
    if len(pattern) > MAX_REGEX_LEN:
        raise ValueError(f"longer than {MAX_REGEX_LEN} characters")
    try:
        return re2.compile(pattern, _RE2)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(reason) from None
    except UnicodeError:
        raise ValueError("not valid Unicode (a lone surrogate)") from None


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<name>[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*")\s*
        (?P<op>=~|!~|!=|=)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|[^,{}"\s]*)
    )\s*""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
# Escapes RE2 and PostgreSQL both accept but read differently (RE2: word boundaries; PostgreSQL: backspace and
# backslash): refused rather than mis-matched. What only one of the two accepts, that one rejects.
_NOT_PORTABLE = frozenset("bB")


def _not_portable(regex: str) -> str | None:
    """The first escape of `regex` that RE2 and PostgreSQL read differently, if any."""
    i = 0
    while i < len(regex) - 1:
        if regex[i] == "\\":
            if regex[i + 1] in _NOT_PORTABLE:
                return regex[i : i + 2]
            i += 2
        else:
            i += 1
    return None


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
        escape = _not_portable(value)
        if escape:
            raise MatcherError(
                f"bad matcher {whole!r}: {escape} means a word boundary in Alertmanager (RE2) but not in "
                "PostgreSQL, which runs it here; use an explicit class such as [^a-zA-Z0-9_]"
            )
        try:
            regex = compile_re2(value)
        except ValueError as exc:
            raise MatcherError(f"bad matcher {whole!r}: invalid regular expression (RE2): {exc}") from None
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
    """A request's `filter=` values: at most MAX_MATCHERS of them, each at most MAX_FILTER_LEN characters, and
    MAX_MATCHERS matchers in all."""
    values = list(values)
    if len(values) > MAX_MATCHERS:
        raise MatcherError(f"{len(values)} filter values; at most {MAX_MATCHERS} in one request")
    out: list[Matcher] = []
    for value in values:
        if len(value) > MAX_FILTER_LEN:
            raise MatcherError(f"bad matcher {value[:40]!r}…: longer than {MAX_FILTER_LEN} characters")
        out += parse_matchers(value)
        if len(out) > MAX_MATCHERS:
            raise MatcherError(f"more than {MAX_MATCHERS} matchers in one request")
    return out


_COLUMN = re.compile(r"^[a-z_][a-z0-9_.]*$")


def matchers_to_sql(
    matchers: Sequence[Matcher], column: str = "labels", first_param: int = 1, by_value: Sequence[str] = ()
) -> tuple[list[str], list[object]]:
    """SQL boolean clauses (to AND) over a jsonb label column, and their positional parameters.

    Equality uses jsonb containment so a GIN (jsonb_path_ops) index serves it; no value is ever
    written into the SQL text. The labels named in `by_value` are compared as `column->>name = $n` instead, for
    an expression index on that label (migration 015: alertname). The same rows match: label values are strings.
    """
    assert _COLUMN.match(column), column
    clauses: list[str] = []
    params: list[object] = []

    def param(value: object) -> str:
        params.append(value)
        return f"${first_param + len(params) - 1}"

    equal = {m.name: m.value for m in matchers if m.op is MatchOp.EQ and m.value}
    for name in by_value:
        if name in equal:
            assert _COLUMN.match(name), name
            clauses.append(f"{column}->>'{name}' = {param(equal.pop(name))}")
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
            clauses.append(f"{label} {sql_op} {param(m.sql_regex)}")
    return clauses, params
