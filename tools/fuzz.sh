#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz/*_fuzzer.cc) for a chosen time.
#
#   tools/fuzz.sh [--seconds=600] [--jobs=1] [fuzzer-name ...]
#
# Builds the targets with clang-14, -DPOPGATE_FUZZ=ON (libFuzzer + ASan +
# UBSan) into ./build-fuzz (or $POPGATE_FUZZ_BUILD_DIR). Each target starts
# from a copy of its seed corpus (tests/fuzz/corpus/<name>/), so the checked-in
# seeds only change when you copy a finding there on purpose. Crashes land in
# build-fuzz/findings/<name>/ (crash-*, leak-*, timeout-*): minimise one with
#   build-fuzz/tests/fuzz/<name>_fuzzer -minimize_crash=1 <file>
# and add it to the seed corpus as a regression input; CTest replays every
# seed under the normal build. Exit status: 1 if any target found something.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${POPGATE_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=600
jobs=1
targets=()
for arg in "$@"; do
  case "$arg" in
    --seconds=*) seconds=${arg#*=} ;;
    --jobs=*) jobs=${arg#*=} ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown flag $arg" >&2; exit 2 ;;
    *) targets+=("$arg") ;;
  esac
done

if ! command -v clang++-14 >/dev/null || ! dpkg -s libclang-rt-14-dev >/dev/null 2>&1; then
  apt-get install -y --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null
fi
"$root/tools/install-build-deps.sh"

if [ ${#targets[@]} -eq 0 ]; then
  for src in "$root"/tests/fuzz/*_fuzzer.cc; do
    name=$(basename "$src" .cc)
    targets+=("${name%_fuzzer}")
  done
fi

CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOPGATE_FUZZ=ON >/dev/null
ninja -C "$build" "${targets[@]/%/_fuzzer}"

status=0
for name in "${targets[@]}"; do
  work="$build/corpus/$name"
  findings="$build/findings/$name"
  mkdir -p "$work" "$findings"
  cp -n "$root/tests/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
  echo "== $name: ${seconds}s x $jobs job(s)"
  start=$(date +%s)
  if ! "$build/tests/fuzz/${name}_fuzzer" "$work" \
      -max_total_time="$seconds" -jobs="$jobs" -workers="$jobs" \
      -artifact_prefix="$findings/" -print_final_stats=1 \
      >"$build/findings/$name.log" 2>&1; then
    status=1
  fi
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' \
    "$build/findings/$name.log" | sed "s/^/   /" || true
  echo "   wall $(( $(date +%s) - start ))s, corpus $(ls "$work" | wc -l) inputs," \
       "findings: $(ls "$findings" | wc -l)"
done
exit $status
