#!/usr/bin/env bash
# The benchmark in one command: installs what it needs (bench/setup.sh), then runs the suite.
# Arguments go to `python -m bench`, e.g.  bench/run.sh --quick   or   bench/run.sh --reps 3 --profile
set -euo pipefail
cd "$(dirname "$0")/.."
bench/setup.sh
exec .venv/bin/python -m bench "$@"
