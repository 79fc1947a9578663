#!/bin/sh
# Makes this machine ready to build and test Berth: installs what is missing (as root) and
# starts a Docker engine when nothing answers on the socket. Safe to run again and again.
set -eu
socket=${BERTH_DOCKER_SOCKET:-/var/run/docker.sock}
log=${BERTH_DOCKERD_LOG:-/tmp/berth-dockerd.log}

missing=""
pkg-config --exists libcurl 2>/dev/null || missing="$missing libcurl4-openssl-dev"
pkg-config --exists libxml-2.0 2>/dev/null || missing="$missing libxml2-dev"
pkg-config --exists libsodium 2>/dev/null || missing="$missing libsodium-dev"
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v busybox >/dev/null 2>&1 || missing="$missing busybox-static"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
# The TLS tests capture loopback traffic to prove nothing crosses it in clear.
command -v tcpdump >/dev/null 2>&1 || missing="$missing tcpdump"
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing packages:$missing; install them (sudo apt-get install$missing) or run as root" >&2
    exit 1
  fi
  echo "==> installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -q $missing >/dev/null
fi

ping_engine() {
  curl -sf --max-time 2 --unix-socket "$socket" http://docker/_ping >/dev/null 2>&1
}

if ping_engine; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: no Docker engine answers on $socket; start it (sudo systemctl start docker) or run as root" >&2
  exit 1
fi
echo "==> starting dockerd (log: $log)"
nohup dockerd >"$log" 2>&1 &
i=0
while ! ping_engine; do
  i=$((i + 1))
  if [ $i -ge 120 ]; then
    echo "error: dockerd did not answer on $socket within 60 s; last lines of $log:" >&2
    tail -n 15 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "==> Docker engine ready on $socket"
