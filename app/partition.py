"""Which partition a key goes to: Kafka's default partitioner, as the broker's clients compute it.

A fingerprint's messages, table state, events and notifications all sit on the partition of its key.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


def fingerprint_partition(fingerprint: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for this key.

    State is partitioned like this too, so a fingerprint's events must all be read from here.
    """
    return key_partition(fingerprint.encode(), partitions)


@lru_cache(maxsize=1 << 17)  # murmur2 is pure Python; the live fingerprints recur all day
def key_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (Java's and aiokafka's): murmur2 of the key bytes."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
