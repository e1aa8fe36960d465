"""`GET/PUT /enrichment/mode`: the enrichment mode every worker applies (agents/enrich/shared.py keeps it)."""

from __future__ import annotations

from aiohttp import web

from agents.enrich.shared import RedisDown, for_app
from app.settings import ENV_PREFIX
from web import params
from web.api import ApiView, Busy, json_response, read_json
from web.models import ModeIn, ModeOut, NoParams

_PROCESS_ONLY = (
    f"{ENV_PREFIX}REDIS_URL is not set: the mode is this process's alone (other nodes keep theirs, and a restart "
    f"goes back to {ENV_PREFIX}ENRICHMENT_MODE)"
)


class EnrichmentModeView(ApiView):
    async def get(self, request: web.Request) -> web.Response:
        params.read(request, NoParams)  # refuses what no read accepts (NUL, invalid UTF-8)
        modes = for_app(self.app).modes
        mode = await modes.refresh()
        return self._answer(ModeOut(mode=mode, scope="cluster" if modes.shared else "process"))

    async def put(self, request: web.Request) -> web.Response:
        body, _ = await read_json(request, ModeIn)
        modes = for_app(self.app).modes
        try:
            await modes.set(body.mode)
        except RedisDown as exc:
            raise Busy(503, f"mode: not changed: {exc}", retry_after_s=5) from None
        if modes.shared:
            return self._answer(ModeOut(mode=body.mode, scope="cluster"))
        return self._answer(ModeOut(mode=body.mode, scope="process", note=_PROCESS_ONLY))

    def _answer(self, out: ModeOut) -> web.Response:
        return json_response(out.model_dump(mode="json", exclude_none=True))
