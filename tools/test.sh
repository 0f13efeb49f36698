#!/usr/bin/env bash
# Builds popgate and runs the whole test suite (unit, fuzz-corpus replay and
# end-to-end with real clients), printing CTest's summary. Installs what is
# missing first (build packages, test clients, Debian's popa3d for the
# differential test). Needs root for the end-to-end suites (users, spool
# ownership, privilege drop); as a normal user those skip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${POPGATE_BUILD_DIR:-$root/build}

"$root/tools/install-build-deps.sh"
if [[ $(id -u) -eq 0 ]]; then
  "$root/tools/test-setup.sh"
fi
"$root/tools/build.sh"
cd "$build"
ctest --output-on-failure --timeout 600 -j"$(nproc)" "$@"
