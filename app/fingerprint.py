"""Alertmanager's alert fingerprint, bit for bit.

prometheus/common `model.LabelSet.Fingerprint`: FNV-1a 64 over the label names in sorted
order, each name and value followed by the 0xFF separator byte, printed as `%016x`.
"""

from collections.abc import Mapping

_OFFSET64 = 14695981039346656037
_PRIME64 = 1099511628211
_MASK64 = (1 << 64) - 1
_SEP = 0xFF


def _fnv1a(h: int, data: bytes) -> int:
    for byte in data:
        h = ((h ^ byte) * _PRIME64) & _MASK64
    return h


def fingerprint(labels: Mapping[str, str]) -> str:
    h = _OFFSET64
    for name in sorted(labels):
        h = _fnv1a(h, name.encode())
        h = ((h ^ _SEP) * _PRIME64) & _MASK64
        h = _fnv1a(h, labels[name].encode())
        h = ((h ^ _SEP) * _PRIME64) & _MASK64
    return f"{h:016x}"
