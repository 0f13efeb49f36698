#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages popgate builds with; only
# what is missing, so it is quick and quiet on a machine that has them.
# Extra package names given as arguments are installed the same way
# (tools/fuzz.sh adds clang's).
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  liburing-dev libjemalloc-dev libabsl-dev libssl-dev libcrypt-dev libpam0g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi
