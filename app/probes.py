"""Is an embedded server answering? One real round trip of its own protocol, not just an open port."""

from __future__ import annotations

import socket


def _kafka_call(port: int, api_key: int, version: int, body: bytes = b"") -> bytes | None:
    """One request of the Kafka protocol; the response after its correlation id, or None if none came."""
    client = b"probe"
    request = api_key.to_bytes(2, "big") + version.to_bytes(2, "big") + (1).to_bytes(4, "big")
    request += len(client).to_bytes(2, "big") + client + body
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(len(request).to_bytes(4, "big") + request)
            size = int.from_bytes(_recv_exactly(s, 4), "big")
            return _recv_exactly(s, size)[4:]
    except OSError:
        return None


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("Kafka closed the connection")
        data += chunk
    return data


def kafka_answers(port: int) -> bool:
    """A real protocol round trip (ApiVersions v0: error code 0), not just an open port."""
    data = _kafka_call(port, 18, 0)
    return data is not None and len(data) >= 2 and int.from_bytes(data[:2], "big") == 0


def kafka_brokers(port: int) -> int:
    """How many brokers the cluster's metadata lists (Metadata v1 for no topic): a broker appears once the
    controllers have registered it, and a topic replicated on three needs all three there."""
    data = _kafka_call(port, 3, 1, (0).to_bytes(4, "big"))
    return int.from_bytes(data[:4], "big", signed=True) if data and len(data) >= 4 else 0


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
