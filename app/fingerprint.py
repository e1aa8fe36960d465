"""Alertmanager's alert fingerprint, bit for bit.

prometheus/common `model.LabelSet.Fingerprint`: FNV-1a 64 over the label names in sorted
order, each name and value followed by the 0xFF separator byte, printed as `%016x`.
"""

from collections.abc import Mapping
from functools import lru_cache

import orjson

_OFFSET64 = 14695981039346656037
_PRIME64 = 1099511628211
_MASK64 = (1 << 64) - 1
_SEP = 0xFF
# Label sets remembered: every decoded alert's fingerprint is computed (to check a given one), and the
# same live alerts recur all day; a few hundred bytes each.
CACHED_LABEL_SETS = 1 << 16


def _fnv1a(h: int, data: bytes) -> int:
    for byte in data:
        h = ((h ^ byte) * _PRIME64) & _MASK64
    return h


def compute(labels: Mapping[str, str]) -> str:
    """The fingerprint, computed (pure Python, a multiply per byte)."""
    h = _OFFSET64
    for name in sorted(labels):
        h = _fnv1a(h, name.encode())
        h = ((h ^ _SEP) * _PRIME64) & _MASK64
        h = _fnv1a(h, labels[name].encode())
        h = ((h ^ _SEP) * _PRIME64) & _MASK64
    return f"{h:016x}"


@lru_cache(maxsize=CACHED_LABEL_SETS)
def _of_json(labels_json: bytes) -> str:
    return compute(orjson.loads(labels_json))


def fingerprint(labels: Mapping[str, str]) -> str:
    """The fingerprint of a label set, cached by the set's JSON (the same labels in another order are
    another entry, with the same fingerprint)."""
    if type(labels) is not dict:
        return compute(labels)
    return _of_json(orjson.dumps(labels))
