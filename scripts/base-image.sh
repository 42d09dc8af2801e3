#!/usr/bin/env bash
# Build a minimal Debian bookworm image with python3 and python3-venv, for machines that cannot pull the
# default base (an official python slim image) from a registry. The result is passed to the Dockerfiles:
#
#   scripts/base-image.sh                       # builds salad-base:bookworm unless it exists
#   docker build -f Dockerfile.shared --build-arg BASE_IMAGE=salad-base:bookworm ...
#
# Needs root, debootstrap and a Docker engine; fetches packages from the Debian archive only.
# Environment:
#   SALAD_BASE_IMAGE  tag to build (default salad-base:bookworm)
#   DEBIAN_MIRROR     archive to debootstrap from (default http://deb.debian.org/debian)
#   FORCE=1           rebuild even if the tag exists
set -euo pipefail

tag="${SALAD_BASE_IMAGE:-salad-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
docker="${DOCKER:-docker}"

if [[ -z "${FORCE:-}" ]] && "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists (FORCE=1 rebuilds it)"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  echo "debootstrap is missing: apt-get install debootstrap" >&2
  exit 1
fi

rootfs="$(mktemp -d /tmp/salad-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

# minbase: only Essential packages and apt; python3-venv brings ensurepip, which the Dockerfiles' builder
# stage uses to create the virtualenv; ca-certificates lets pip reach PyPI.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" "$mirror"

# Trim what a runtime never reads: package lists and caches, docs, man pages, non-English locales.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'en*' -exec rm -rf {} +
# Same apt sources as the official Debian images, so derived images can still apt-get install.
{
  echo "deb $mirror bookworm main"
  echo "deb $mirror bookworm-updates main"
  echo "deb http://deb.debian.org/debian-security bookworm-security main"
} > "$rootfs"/etc/apt/sources.list

tar --numeric-owner -C "$rootfs" -c . | "$docker" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "salad base: debootstrap bookworm minbase + python3, python3-venv, ca-certificates" \
  - "$tag"
"$docker" image ls "$tag"
