#!/bin/sh
# Builds berth-unit:latest with no registry: a static release build of berth-unit, the few
# system libraries it still needs, busybox-static for /bin/sh and awk, imported as a root
# filesystem through the Engine API (curl over the socket). Prints the image's size.
set -eu
cd "$(dirname "$0")/.."
socket=${BERTH_DOCKER_SOCKET:-/var/run/docker.sock}
image=${BERTH_UNIT_IMAGE:-berth-unit:latest}
repo=${image%:*}
tag=${image##*:}

echo "==> building berth-unit (release, static Swift runtime)"
scripts/release-build.sh --product berth-unit
binary=$(scripts/release-build.sh --show-bin-path)/berth-unit

extra=$(mktemp -d)
tarball=$(mktemp --suffix=.tar)
trap 'rm -rf "$extra" "$tarball"' EXIT
mkdir -p "$extra/bin"
cp "$binary" "$extra/bin/berth-unit"
strip "$extra/bin/berth-unit" 2>/dev/null || true
# glibc and friends: copied from this machine, at the paths the binary asks for.
for lib in $(ldd "$binary" | awk '/=>/ { print $3 } /^\t\/lib/ { print $1 }'); do
  mkdir -p "$extra$(dirname "$lib")"
  cp -L "$lib" "$extra$lib"
done
EXTRA_DIR="$extra" scripts/busybox-rootfs.sh "$tarball"

echo "==> importing $image"
changes='changes=USER%2065534%3A65534&changes=WORKDIR%20%2Fapp&changes=CMD%20%5B%22%2Fbin%2Fberth-unit%22%5D'
answer=$(curl -sS --fail-with-body --max-time 300 --unix-socket "$socket" -X POST \
  -H 'Content-Type: application/x-tar' --data-binary @"$tarball" \
  "http://docker/images/create?fromSrc=-&repo=$repo&tag=$tag&$changes") || {
  echo "error: the engine refused the import: $answer" >&2; exit 1; }
case "$answer" in *'"error"'*) echo "error: the engine refused the import: $answer" >&2; exit 1 ;; esac
size=$(curl -sS --unix-socket "$socket" "http://docker/images/$image/json" | grep -o '"Size":[0-9]*' | head -1 | cut -d: -f2)
echo "==> $image ready: $((size / 1024 / 1024)) MB"
