"""The LLM client against a real local chat-completions server: each way an answer fails is counted by outcome and
gives None (the rules decide); the breaker and the local limits send nothing; prompts are small, sorted, redacted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from prometheus_client import REGISTRY

from agents.enrich import llm as llm_client
from agents.enrich.llm import LLM, Outcome, prompt
from app.bench.llm import FakeLLM
from app.redact import remember
from app.settings import Settings
from tests.fixtures import free_port


@pytest.fixture
async def server() -> AsyncIterator[FakeLLM]:
    s = FakeLLM()
    await s.start(free_port())
    yield s
    await s.stop()


def client(url: str, **settings: object) -> LLM:
    return LLM(Settings(llm_url=url, llm_model="m", **settings))  # type: ignore[arg-type]


def counted(outcome: Outcome) -> float:
    return REGISTRY.get_sample_value("alert_history_llm_requests_total", {"outcome": outcome.value}) or 0.0


@pytest.mark.parametrize(
    ("alertname", "outcome"),
    [
        ("LLM500", Outcome.SERVER_ERROR),
        ("LLM429", Outcome.RATE_LIMITED),
        ("LLMMalformed", Outcome.MALFORMED),
        ("LLMOutOfSchema", Outcome.INVALID),
        ("LLMSlow", Outcome.TIMEOUT),
    ],
)
async def test_each_failure_is_counted_and_leaves_it_to_the_rules(server: FakeLLM, alertname: str, outcome) -> None:  # type: ignore[no-untyped-def]
    llm = client(server.url, llm_timeout=0.5)
    before = counted(outcome)
    try:
        assert await llm.classify("firing", {"alertname": alertname}, {}) is None
    finally:
        await llm.close()
    assert counted(outcome) == before + 1
    assert len(server.requests) == 1


async def test_an_answer_is_the_validated_verdict(server: FakeLLM) -> None:
    llm = client(server.url)
    try:
        verdict = await llm.classify("firing", {"alertname": "Fine", "llm_severity": "info"}, {"summary": "s"})
    finally:
        await llm.close()
    assert verdict is not None and (verdict.category, verdict.severity, verdict.confidence) == ("llm-fine", "info", 0.9)
    (request,) = server.requests
    assert request["model"] == "m" and request["temperature"] == 0
    assert server.alerts() == [{"annotations": {"summary": "s"}, "labels": {"alertname": "Fine", "llm_severity":
                                                                             "info"}, "status": "firing"}]  # fmt: skip


async def test_an_unreachable_llm_is_counted() -> None:
    llm = client(f"http://127.0.0.1:{free_port()}/v1")
    before = counted(Outcome.UNREACHABLE)
    try:
        assert await llm.classify("firing", {"alertname": "A"}, {}) is None
    finally:
        await llm.close()
    assert counted(Outcome.UNREACHABLE) == before + 1


async def test_failures_in_a_row_open_the_breaker_which_sends_nothing(server: FakeLLM) -> None:
    llm = client(server.url)
    before = counted(Outcome.BREAKER_OPEN)
    try:
        for _ in range(llm_client.BREAKER_FAILURES):
            assert await llm.classify("firing", {"alertname": "LLM500"}, {}) is None
        assert await llm.classify("firing", {"alertname": "Fine"}, {}) is None
    finally:
        await llm.close()
    assert counted(Outcome.BREAKER_OPEN) == before + 1
    assert len(server.requests) == llm_client.BREAKER_FAILURES


async def test_past_the_rate_limit_within_the_timeout_nothing_is_sent(server: FakeLLM) -> None:
    llm = client(server.url, llm_rate=0.001, llm_concurrency=1, llm_timeout=0.3)
    before = counted(Outcome.THROTTLED)
    try:
        assert await llm.classify("firing", {"alertname": "First"}, {}) is not None
        assert await llm.classify("firing", {"alertname": "Second"}, {}) is None
    finally:
        await llm.close()
    assert counted(Outcome.THROTTLED) == before + 1
    assert len(server.requests) == 1


def test_prompts_are_sorted_truncated_and_redacted() -> None:
    remember(["hunter2-secret-value"])
    text = prompt("firing", {"z": "1", "a": "x" * 5000}, {"description": "password is hunter2-secret-value"})
    alert = orjson.loads(text)
    assert list(alert) == ["annotations", "labels", "status"] and list(alert["labels"]) == ["a", "z"]
    assert len(alert["labels"]["a"]) == llm_client.MAX_TEXT
    assert "hunter2-secret-value" not in text and alert["annotations"]["description"] == "password is ***"
    assert text == prompt("firing", {"a": "x" * 5000, "z": "1"}, {"description": "password is hunter2-secret-value"})


async def test_credentials_in_the_url_go_in_a_header_and_a_key_wins_over_them(server: FakeLLM) -> None:
    with_user = server.url.replace("http://", "http://llm-user:llm-pass@")
    for settings, expected in (({}, "Basic bGxtLXVzZXI6bGxtLXBhc3M="), ({"llm_api_key": "sk-1234567890"},
                                                                        "Bearer sk-1234567890")):  # fmt: skip
        llm = client(with_user, **settings)
        try:
            assert await llm.classify("firing", {"alertname": "Fine"}, {}) is not None
        finally:
            await llm.close()
        assert server.authorization[-1] == expected
        assert "llm-pass" not in str(llm.url)
