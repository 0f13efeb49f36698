#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz/*_fuzzer.cc) for a chosen time.
#
#   tools/fuzz.sh [--seconds=600] [--jobs=1] [--build-jobs=N] [fuzzer-name ...]
#
# Builds the targets with clang-14, -DPOPGATE_FUZZ=ON (libFuzzer + ASan +
# UBSan) into ./build-fuzz (or $POPGATE_FUZZ_BUILD_DIR); the libraries get
# coverage instrumentation too, or libFuzzer would only see the harness. Each
# target starts from a copy of its seed corpus (tests/fuzz/corpus/<name>/, and
# tests/fuzz/<name>.dict if present), so the checked-in seeds only change
# when you copy a finding there on purpose. Crashes land in
# build-fuzz/findings/<name>/ (crash-*, leak-*, timeout-*, oom-*): minimise with
#   build-fuzz/tests/fuzz/<name>_fuzzer -minimize_crash=1 -runs=10000 <file>
# and add it to the seed corpus as regress-<what>; CTest replays every seed
# under the normal build. Run it under `nice -n 19` on a shared machine.
# Exit status: 1 if any target found something.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${POPGATE_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=600
jobs=1
build_jobs=$(nproc)
targets=()
for arg in "$@"; do
  case "$arg" in
    --seconds=*) seconds=${arg#*=} ;;
    --jobs=*) jobs=${arg#*=} ;;
    --build-jobs=*) build_jobs=${arg#*=} ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown flag $arg" >&2; exit 2 ;;
    *) targets+=("$arg") ;;
  esac
done

# clang-14 is Debian 12's clang; libFuzzer and the sanitizer runtimes are in
# libclang-rt-14-dev, which clang-14 only recommends.
"$root/tools/install-build-deps.sh" clang-14 libclang-rt-14-dev

if [ ${#targets[@]} -eq 0 ]; then
  for src in "$root"/tests/fuzz/*_fuzzer.cc; do
    name=$(basename "$src" .cc)
    targets+=("${name%_fuzzer}")
  done
fi
for name in "${targets[@]}"; do
  if [ ! -f "$root/tests/fuzz/${name}_fuzzer.cc" ]; then
    echo "no fuzz target tests/fuzz/${name}_fuzzer.cc" >&2
    exit 2
  fi
done

# POPGATE_SANITIZE puts ASan + UBSan on every library; fuzzer-no-link adds
# the coverage callbacks libFuzzer steers by. UBSan findings must abort, or
# libFuzzer would print them and carry on.
flags="-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined"
CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOPGATE_FUZZ=ON -DPOPGATE_SANITIZE=ON \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" >/dev/null
ninja -C "$build" -j"$build_jobs" "${targets[@]/%/_fuzzer}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for name in "${targets[@]}"; do
  work="$build/corpus/$name"
  findings="$build/findings/$name"
  log="$build/findings/$name.log"
  mkdir -p "$work" "$findings"
  cp -n "$root/tests/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
  extra=()
  [ -f "$root/tests/fuzz/$name.dict" ] && extra+=("-dict=$root/tests/fuzz/$name.dict")
  # With -jobs libFuzzer forks workers that log to fuzz-N.log in the working
  # directory, so they run from their own folder.
  if [ "$jobs" -gt 1 ]; then
    extra+=("-jobs=$jobs" "-workers=$jobs")
  fi
  mkdir -p "$build/logs/$name"
  echo "== $name: ${seconds}s x $jobs job(s)"
  before=$(ls "$findings" | wc -l)
  start=$(date +%s)
  TIMEFORMAT='%U %S'
  if ! { time (cd "$build/logs/$name" &&
        "$build/tests/fuzz/${name}_fuzzer" "$work" "${extra[@]}" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$findings/" -print_final_stats=1 \
        >"$log" 2>&1); } 2>"$build/logs/$name/cpu"; then
    status=1
  fi
  [ "$jobs" -gt 1 ] && cat "$build/logs/$name"/fuzz-*.log >>"$log" 2>/dev/null
  after=$(ls "$findings" | wc -l)
  [ "$after" -gt "$before" ] && status=1
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" |
    sed "s/^/   /" || true
  grep -E '^SUMMARY:|^==[0-9]+==ERROR' "$log" | sort -u | sed "s/^/   /" || true
  cpu=$(awk '{ printf "%.0f", $1 + $2 }' "$build/logs/$name/cpu" 2>/dev/null || echo "?")
  echo "   wall $(( $(date +%s) - start ))s, cpu ${cpu}s," \
       "corpus $(ls "$work" | wc -l) inputs, findings: $after (new $((after - before)))"
done
exit $status
