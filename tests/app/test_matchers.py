"""Matchers: parsing, Alertmanager's semantics (RE2, anchored), the limits of a request, and agreement with
PostgreSQL, which runs the regexes of every read."""

import json

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.matchers import (
    MAX_FILTER_LEN,
    MAX_MATCHERS,
    MAX_REGEX_LEN,
    MatcherError,
    MatchOp,
    matchers_to_sql,
    parse_filters,
    parse_matchers,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a="b"', [("a", "=", "b")]),
        ("a=b", [("a", "=", "b")]),
        ('a!="b"', [("a", "!=", "b")]),
        ('a=~"x|y"', [("a", "=~", "x|y")]),
        ('a!~"x.*"', [("a", "!~", "x.*")]),
        ('a="x\\"y"', [("a", "=", 'x"y')]),
        ('a="back\\\\slash"', [("a", "=", "back\\slash")]),
        ('a="line\\nbreak"', [("a", "=", "line\nbreak")]),
        ('{ a = "b" , c=~"d", }', [("a", "=", "b"), ("c", "=~", "d")]),
        ('a=""', [("a", "=", "")]),
        ("{}", []),
    ],
)
def test_valid(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert [(m.name, m.op.value, m.value) for m in parse_matchers(text)] == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("a", "expected name, operator"),
        ('a="b', "unterminated"),
        ('{a="b"', "missing closing"),
        ('a=~"("', "invalid regular expression"),
        ('="x"', "expected name"),
        ('a="b" c="d"', "expected ','"),
        ('a=~"x\\\\b"', "word boundary"),  # RE2 and PostgreSQL both accept \b, and read it differently
        ('a=~"\\\\B"', "word boundary"),
        ('a="\\q"', "invalid escape"),
        # What Python's re accepts and Alertmanager's RE2 does not:
        ('a=~"a++"', "bad repetition operator"),
        ('a=~"[[:foo:]]"', "invalid character class"),
        ('a=~"(a)\\\\1"', "invalid escape"),
        ('a=~"(?<=a)b"', "invalid perl operator"),
        ('a=~"x{1001}"', "invalid repetition size"),
    ],
)
def test_invalid_names_the_problem(text: str, says: str) -> None:
    with pytest.raises(MatcherError) as err:
        parse_matchers(text)
    assert says in str(err.value)


def test_regex_length_is_bounded() -> None:
    with pytest.raises(MatcherError, match="longer than"):
        parse_matchers(f'a=~"{"x" * (MAX_REGEX_LEN + 1)}"')


def test_a_request_has_at_most_max_matchers_in_bounded_filters() -> None:
    assert len(parse_filters(['a="b"'] * MAX_MATCHERS)) == MAX_MATCHERS
    with pytest.raises(MatcherError, match=f"at most {MAX_MATCHERS}"):
        parse_filters(["{}"] * (MAX_MATCHERS + 1))  # values count, even empty ones
    with pytest.raises(MatcherError, match=f"more than {MAX_MATCHERS} matchers"):
        parse_filters(["{" + ",".join(f'l{i}="v"' for i in range(MAX_MATCHERS + 1)) + "}"])
    with pytest.raises(MatcherError, match=f"longer than {MAX_FILTER_LEN}"):
        parse_filters([f'a="{"x" * MAX_FILTER_LEN}"'])


def test_a_catastrophic_regex_for_backtracking_matches_in_linear_time() -> None:
    """Python's re would run (a+)+ against this for longer than the universe has existed; RE2 answers at once."""
    (m,) = parse_matchers('a=~"(a+)+"')
    assert not m.matches({"a": "a" * 100_000 + "b"})
    assert m.matches({"a": "a" * 100_000})


def test_sql_regex_is_anchored_and_keeps_a_leading_case_flag_in_front() -> None:
    assert parse_matchers('a=~"x|y"')[0].sql_regex == "^(?:x|y)$"
    assert parse_matchers('a=~"(?i)cpu.*"')[0].sql_regex == "(?i)^(?:cpu.*)$"
    (m,) = parse_matchers('a=~"(?i)cpu.*"')
    assert m.matches({"a": "CPUHigh"}) and not m.matches({"a": "xcpu"})


