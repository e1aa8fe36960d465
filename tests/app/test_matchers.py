import pytest

from app.matchers import MAX_REGEX_LEN, MatcherError, MatchOp, matchers_to_sql, parse_filters, parse_matchers


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
        ('a=~"(?P<n>x)"', "PostgreSQL"),
        ('a="\\q"', "invalid escape"),
    ],
)
def test_invalid_names_the_problem(text: str, says: str) -> None:
    with pytest.raises(MatcherError) as err:
        parse_matchers(text)
    assert says in str(err.value)


def test_regex_length_is_bounded() -> None:
    with pytest.raises(MatcherError, match="longer than"):
        parse_matchers(f'a=~"{"x" * (MAX_REGEX_LEN + 1)}"')


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
