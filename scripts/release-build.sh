#!/bin/sh
# The release build, with any further `swift build` arguments (`--product berth-unit`,
# `--show-bin-path`). One set of flags for `make`, `make bench` and the unit image, so they share
# one build and never recompile each other's work.
# - the Swift runtime and Foundation linked in: each process maps less (RSS) and starts sooner, and
#   the binaries need no Swift toolchain on the hosts they are copied to;
# - every function in a section of its own, so the link can put the ones that run together
#   (Package.swift, linkOrder).
set -eu
cd "$(dirname "$0")/.."
exec "${SWIFT:-swift}" build -c release --static-swift-stdlib --disable-local-rpath \
  -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections "$@"
