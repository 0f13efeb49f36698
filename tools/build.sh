#!/usr/bin/env bash
# Configures and builds popgate into ./build (or $POPGATE_BUILD_DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${POPGATE_BUILD_DIR:-$root/build}
"$root/tools/install-build-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${POPGATE_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
ninja -C "$build" "$@"
