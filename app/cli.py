"""`alert-history` command: dev, worker, migrate, bench, and Faust's own commands."""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from app.errors import ConfigError
from app.logs import logging_config
from app.redact import describe, redact
from app.settings import ENV_PREFIX, Settings, load_settings

OUR_COMMANDS = ("dev", "worker", "migrate")
log = logging.getLogger("app.cli")


def _settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        print(f"alert-history: bad setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _require(settings: Settings, *names: str) -> None:
    for name in names:
        if not getattr(settings, name):
            print(
                f"alert-history: {ENV_PREFIX}{name.upper()} must be set (or use `alert-history dev`)",
                file=sys.stderr,
            )
            raise SystemExit(2)


async def prepare(settings: Settings) -> None:
    """Schema and topics, both idempotent and safe to run from several workers at once."""
    from app.migrate import migrate
    from app.topics import ensure_topics

    assert settings.database_url
    await migrate(settings.database_url)
    await ensure_topics(settings)


def _prepare_or_exit(settings: Settings) -> None:
    """Schema and topics, or one redacted line saying what could not be reached (never a traceback that
    could show a URL)."""
    try:
        asyncio.run(prepare(settings))
    except Exception as exc:
        log.critical(
            "could not prepare the database and topics (check %sDATABASE_URL and %sKAFKA_BROKERS): %s",
            ENV_PREFIX,
            ENV_PREFIX,
            describe(exc),
        )
        raise SystemExit(1) from None


def cmd_migrate(_: list[str]) -> int:
    settings = _settings_or_exit()
    _require(settings, "database_url")
    logging.config.dictConfig(logging_config(settings))
    from app.migrate import migrate

    assert settings.database_url is not None  # _require said so
    try:
        applied = asyncio.run(migrate(settings.database_url))
    except Exception as exc:
        log.critical("could not migrate (check %sDATABASE_URL): %s", ENV_PREFIX, describe(exc))
        return 1
    print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
    return 0


def cmd_rules(argv: list[str]) -> int:
    """`rules check FILE`: 0 and a summary, or 2 and the error with its line."""
    parser = argparse.ArgumentParser(prog="alert-history rules", description="the rules file (classification, "
                                     "filters, targets)")  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("check", help="validate a rules file").add_argument("file")
    args = parser.parse_args(argv)
    from app.rules import RulesError, load

    try:
        rules = load(args.file)
    except RulesError as exc:
        print(f"alert-history: rules: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok: {rules.summary()}")
    return 0


def _rules_or_exit(settings: Settings) -> None:
    """A worker does not start on a rules file it cannot use: one line naming the file, the line and the problem."""
    if settings.rules_file:
        from app.rules import RulesError, load

        try:
            load(settings.rules_file)
        except RulesError as exc:
            print(f"alert-history: bad setting: {ENV_PREFIX}RULES_FILE: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


def cmd_worker(argv: list[str]) -> int:
    from web.auth import open_access_warnings

    settings = _settings_or_exit()
    _require(settings, "kafka_brokers", "database_url")
    _rules_or_exit(settings)
    logging.config.dictConfig(logging_config(settings))
    for warning in open_access_warnings(settings):
        log.warning(warning)
    _prepare_or_exit(settings)
    faust_level = {"WARNING": "warn"}.get(settings.log_level, settings.log_level.lower())  # Faust's spelling
    return _faust_main(settings, ["worker", "--loglevel", faust_level, *argv])


def _faust_main(settings: Settings, argv: list[str]) -> int:
    from app.faust_app import create_app

    app = create_app(settings)
    sys.argv = ["alert-history", *argv]
    app.main()
    return 0


def cmd_dev(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="alert-history dev", description="services + worker + web, locally")
    parser.add_argument("--workdir", default=".cache/dev", help="where embedded services keep their data")
    args = parser.parse_args(argv)
    settings = _settings_or_exit()
    from app.services import ServiceStack

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    stack = ServiceStack.from_env(workdir=workdir)
    if not stack.kafka_brokers:  # a fresh embedded broker: table state of an earlier run would not match it
        shutil.rmtree(workdir / "state", ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    worker: subprocess.Popen[bytes] | None = None
    try:
        ep = stack.start()
        print(
            f"kafka: {ep.kafka_brokers}\npostgres: {redact(ep.database_url)}\nredis: {redact(ep.redis_url or 'none')}",
            flush=True,
        )
        env = dict(os.environ)
        env.update(
            {
                f"{ENV_PREFIX}KAFKA_BROKERS": ep.kafka_brokers,
                f"{ENV_PREFIX}DATABASE_URL": ep.database_url,
                f"{ENV_PREFIX}DATA_DIR": str(workdir / "state"),
            }
        )
        if ep.redis_url:
            env[f"{ENV_PREFIX}REDIS_URL"] = ep.redis_url
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env)
        url = f"http://127.0.0.1:{settings.web_port}"
        _wait_ready(url, worker)
        print(f"ready: {url}", flush=True)
        return worker.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if worker is not None:
            _stop(worker)
        stack.stop()


def _wait_ready(url: str, worker: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"alert-history: worker exited with {worker.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"alert-history: {url}/readyz not ready after {timeout_s:.0f}s")


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmd_dlq(argv: list[str]) -> int:
    """`dlq replay`: the notify dead-letter topic re-sent through the publish agent's delivery path."""
    parser = argparse.ArgumentParser(prog="alert-history dlq", description="the notify dead-letter topic")
    actions = parser.add_subparsers(dest="action", required=True)
    replay_args = actions.add_parser("replay", help="re-send dead letters (delivered ones are skipped)")
    replay_args.add_argument("--target", help="only the dead letters of this target (its name in the rules file)")
    replay_args.add_argument("--dry-run", action="store_true", help="count what would be sent; send nothing")
    args = parser.parse_args(argv)
    settings = _settings_or_exit()
    _require(settings, "kafka_brokers", "database_url")
    logging.config.dictConfig(logging_config(settings))
    from agents.publish import replay

    try:
        report = replay.run(settings, args.target, args.dry_run, progress=True)
    except ConfigError as exc:
        print(f"alert-history: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        log.critical("dlq replay failed (check %sDATABASE_URL and %sKAFKA_BROKERS): %s", ENV_PREFIX, ENV_PREFIX,
                     describe(exc))  # fmt: skip
        return 1
    print("\n".join(report.lines(args.dry_run)), flush=True)
    for error in report.errors:
        log.critical("dlq replay stopped: %s", describe(error))
    # Scripts see whether everything went: some failed again (back on the topic) or could not be recorded.
    return 1 if report.errors or (not args.dry_run and report.outcomes.get("dead_lettered")) else 0


def cmd_seed(argv: list[str]) -> int:
    """`seed --events N`: N generated events over the last days, loaded straight into ALERT_HISTORY_DATABASE_URL
    (not through Kafka and the pipeline): for the benchmark, demos, and trying queries at scale."""
    parser = argparse.ArgumentParser(prog="alert-history seed", description="a generated history, loaded straight "
                                     "into PostgreSQL (not through the pipeline)")  # fmt: skip
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30, help="spread evenly over the days before now")
    parser.add_argument("--fingerprints", type=int, default=20_000, help="distinct alerts")
    args = parser.parse_args(argv)
    settings = _settings_or_exit()
    _require(settings, "database_url")
    logging.config.dictConfig(logging_config(settings))
    from app.seed import seed

    assert settings.database_url is not None  # _require said so
    try:
        started = time.monotonic()
        first_id, rebuilt = asyncio.run(seed(settings.database_url, args.events, args.days, args.fingerprints))
    except Exception as exc:
        log.critical("could not seed (check %sDATABASE_URL): %s", ENV_PREFIX, describe(exc))
        return 1
    print(f"seeded {args.events:,} events over {args.days} days in {time.monotonic() - started:.0f} s "
          f"(ids from {first_id + 1}); rebuilt: {', '.join(rebuilt) or 'nothing to rebuild'}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: alert-history {dev,worker,migrate,rules,bench,seed,history,report,dlq} [args] | <faust command>\n\n"
            "  dev      start embedded Kafka/PostgreSQL/Redis (or use ALERT_HISTORY_*), worker and web\n"
            "  worker   run a worker (pipeline agent + web on ALERT_HISTORY_WEB_PORT)\n"
            "  migrate  apply database migrations\n"
            "  rules    `rules check FILE`: validate a rules file (ALERT_HISTORY_RULES_FILE)\n"
            "  bench    run the benchmark\n"
            "  seed     `seed --events N [--days 30]`: a generated history loaded straight into PostgreSQL\n"
            "  dlq      `dlq replay [--target NAME] [--dry-run]`: re-send the notify dead letters\n"
            "  history  stored events through the HTTP API: history [MATCHER…] --since 6h [--json]\n"
            "  report   totals, noisiest and flapping alerts, MTTR: report [MATCHER…] --since 7d [--json]\n"
            "  other    passed to Faust (e.g. `alert-history tables`)"
        )
        return 0
    command, rest = argv[0], argv[1:]
    if command == "dev":
        return cmd_dev(rest)
    if command == "worker":
        return cmd_worker(rest)
    if command == "migrate":
        return cmd_migrate(rest)
    if command == "rules":
        return cmd_rules(rest)
    if command == "dlq":
        return cmd_dlq(rest)
    if command in ("history", "report"):
        from app import cli_history

        return cli_history.cmd_history(rest) if command == "history" else cli_history.cmd_report(rest)
    if command == "seed":
        return cmd_seed(rest)
    if command == "bench":
        from app.bench.cli import main as bench_main

        return bench_main(rest)
    return _faust_main(_settings_or_exit(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