def test_semantics_like_alertmanager() -> None:
    (eq_empty,) = parse_matchers('team=""')
    assert eq_empty.matches({}) and not eq_empty.matches({"team": "x"})
    (rx,) = parse_matchers('job=~"foo"')
    assert rx.matches({"job": "foo"}) and not rx.matches({"job": "foobar"})  # anchored
    (nrx,) = parse_matchers('job!~"foo|bar"')
    assert nrx.matches({}) and not nrx.matches({"job": "bar"})
    assert parse_matchers('a!="b"')[0].op is MatchOp.NE


def test_sql_is_parameterised() -> None:
    ms = parse_filters(['a="b"', '{c!~"x.*",d="",e!="f\' OR 1=1"}'])
    clauses, params = matchers_to_sql(ms, "labels", 3)
    sql = " AND ".join(clauses)
    assert "OR 1=1" not in sql and "x.*" not in sql
    assert sql.count("$") == len(params) and "$3" in sql
    assert '{"a": "b"}' in params and "^(?:x.*)$" in params


# Regexes both engines read alike: literals, classes, alternation, groups, repetition, a leading case flag.
_ATOM = st.sampled_from(["a", "b", "ab", ".", "[ab]", "[^a]", "\\d", "x", "\\.", "[a-c]"])


@st.composite
def _regexes(draw: st.DrawFn, depth: int = 2) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        atom = draw(_ATOM) if depth == 0 or draw(st.booleans()) else f"({draw(_regexes(depth - 1))})"
        parts.append(atom + draw(st.sampled_from(["", "*", "+", "?", "{1,2}", "{2}"])))
    body = "".join(parts)
    if draw(st.booleans()):
        body += "|" + draw(_regexes(depth - 1)) if depth else ""
    return body


@settings(max_examples=150, deadline=None)
@given(
    regex=_regexes(),
    flag=st.sampled_from(["", "(?i)"]),
    values=st.lists(st.text(alphabet="abABx.1c\n", max_size=6), min_size=1, max_size=8),
)
async def test_python_and_postgresql_agree_on_what_a_regex_matcher_matches(
    db: asyncpg.Pool, regex: str, flag: str, values: list[str]
) -> None:
    """Matcher.matches (RE2) and the SQL of matchers_to_sql (PostgreSQL) give the same answer."""
    quoted = (flag + regex).replace("\\", "\\\\")
    (m,) = parse_matchers(f'l=~"{quoted}"')
    clauses, params = matchers_to_sql([m], "labels", 2)
    sql = f"SELECT {clauses[0]} FROM (SELECT jsonb_build_object('l', $1::text) AS labels) AS t"
    for value in values:
        if "\n" in value and "." in regex:
            continue  # `.` matches a newline in PostgreSQL, not in RE2: label values with newlines are rare
        assert await db.fetchval(sql, value, *params) == m.matches({"l": value}), (regex, value)



@pytest.mark.parametrize(
    "filters",
    [['alertname="A"'], ['alertname="A"', 'job="x"'], ['alertname="A"', 'alertname="B"'], ['alertname=""'],
     ['alertname!="A"', 'job="x"'], ['job="x"'], ['alertname="A"', 'job=~"x|y"']],
)  # fmt: skip
async def test_a_label_compared_by_value_matches_what_containment_matches(db: asyncpg.Pool, filters: list[str]) -> None:
    """`by_value` (the form the alertname index serves) selects the label sets that containment selects, and so
    what Matcher.matches does (but where one label is given two values: containment keeps the last, as before)."""
    ms = parse_filters(filters)
    label_sets = [
        {}, {"alertname": "A"}, {"alertname": "B"}, {"alertname": "A", "job": "x"}, {"job": "x"},
        {"alertname": "AB", "job": "x"}, {"alertname": "", "job": "x"}, {"alertname": "A", "job": "z"},
    ]  # fmt: skip

    async def selects(by_value: tuple[str, ...], labels: dict[str, str]) -> bool:
        clauses, params = matchers_to_sql(ms, "labels", 2, by_value=by_value)
        sql = f"SELECT {' AND '.join(clauses) or 'true'} FROM (SELECT $1::jsonb AS labels) AS t"
        return bool(await db.fetchval(sql, json.dumps(labels), *params))

    repeated = len([m for m in ms if m.name == "alertname"]) > 1
    for labels in label_sets:
        by_containment = await selects((), labels)
        assert await selects(("alertname",), labels) == by_containment, (filters, labels)
        if not repeated:
            assert by_containment == all(m.matches(labels) for m in ms), (filters, labels)
