#!/usr/bin/env bash
# Build a Python 3.11 Debian bookworm base image with no container registry (idempotent).
#
# Equivalent of python:3.11-slim-bookworm for machines that cannot pull it: debootstrap's minbase
# (Debian's own mirror) plus python3.11 and python3-venv, imported with `docker import`. The tag is
# a digest of this script, so a changed recipe gives a new tag and an unchanged one is never rebuilt.
#
#   scripts/base_image.sh              # prints the tag (portfolio-os/base:bookworm-<digest>)
#   DEBIAN_MIRROR=http://... scripts/base_image.sh
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HERE=$(cd "$(dirname "$0")" && pwd)
DIGEST=$(sha256sum "$HERE/base_image.sh" | cut -c1-12)
TAG=${BASE_IMAGE_TAG:-portfolio-os/base:bookworm-$DIGEST}

die() { echo "base_image.sh: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers: run scripts/docker_engine.sh (root), or set DOCKER_HOST"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing: apt-get install debootstrap (scripts/docker_engine.sh installs it)"
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root"

ROOT=$(mktemp -d /tmp/portfolio-os-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
echo "base_image.sh: debootstrap bookworm into $ROOT (about 1.5 minutes)" >&2
debootstrap --variant=minbase --include=python3.11,python3-venv bookworm "$ROOT" "$MIRROR" >&2

# Trim what an image never needs: package caches and lists, docs, man pages, locales.
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/log/* \
  "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
  "$ROOT"/usr/share/locale/* "$ROOT"/tmp/* "$ROOT"/var/tmp/*

# Same defaults as the official image where it matters (PATH, UTF-8 locale, /bin/sh entry point).
tar --numeric-owner -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "debootstrap minbase bookworm + python3.11 python3-venv (scripts/base_image.sh $DIGEST)" \
  - "$TAG" >&2
echo "$TAG"
