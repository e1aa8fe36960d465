"""The churn phase (`--churn N`, not in the default run): N distinct fingerprints through one worker, its RSS and
table with all of them live, then after they have expired (the same group and state restarted with 1 s windows)."""

from __future__ import annotations

import time
from pathlib import Path

from app.bench.load import distinct, produce
from app.bench.measure import poll, poll_metric, stored
from app.bench.proc import Proc, du_mb, rss_mb
from app.bench.run import Run
from app.services import free_port
from app.settings import ENV_PREFIX


async def churn(r: Run) -> None:
    n = r.args.churn
    if not n:
        return
    assert r.worker is not None
    r.worker.stop()  # alone on the machine, like the e2e worker was
    topic = await r.side_topic("churn")
    await produce(r.ep, topic, distinct(n, topic), n)
    env = {**r.env, f"{ENV_PREFIX}TOPIC": topic, f"{ENV_PREFIX}APP_ID": f"{topic}-group",
           f"{ENV_PREFIX}DATA_DIR": str(r.workdir / "state-churn")}  # fmt: skip
    await _live(r, topic, env, n)
    await _expired(r, env, n)


async def _live(r: Run, topic: str, env: dict[str, str], n: int) -> None:
    port = free_port()
    worker = Proc("app.cli", {**env, f"{ENV_PREFIX}WEB_PORT": str(port)}, r.workdir / "worker-churn.log")
    try:
        await poll(stored(r.db, topic), n, "churn", worker, timeout_s=1800)
        # The gauge is refreshed by the expiry timer (every minute with the default windows).
        await poll_metric(port, "alert_history_live_fingerprints", lambda v: v >= n, worker, 120)
        rss, disk = rss_mb(worker.pid), du_mb(_state(env))
    finally:
        worker.stop()
    shown = f"{n:,}"
    r.res.add("churn_rss_live_mb", f"worker RSS, {shown} live fingerprints", rss, "MB", "< 512",
              rss is not None and rss < 512)  # fmt: skip
    r.res.add("churn_disk_live_mb", f"table on disk (RocksDB), {shown} live", disk, "MB", "", None)


async def _expired(r: Run, env: dict[str, str], n: int) -> None:
    port = free_port()
    short = {f"{ENV_PREFIX}DEDUP_WINDOW": "1", f"{ENV_PREFIX}FLAP_WINDOW": "1", f"{ENV_PREFIX}WEB_PORT": str(port)}
    worker = Proc("app.cli", {**env, **short}, r.workdir / "worker-churn-expiry.log")
    started = time.monotonic()
    try:
        expired = await poll_metric(port, "alert_history_state_expired_total", lambda v: v >= n, worker, 600)
        expiry_s = time.monotonic() - started
        live = await poll_metric(port, "alert_history_live_fingerprints", lambda v: v == 0, worker, 60)
        rss, disk = rss_mb(worker.pid), du_mb(_state(env))
    finally:
        worker.stop()
    r.res.add("churn_expired", "states expired after the windows passed", expired, "", f"{n:,}", expired == n)
    r.res.add("churn_expiry_s", "restart → all expired", expiry_s, "s", "", None)
    r.res.add("churn_live_after", "live fingerprints after expiry", live, "", "0", live == 0)
    r.res.add("churn_rss_after_mb", "worker RSS after expiry", rss, "MB", "", None)
    r.res.add("churn_disk_after_mb", "table on disk after expiry", disk, "MB", "", None)


def _state(env: dict[str, str]) -> Path:
    return Path(env[f"{ENV_PREFIX}DATA_DIR"])
