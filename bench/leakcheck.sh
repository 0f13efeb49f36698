#!/bin/bash
# bench/leakcheck.sh: many mixed sessions against the sanitizer build of
# popgate -D, then a SIGTERM drain; fails on any leaked memory or fd.
#
#   sudo bench/leakcheck.sh [--build=build-asan] [--sessions=100000]
#        [--mode=pool|fork|both] [--chunk=20s]
#   env POPGATE=/path/to/popgate FLOOD=/path/to/popgate-flood override the build.
#
# The build must be configured with -DPOPGATE_SANITIZE=ON (ASan + UBSan +
# LeakSanitizer; see README.md). Per mode:
#  1. Set-up as tests/e2e/popgate_harness.py does it, in a temp dir removed on
#     exit: a throwaway system user (useradd --system, userdel at the end), a
#     Debian-style spool (root:mail 2775, mbox user:mail 0660), a passwd-file
#     with a {SHA512-CRYPT} hash, --state_dir. Pool workers run as nobody:mail.
#  2. The daemon starts with ASAN_OPTIONS log_path into the temp dir, so a
#     report from any process of the tree (master, auth process, workers,
#     sessions) lands in a file there instead of in the void.
#  3. A short warm-up flood, then the fd count of the master and of each
#     pool child (/proc/PID/fd) is taken.
#  4. popgate-flood runs the mix poll:8,download:4,guess:2,junk:2 in chunks of
#     --chunk until --sessions sessions have finished (summed from its JSON).
#     Wrong passwords neither delay nor lock out (--auth_fail_delay=0,
#     --auth_lockout_failures=0), so the guessers keep cycling.
#  5. Once every session has ended, the fd counts are taken again; then
#     SIGTERM, and the master must exit 0 within 60 s.
# Passes when every fd count is unchanged, the master exited 0 and no
# sanitizer report was written. Prints one line per mode.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=build-asan
SESSIONS=100000
MODES=pool
CHUNK=20s
for arg in "$@"; do
  case $arg in
    --build=*) BUILD=${arg#*=} ;;
    --sessions=*) SESSIONS=${arg#*=} ;;
    --mode=both) MODES="pool fork" ;;
    --mode=pool|--mode=fork) MODES=${arg#*=} ;;
    --chunk=*) CHUNK=${arg#*=} ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "needs root (useradd, setuid sessions)" >&2; exit 2; }
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
POPGATE=${POPGATE:-$BUILD/net/popgate}
FLOOD=${FLOOD:-$BUILD/tools/popgate-flood}
[[ -x $POPGATE && -x $FLOOD ]] || {
  echo "build popgate and popgate-flood in $BUILD first" >&2; exit 2; }
grep -q __asan_init "$POPGATE" ||
  { echo "$POPGATE is not a sanitizer build (-DPOPGATE_SANITIZE=ON)" >&2; exit 2; }

ROOT=$(mktemp -d /tmp/popgate-leak-XXXXXX)
chmod 755 "$ROOT"
USER_NAME=pgl$(openssl rand -hex 4)
PASSWORD=$(openssl rand -hex 8)
DAEMON_PID=
cleanup() {
  if [[ -n $DAEMON_PID ]]; then
    kill -KILL -- "-$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  userdel "$USER_NAME" 2>/dev/null || true
  rm -rf "$ROOT"
}
trap cleanup EXIT

for _ in $(seq 40); do  # the passwd lock may be held by parallel suites
  useradd --system --no-create-home --user-group --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$USER_NAME" 2>/dev/null && break
  sleep 0.25
done
USER_UID=$(id -u "$USER_NAME"); USER_GID=$(id -g "$USER_NAME")

mkdir "$ROOT/spool"
chown root:mail "$ROOT/spool"; chmod 2775 "$ROOT/spool"
MBOX=$ROOT/spool/$USER_NAME
for n in $(seq 20); do
  printf 'From sender@example.org Thu Nov 26 10:00:%02d 2026\n' "$n"
  printf 'From: sender@example.org\nTo: %s@example.net\nSubject: leakcheck %d\n\n' "$USER_NAME" "$n"
  for _ in $(seq 30); do echo "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod"; done
  echo
done >"$MBOX"
chown "$USER_NAME:mail" "$MBOX"; chmod 660 "$MBOX"; touch -d '1 hour ago' "$MBOX"
HASH=$(openssl passwd -6 "$PASSWORD")
printf '%s:{SHA512-CRYPT}%s:%s:%s::/nonexistent:\n' "$USER_NAME" "$HASH" "$USER_UID" "$USER_GID" >"$ROOT/passwd"
chmod 600 "$ROOT/passwd"

# "PID:COUNT ..." for the master and its live children (pool: auth process
# and workers; fork: sessions, of which there must be none when this runs).
fd_counts() {
  local p out=""
  for p in "$DAEMON_PID" $(cat /proc/"$DAEMON_PID"/task/*/children 2>/dev/null); do
    out+="$p:$(ls /proc/"$p"/fd 2>/dev/null | wc -l) "
  done
  echo "${out% }"
}

# Waits (bounded) until the daemon holds no session: fork mode, no session
# children; pool mode, the fd counts stop changing.
wait_idle() {
  local prev="" cur
  for _ in $(seq 100); do
    cur=$(fd_counts)
    [[ $cur == "$prev" ]] && return 0
    prev=$cur
    sleep 0.5
  done
}

# Sessions finished in one flood JSON report (all scenarios); the report is
# kept in $ROOT/reports for the per-scenario totals.
finished() {
  tee -a "$ROOT/reports" |
    python3 -c 'import json,sys; print(sum(s["finished"] for s in json.load(sys.stdin)["scenarios"]))'
}

# "poll 123 download 45 ..." summed over the kept reports.
mix() {
  python3 - "$ROOT/reports" <<'PY'
import collections, json, sys
total = collections.Counter()
for line in open(sys.argv[1]):
    if line.strip():
        for s in json.loads(line)["scenarios"]:
            total[s["name"]] += s["finished"]
print(" ".join(f"{k} {v}" for k, v in total.items()))
PY
}

flood() {
  "$FLOOD" --target=127.0.0.1:"$PORT" --user="$USER_NAME" --pass="$PASSWORD" \
    --scenario=poll:8,download:4,guess:2,junk:2 --retr=3 --junk-bytes=4096 \
    --threads=1 --progress=off --json --duration="$1"
}

status=0
for MODE in $MODES; do
  rm -rf "$ROOT/state" "$ROOT/asan" "$ROOT/reports"
  mkdir "$ROOT/state" "$ROOT/asan"
  chmod 755 "$ROOT/state"; chmod 1777 "$ROOT/asan"
  mode_args=(--mode="$MODE")
  if [[ $MODE == pool ]]; then
    chown nobody:mail "$ROOT/state"; chmod 750 "$ROOT/state"
    mode_args+=(--workers=2 --pool_user=nobody --pool_group=mail
                --auth_lockout_failures=0)
  fi
  # setsid: the daemon's process group is its pid (cleanup kills it whole).
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$ROOT/asan/report" \
  UBSAN_OPTIONS="print_stacktrace=1:log_path=$ROOT/asan/report" \
  setsid "$POPGATE" -D --foreground --log=stderr --listen=127.0.0.1:0 \
    --auth=passwd-file:"$ROOT/passwd" --mail=mbox:"$ROOT/spool/%u" \
    --state_dir="$ROOT/state" --min_session_slot=0 --max_sessions=1000 \
    --max_sessions_per_source=1000 --auth_fail_delay=0 \
    --drain_timeout=30s "${mode_args[@]}" 2>"$ROOT/popgate.stderr" &
  DAEMON_PID=$!
  PORT=
  for _ in $(seq 150); do
    PORT=$(sed -n 's/.*listening on \[\{0,1\}127[.0-9]*\]\{0,1\}:\([0-9]*\).*/\1/p' "$ROOT/popgate.stderr" | head -1)
    [[ -n $PORT ]] && break
    sleep 0.1
  done
  [[ -n $PORT ]] || { cat "$ROOT/popgate.stderr" >&2; exit 1; }
  sleep 1  # pool: let the auth process and the workers come up

  done_sessions=$(flood 2s | finished)
  wait_idle
  before=$(fd_counts)
  start=$SECONDS
  while ((done_sessions < SESSIONS)); do
    n=$(flood "$CHUNK" | finished)
    ((n > 0)) || { echo "$MODE: no session finished in $CHUNK" >&2; status=1; break; }
    done_sessions=$((done_sessions + n))
  done
  elapsed=$((SECONDS - start))
  wait_idle
  after=$(fd_counts)

  kill -TERM "$DAEMON_PID"
  rc=timeout
  for _ in $(seq 600); do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
      wait "$DAEMON_PID" && rc=0 || rc=$?
      break
    fi
    sleep 0.1
  done
  [[ $rc == timeout ]] && kill -KILL -- "-$DAEMON_PID" 2>/dev/null
  DAEMON_PID=
  sleep 0.5  # children finishing their own exit after the master
  reports=$(find "$ROOT/asan" -type f | wc -l)
  verdict=PASS
  [[ $before == "$after" && $rc == 0 && $reports == 0 ]] || { verdict=FAIL; status=1; }
  echo "$MODE: $verdict: $done_sessions sessions in ${elapsed}s ($(mix)); fds before [$before] after [$after]; exit $rc; sanitizer reports $reports"
  if ((reports > 0)); then
    for f in "$ROOT"/asan/*; do echo "== $f"; head -60 "$f"; done >&2
  fi
  if [[ $verdict == FAIL ]]; then tail -20 "$ROOT/popgate.stderr" >&2; fi
done
exit $status
