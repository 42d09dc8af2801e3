#!/usr/bin/env bash
# Debian packages the tests use; installs only what is missing (needs root or sudo).
set -euo pipefail

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

missing=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
command -v promtool >/dev/null || missing+=(prometheus)

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packages start their own services; the tests start throwaway ones instead.
for service in postgresql prometheus; do
    $sudo_cmd service "$service" stop >/dev/null 2>&1 || true
done
