"""Debian's Chromium, headless, driven by Playwright (never Playwright's own browser download), for dashboard tests."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, Request, Response, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
VIEWPORT = {"width": 1440, "height": 900}


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: Debian's chromium (scripts/bootstrap.sh installs it)"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Tab:
    """A page with what it logged and asked for."""

    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)

    def console_errors(self, allowed: Sequence[str] = ()) -> list[str]:
        return [e for e in self.errors if not any(re.search(a, e) for a in allowed)]

    async def json_of(self, path: str) -> Any:
        """The body of the page's last response to `path` (the endpoint, without its query)."""
        found = [r for r in self.responses if r.url.split("?")[0].endswith(path) and r.status == 200]
        assert found, f"the page asked nothing of {path}"
        return await found[-1].json()

    async def views(self) -> int:
        return int(await self.page.evaluate("() => window.__dashboard ? window.__dashboard.views : 0"))

    async def wait_view(self, number: int, timeout_ms: float = 20_000) -> None:
        """Until the page has finished its `number`-th view (the page's own counter: no script is evaluated
        under its CSP)."""
        await self.page.wait_for_selector(f'body[data-views="{number}"]', state="attached", timeout=timeout_ms)


@asynccontextmanager
async def tab(browser: Browser, url: str) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    t = Tab(page)
    page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: t.errors.append(f"uncaught: {e}"))
    page.on("request", lambda r: t.requests.append(r))
    page.on("response", lambda r: t.responses.append(r))
    try:
        await page.goto(url)
        yield t
    finally:
        await context.close()


async def pixels(browser: Browser, png: bytes) -> dict[str, Any]:
    """How much of a screenshot differs from its top-left pixel's colour, and how many colours it has."""
    page = await browser.new_page()
    try:
        return await page.evaluate(  # type: ignore[no-any-return]
            """async (b64) => {
                const img = new Image();
                img.src = "data:image/png;base64," + b64;
                await img.decode();
                const canvas = document.createElement("canvas");
                canvas.width = img.width; canvas.height = img.height;
                const ctx = canvas.getContext("2d");
                ctx.drawImage(img, 0, 0);
                const d = ctx.getImageData(0, 0, img.width, img.height).data;
                let differ = 0, seen = 0;
                const colours = new Set();
                for (let i = 0; i < d.length; i += 4 * 5) {
                    seen++;
                    if (Math.abs(d[i] - d[0]) + Math.abs(d[i + 1] - d[1]) + Math.abs(d[i + 2] - d[2]) > 40) differ++;
                    colours.add(((d[i] >> 4) << 8) | ((d[i + 1] >> 4) << 4) | (d[i + 2] >> 4));
                }
                return {width: img.width, height: img.height, differ: differ / seen, colours: colours.size};
            }""",
            base64.b64encode(png).decode(),
        )
    finally:
        await page.close()


async def screenshot(browser: Browser, page: Page, path: Path) -> dict[str, Any]:
    """Save a screenshot of the whole page and fail if it is blank (one colour, or next to nothing drawn)."""
    png = await page.screenshot(full_page=True)
    await asyncio.to_thread(path.write_bytes, png)
    seen = await pixels(browser, png)
    assert seen["differ"] > 0.01 and seen["colours"] > 24, f"{path.name} looks blank: {seen}"
    return seen
