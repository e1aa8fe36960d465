"""A local OpenAI-compatible chat-completions server answering `classify_alert` tool calls: the bench's LLM (answering
in a set time) and the tests' (which also make it fail on purpose, by the alert's name, and read what it was sent).

Behaviour by the alertname's prefix: `LLMSlow` answers after 30 s, `LLM500` is a 500, `LLM429` a 429, `LLMMalformed`
is not JSON, `LLMOutOfSchema` a tool call outside the schema; anything else a valid answer whose severity is the
`llm_severity` label (default warning).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

SLOW_S = 30.0


class FakeLLM:
    def __init__(self, answer_after_s: float = 0.0) -> None:
        self.answer_after_s = answer_after_s
        self.requests: list[dict[str, Any]] = []  # each request's body
        self.authorization: list[str | None] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()  # a slow answer still pending does not hold stop() up

    def alerts(self) -> list[dict[str, Any]]:
        """The alert of each request, as the prompt gave it."""
        return [orjson.loads(r["messages"][-1]["content"]) for r in self.requests]

    def asked_about(self, label: str, value: str) -> int:
        return sum(a["labels"].get(label) == value for a in self.alerts())

    async def start(self, port: int) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.json(loads=orjson.loads)
        self.requests.append(body)
        self.authorization.append(request.headers.get("Authorization"))
        alert = orjson.loads(body["messages"][-1]["content"])
        name = alert["labels"].get("alertname", "")
        if self.answer_after_s:
            await asyncio.sleep(self.answer_after_s)
        if name.startswith("LLMSlow"):
            try:
                await asyncio.wait_for(self._stopping.wait(), SLOW_S)
            except TimeoutError:
                pass
        if name.startswith("LLM500"):
            return web.json_response({"error": "overloaded"}, status=500)
        if name.startswith("LLM429"):
            return web.json_response({"error": "rate limited"}, status=429)
        if name.startswith("LLMMalformed"):
            return web.Response(text='{"choices": [{"message": ', content_type="application/json")
        arguments = {
            "category": "llm-" + name.lower()[:40],
            "severity": alert["labels"].get("llm_severity", "warning"),
            "confidence": 0.9,
            "reasoning": f"{name} looks like something to look at",
            "recommendations": [f"look at {name}"],
        }
        if name.startswith("LLMOutOfSchema"):
            arguments["severity"] = "apocalyptic"
        call = {"id": "call_1", "type": "function",
                "function": {"name": "classify_alert", "arguments": orjson.dumps(arguments).decode()}}  # fmt: skip
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "finish_reason": "tool_calls", "message": message}
        return web.json_response(
            {"id": "chatcmpl-1", "object": "chat.completion", "model": body.get("model"), "choices": [choice]}
        )
