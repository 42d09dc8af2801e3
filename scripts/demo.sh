#!/usr/bin/env bash
# Run salad on a fresh machine: creates .venv, installs salad, then runs `salad demo` (Shared, Master and
# three workers on an embedded PostgreSQL; a salad is ordered, its progress shown, its completion
# time printed, and everything stopped). Extra arguments go to `salad demo`, e.g. --fruits 10 --workers 4.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -r requirements.lock -e .

exec .venv/bin/salad demo "$@"
