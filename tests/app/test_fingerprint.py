import pytest

from app.fingerprint import fingerprint


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # Checked against Alertmanager 0.25 (the foundation issue's vector).
        ({"alertname": "FpCheck", "instance": "a:1", "severity": "critical"}, "a813ef02442c2be9"),
        # FNV-1a 64 offset basis: the empty label set hashes to the initial value.
        ({}, "cbf29ce484222325"),
    ],
)
def test_matches_alertmanager(labels: dict[str, str], expected: str) -> None:
    assert fingerprint(labels) == expected


def test_order_of_labels_does_not_matter() -> None:
    a = {"alertname": "X", "job": "node", "instance": "h:9100"}
    assert fingerprint(a) == fingerprint(dict(reversed(list(a.items()))))


def test_separator_keeps_names_and_values_apart() -> None:
    # Without the 0xFF separator these two would hash the same bytes.
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})


def test_utf8_values() -> None:
    assert fingerprint({"alertname": "Überlast"}) != fingerprint({"alertname": "Uberlast"})
    assert len(fingerprint({"alertname": "Überlast"})) == 16


def test_the_cache_answers_what_the_computation_does() -> None:
    from types import MappingProxyType

    from app.fingerprint import compute

    labels = {"alertname": "Cached", "instance": "h:9100", "severity": "warning"}
    first, again = fingerprint(labels), fingerprint(dict(labels))
    reordered = fingerprint(dict(reversed(list(labels.items()))))  # another cache entry, the same answer
    assert first == again == reordered == compute(labels) == fingerprint(MappingProxyType(labels))
    assert fingerprint({**labels, "severity": "critical"}) == compute({**labels, "severity": "critical"}) != first
