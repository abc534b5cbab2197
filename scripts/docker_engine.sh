#!/usr/bin/env bash
# Start a local Docker engine for `make images` and the container tests (idempotent).
#
# The engine is Debian's docker.io (the daemon; /usr/local/bin/docker may be a client only),
# started without a bridge network or iptables rules: every container runs with --network host
# and binds 127.0.0.1, so no private-address network ever exists. debootstrap comes along for
# scripts/base_image.sh (a base image built with no registry).
#
#   scripts/docker_engine.sh            # install if missing, start if not running, wait for it
#   DOCKER_ENGINE_LOG=/tmp/dockerd.log  # where dockerd logs (default below)
set -euo pipefail

LOG=${DOCKER_ENGINE_LOG:-/var/log/portfolio-os-dockerd.log}
PIDFILE=${DOCKER_ENGINE_PIDFILE:-/var/run/portfolio-os-dockerd.pid}
WAIT_S=${DOCKER_ENGINE_WAIT_S:-60}
HOWTO="install Docker Engine (Debian: 'apt-get install docker.io' as root, then 'dockerd --bridge=none --iptables=false --ip-masq=false &'), or point DOCKER_HOST at a running engine"

die() { echo "docker_engine.sh: $*" >&2; exit 1; }

# An engine that already answers (ours, the host's, or DOCKER_HOST's) is used as it is.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "no Docker engine and no root apt-get to install one: $HOWTO"
  fi
  echo "docker_engine.sh: installing docker.io and debootstrap with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io debootstrap >/dev/null
fi

[[ $(id -u) -eq 0 ]] || die "dockerd needs root to start: $HOWTO"

running_pid() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if ! running_pid; then
  # dockerd writes its own pid file; ours is separate so a stale one of the distro's never stops us.
  DOCKERD=$(command -v dockerd)
  mkdir -p "$(dirname "$LOG")"
  setsid "$DOCKERD" --bridge=none --iptables=false --ip-masq=false \
    >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
fi

# The Debian client (/usr/bin/docker) talks to its own daemon; either client works once it answers.
for _ in $(seq "$WAIT_S"); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  running_pid || die "dockerd exited; last lines of $LOG:
$(tail -n 20 "$LOG")"
  sleep 1
done
die "dockerd did not answer within ${WAIT_S}s; last lines of $LOG:
$(tail -n 20 "$LOG")"
