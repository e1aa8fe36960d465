#!/usr/bin/env bash
# Installs what `make dev`/`make test` need on a fresh machine; a no-op (under 2 s) when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA_VERSION=3.9.1
CACHE="${ALERT_HISTORY_CACHE:-$HOME/.cache/alert-history}"
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
# The distribution's CPython where it has one: Debian builds it with PGO and LTO and links libpython
# statically, and the worker runs faster on it than on a plain source build (docs/performance.md).
if [ -z "${PYTHON:-}" ]; then
  for candidate in /usr/bin/python3.11 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import ensurepip, venv' 2>/dev/null; then
      PYTHON="$candidate"
      break
    fi
  done
fi
PYTHON="$(command -v "${PYTHON:-python3}")"

have_pg() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; }

# 1. System packages: PostgreSQL, Redis, kcat, Alertmanager/amtool, Java/Maven for the broker, promtool, Chromium.
missing=()
have_pg || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v kcat >/dev/null || missing+=(kcat)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v promtool >/dev/null || missing+=(prometheus)   # promtool checks deploy/prometheus-rules.yml
command -v chromium >/dev/null || missing+=(chromium)     # the dashboard's test drives it headless
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "bootstrap: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "bootstrap: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the packaged services; we run our own instances on free ports instead.
  $SUDO systemctl disable --now redis-server postgresql prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi

# 2. Python environment, rebuilt only when pyproject.toml or the interpreter changes.
stamp=".venv/.installed-$( (cat pyproject.toml; echo "$PYTHON") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv ($PYTHON)"
  if [ -x .venv/bin/python ] && ! grep -qx "executable = $(readlink -f "$PYTHON")" .venv/pyvenv.cfg 2>/dev/null; then
    rm -rf .venv  # made by another interpreter
  fi
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# 3. Kafka jars from Maven Central: app/services.py's kafka_libs() fetches them (an installed wheel does the
#    same), into a temp dir first so an interrupted fetch is never "done".
if [ ! -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
  .venv/bin/python -c 'from app.services import kafka_libs; kafka_libs()'
fi
