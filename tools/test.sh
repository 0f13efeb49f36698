#!/usr/bin/env bash
# Builds popgate and runs the whole test suite (unit, fuzz-corpus replay and
# end-to-end with real clients), printing CTest's summary. Installs what is
# missing first (build packages, test clients, Debian's popa3d for the
# differential test). Needs root for the end-to-end suites (users, spool
# ownership, privilege drop); as a normal user those skip.
#
# Under CI (CI=true) or with POPGATE_SANITIZE_TESTS=1 it then builds a
# second tree with -DPOPGATE_SANITIZE=ON (ASan + UBSan + LeakSanitizer) and
# runs the unit tests, the fuzz-corpus replays and the end-to-end suites in
# POPGATE_SANITIZE_E2E under it. POPGATE_SANITIZE_TESTS=0 skips that stage.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${POPGATE_BUILD_DIR:-$root/build}
sanitize=${POPGATE_SANITIZE_TESTS:-}
[[ -z $sanitize && ${CI:-} == true ]] && sanitize=1

"$root/tools/install-build-deps.sh"
if [[ $(id -u) -eq 0 ]]; then
  "$root/tools/test-setup.sh"
fi
"$root/tools/build.sh"
cd "$build"
ctest --output-on-failure --timeout 600 -j"$(nproc)" "$@"
[[ $sanitize == 1 ]] || exit 0

# The sanitizer stage, kept to what finds memory errors for its compile
# time (CI must stay well under 20 minutes on 2 cores): -O0 compiles
# fastest; the daemon (driven by the poplib and pool suites below, so the
# master, workers, auth process and sessions all run instrumented), the
# fuzz replays and the unit tests of the parsing modules (core, mailbox,
# limits, auth, config). Left out: net_test (the daemon's own code runs
# under the e2e suites instead), the load generator and the benchmarks.
asan=${POPGATE_ASAN_BUILD_DIR:-$root/build-asan}
cmake -S "$root" -B "$asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O0 -g" -DPOPGATE_SANITIZE=ON >/dev/null
fuzzers=()
for src in "$root"/tests/fuzz/*_fuzzer.cc; do fuzzers+=("$(basename "$src" .cc)"); done
ninja -C "$asan" popgate core_test mailbox_test mailbox_crash_test limits_test \
  auth_test config_test "${fuzzers[@]}"
# Every report goes to a file here, not to stderr: the daemon's session
# processes, pool workers and auth process report from processes no test
# reads the output of (and the harness SIGKILLs some daemons), so a report
# anywhere fails the stage below. The directory is world-writable because
# those processes run as unprivileged users. LeakSanitizer checks every
# process that exits normally: the master at SIGTERM, inetd-mode sessions,
# and the pool workers (net/pool_supervisor.cc). Children that end with _exit
# (the per-session fork, the chrooted pre-auth child) or by the master's
# SIGTERM (the auth process) are not leak-checked; ASan and UBSan errors
# still abort them.
reports=$asan/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
chmod 1777 "$reports"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
asan_options="detect_leaks=1:abort_on_error=1:log_path=$reports/asan"
status=0
# Left out: flood_test (not built, above), and
# FdExhaustionPausesWithoutSpinningAndRecovers, which runs the master with
# every fd in use: UBSan's vptr check probes memory through a pipe(), which
# then fails, and reports a false "invalid vptr".
ASAN_OPTIONS=$asan_options \
  ctest --test-dir "$asan" --output-on-failure --timeout 600 -j"$(nproc)" \
  -L 'unit|fuzz' \
  -E '^(flood_test|MasterTest\.FdExhaustion.*)$' || status=1
if [[ $(id -u) -eq 0 ]]; then
  # A small quarantine (default 256 MiB per process): test_pool bounds the
  # daemon's RSS growth, and freed memory held back for use-after-free
  # detection would count against it.
  e2e=${POPGATE_SANITIZE_E2E:-test_poplib test_pool}
  regex="^e2e\.($(tr ' ' '|' <<<"$e2e"))\$"
  ASAN_OPTIONS=$asan_options:quarantine_size_mb=4 \
    ctest --test-dir "$asan" --output-on-failure --timeout 600 -R "$regex" ||
    status=1
fi
if [[ -n $(ls -A "$reports") ]]; then
  echo "sanitizer reports:" >&2
  for f in "$reports"/*; do echo "== $f" >&2; cat "$f" >&2; done
  status=1
fi
exit $status
