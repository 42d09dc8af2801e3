#!/usr/bin/env bash
# Regenerate requirements.lock, the pinned dependencies the images install in their own cached layer: the
# exact versions `pip install .` resolves today, frozen from a clean virtualenv. Run it after changing the
# dependencies in pyproject.toml (the image build's `pip check` fails on a stale lock).
#   scripts/update-lock.sh            # uses python3; PYTHON=python3.11 to choose
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Install from a copy, so that no build/ or *.egg-info lands in the work tree.
mkdir "$work/src"
cp -r "$repo/pyproject.toml" "$repo/services" "$work/src/"
if [[ -f "$repo/README.md" ]]; then cp "$repo/README.md" "$work/src/"; fi
"${PYTHON:-python3}" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "$work/src"

{
  echo "# Pinned runtime dependencies of salad, installed by the Dockerfiles: scripts/update-lock.sh writes it."
  "$work/venv/bin/pip" freeze --all --exclude-editable --disable-pip-version-check \
    | grep -v -E '^(salad|pip|setuptools|wheel)(==| @)' | LC_ALL=C sort --ignore-case
} > "$repo/requirements.lock"
echo "requirements.lock: $(grep -vc '^#' "$repo/requirements.lock") packages"
