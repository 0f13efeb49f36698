#!/bin/bash
# bench/retr_throughput.sh: one client downloading a big mbox from popgate -D,
# compared with the loopback copy ceiling measured in the same run.
#
#   sudo bench/retr_throughput.sh [--build=build-perf] [--format=lf|crlf]
#        [--store=mbox|maildir] [--messages=2000] [--kb=100] [--runs=3]
#        [--duration=10s] [--pipeline=1] [--chunk=262144] [--pool] [--no-flood]
#   env POPGATE=/path/to/popgate FLOOD=/path/to/popgate-flood override the build;
#   env POPGATE_ARGS="--sendfile=false" adds daemon flags (to compare paths).
#
# Set-up (as tests/e2e/popgate_harness.py does it), all in a temp dir that is
# removed on exit: a throwaway system user (useradd --system, removed with
# userdel), a Debian-style spool (root:mail 2775, mbox user:mail 0660, mtime an
# hour ago), a passwd-file with a {SHA512-CRYPT} hash, --state_dir.
# The mailbox holds --messages x --kb KB messages of ~76-octet lines, stored
# with LF (--format=lf, what MDAs write) or CR LF (--format=crlf: wire-clean
# messages, no line starting with '.'), in one mbox or (--store=maildir) one
# file each in a Maildir's cur/ (user-owned, 0700; named with ,S= and ,W= as
# Dovecot's deliveries are).
#
# Each run, interleaved so both share the machine's noise:
#   ceiling  bench/compare/copyceiling (g++ -O2, built here): a plain sender
#            write()s a 200 MB POP3-framed stream over loopback TCP to a reader
#            that scans it for the terminator; read() and write() of --chunk
#            octets (the client reads the same); the median of nine transfers.
#   popgate  bench/retr_client.cc (g++ -O2, built here; the same reader as the
#            ceiling's) downloads the whole mailbox repeatedly for --duration
#            (seconds), --pipeline RETRs outstanding; then popgate-flood --scenario=retr-throughput:1 for
#            --duration (skipped with --no-flood). popgate-flood parses replies
#            a byte at a time and is the bottleneck on this path, so the
#            %-of-ceiling figure uses retr_client, and its transfer rate
#            (the RETR phases: the ceiling has no connect, login or QUIT);
#            its whole-session rate is printed beside it.
# Also sampled: the popgate process tree's peak anonymous memory (RssAnon)
# during the download (the window bound, not the message size, should show).
# Prints one line per run and the medians; MB = 10^6 octets.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=build-perf
FORMAT=lf
STORE=mbox
PIPELINE=1
MESSAGES=2000
KB=100
RUNS=3
DURATION=10s
WITH_FLOOD=1
CHUNK=262144
POOL=0
for arg in "$@"; do
  case $arg in
    --build=*) BUILD=${arg#*=} ;;
    --format=*) FORMAT=${arg#*=} ;;
    --store=*) STORE=${arg#*=} ;;
    --pipeline=*) PIPELINE=${arg#*=} ;;
    --messages=*) MESSAGES=${arg#*=} ;;
    --kb=*) KB=${arg#*=} ;;
    --runs=*) RUNS=${arg#*=} ;;
    --duration=*) DURATION=${arg#*=} ;;
    --chunk=*) CHUNK=${arg#*=} ;;
    --pool) POOL=1 ;;
    --no-flood) WITH_FLOOD=0 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done
[[ $FORMAT == lf || $FORMAT == crlf ]] || { echo "--format=lf|crlf" >&2; exit 2; }
[[ $STORE == mbox || $STORE == maildir ]] || { echo "--store=mbox|maildir" >&2; exit 2; }
[[ $PIPELINE =~ ^[0-9]+$ && $PIPELINE -ge 1 ]] || { echo "bad --pipeline" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "needs root (useradd, setuid sessions)" >&2; exit 2; }
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
POPGATE=${POPGATE:-$BUILD/net/popgate}
FLOOD=${FLOOD:-$BUILD/tools/popgate-flood}
[[ -x $FLOOD ]] || FLOOD=$(find "$BUILD/tools" -name popgate-flood -type f | head -1)
[[ -x $POPGATE && -x $FLOOD ]] || {
  echo "build popgate and popgate-flood in $BUILD first" >&2; exit 2; }

ROOT=$(mktemp -d /tmp/popgate-retr-XXXXXX)
chmod 755 "$ROOT"
USER_NAME=pgr$(openssl rand -hex 4)
PASSWORD=$(openssl rand -hex 8)
DAEMON_PID=
cleanup() {
  [[ -n $DAEMON_PID ]] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
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

mkdir "$ROOT/spool" "$ROOT/state"
chown root:mail "$ROOT/spool"; chmod 2775 "$ROOT/spool"; chmod 755 "$ROOT/state"
MBOX=$ROOT/spool/$USER_NAME
MAILDIR=$ROOT/maildir/$USER_NAME
python3 - "$MBOX" "$MESSAGES" "$KB" "$FORMAT" "$USER_NAME" "$STORE" "$MAILDIR" <<'PY'
import os, sys
path, n_msgs, kb, fmt, user = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
store, maildir = sys.argv[6], sys.argv[7]
eol = "\r\n" if fmt == "crlf" else "\n"
if store == "maildir":
    for sub in ("cur", "new", "tmp"):
        os.makedirs(f"{maildir}/{sub}")
words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
with open(path, "w", newline="") as f:
    for n in range(1, n_msgs + 1):
        # The From_ line and the separating blank line are LF (mbox framing);
        # header and body lines use `eol`.
        if store == "mbox":
            f.write(f"From sender{n % 7}@example.org Thu Nov 26 10:{n // 60 % 60:02d}:{n % 60:02d} 2026\n")
        head = [f"Received: from mx{n % 3}.example.org by pop.example.net; Thu, 26 Nov 2026 10:00:00 +0000",
                f"Date: Thu, 26 Nov 2026 10:{n // 60 % 60:02d}:{n % 60:02d} +0000",
                f"From: Sender {n % 7} <sender{n % 7}@example.org>",
                f"To: {user}@example.net",
                f"Message-ID: <{n}.{user}@example.org>",
                f"Subject: popgate bench message {n}", ""]
        lines, total, k = [], 0, 0
        while total < kb * 1024:
            w = " ".join(words[(k + j) % len(words)] for j in range(12))
            line = (f"{k:05d} {n:04d} " + w + " " + w)[:76]
            if fmt == "lf" and k % 64 == 63:
                line = "." + line[1:]   # some dot-stuffing in LF mail
            lines.append(line)
            total += len(line) + len(eol)
            k += 1
        if store == "maildir":  # no From_ line, no mbox blank line
            body = (eol.join(head + lines) + eol).encode()
            # Named as Dovecot's deliveries are: S= the size, W= with CR LF line ends.
            wsize = len(body) + body.count(b"\n") - body.count(b"\r\n")
            with open(f"{maildir}/cur/1700000000.M{n}P1.bench,S={len(body)},W={wsize}:2,S", "wb") as m:
                m.write(body)
        else:
            f.write(eol.join(head + lines) + eol + "\n")
PY
chown "$USER_NAME:mail" "$MBOX"; chmod 660 "$MBOX"; touch -d '1 hour ago' "$MBOX"
MAIL_FLAG=mbox:"$ROOT/spool/%u"
if [[ $STORE == maildir ]]; then
  chmod 755 "$ROOT/maildir"
  chown -R "$USER_NAME:$USER_GID" "$MAILDIR"; chmod 700 "$MAILDIR" "$MAILDIR"/*
  MAIL_FLAG=maildir:"$ROOT/maildir/%u"
fi
HASH=$(openssl passwd -6 "$PASSWORD")
printf '%s:{SHA512-CRYPT}%s:%s:%s::/nonexistent:\n' "$USER_NAME" "$HASH" "$USER_UID" "$USER_GID" >"$ROOT/passwd"
chmod 600 "$ROOT/passwd"
g++ -O2 -std=c++20 -pthread -o "$ROOT/copyceiling" "$REPO/bench/compare/copyceiling.cc"
g++ -O2 -std=c++20 -o "$ROOT/retr_client" "$REPO/bench/retr_client.cc"

MODE_ARGS=()
if [[ $POOL == 1 ]]; then
  # One pre-forked worker running as the mailbox owner (as a virtual-mail
  # host runs it): no fork per session.
  chown "$USER_NAME:" "$ROOT/state"
  MODE_ARGS=(--mode=pool --workers=1 --pool_user="$USER_NAME")
fi
setsid "$POPGATE" -D --foreground --log=stderr --listen=127.0.0.1:0 \
  --auth=passwd-file:"$ROOT/passwd" --mail="$MAIL_FLAG" \
  --state_dir="$ROOT/state" --min_session_slot=0 "${MODE_ARGS[@]}" ${POPGATE_ARGS:-} \
  2>"$ROOT/popgate.stderr" &
DAEMON_PID=$!
PORT=
for _ in $(seq 100); do
  PORT=$(sed -n 's/.*listening on \[\{0,1\}127[.0-9]*\]\{0,1\}:\([0-9]*\).*/\1/p' "$ROOT/popgate.stderr" | head -1)
  [[ -n $PORT ]] && break
  sleep 0.1
done
[[ -n $PORT ]] || { cat "$ROOT/popgate.stderr" >&2; exit 1; }
cat "$MBOX" >/dev/null  # page cache warm: measure the send path, not the disk
[[ $STORE == maildir ]] && cat "$MAILDIR"/cur/* >/dev/null

# Peak RssAnon (kB) summed over the daemon's session (setsid: sid = pid).
# Cheap on purpose: it shares the two cores with the download it watches
# (the ceiling runs without it). Sampling every 0.1 s with an awk per
# process took ~9% of the machine; now two forks (pgrep, sleep) per 0.25 s
# and bash's own read for the status files.
sample_anon() {
  local peak=0 sum p key value _
  while [[ -e $ROOT/sampling ]]; do
    sum=0
    for p in $(pgrep -s "$DAEMON_PID"); do
      while read -r key value _; do
        [[ $key == RssAnon: ]] && { sum=$((sum + value)); break; }
      done 2>/dev/null <"/proc/$p/status" || true
    done
    ((sum > peak)) && peak=$sum
    sleep 0.25
  done
  echo "$peak" >"$ROOT/anon_peak"
}

# User+system ticks of the daemon's processes (master, pool workers, auth
# process; sessions once reaped): the whole daemon's CPU.
daemon_cpu_ticks() {
  local sum p
  sum=$(awk '{print $16 + $17}' "/proc/$DAEMON_PID/stat")
  for p in $(pgrep -s "$DAEMON_PID"); do
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$sum"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "$STORE: $(du -sb --apparent-size "$([[ $STORE == maildir ]] && echo "$MAILDIR" || echo "$MBOX")" | cut -f1) bytes, $MESSAGES x $KB KB, format $FORMAT; pipeline $PIPELINE; popgate $POPGATE"
: >"$ROOT/ceil"; : >"$ROOT/share"; : >"$ROOT/pg"; : >"$ROOT/sess"; : >"$ROOT/fl"; : >"$ROOT/anon"; : >"$ROOT/cpu"
for run in $(seq "$RUNS"); do
  # Nine 200 MB transfers (~2 s), their median: one transfer lasts 0.2 s,
  # and the machine's copy rate moves by 1.5x between such windows.
  ceil=$("$ROOT/copyceiling" --mb=200 --runs=9 --chunk="$CHUNK" |
         sed -n 's/.*"median_mb_per_sec": *\([0-9.]*\).*/\1/p')
  touch "$ROOT/sampling"; sample_anon & sp=$!
  cpu0=$(daemon_cpu_ticks)
  rc=$("$ROOT/retr_client" --port="$PORT" --user="$USER_NAME" --pass="$PASSWORD" \
       --seconds="${DURATION%s}" --chunk="$CHUNK" --pipeline="$PIPELINE")
  sleep 0.3  # let the master reap the last session
  cpu1=$(daemon_cpu_ticks)
  rm -f "$ROOT/sampling"; wait "$sp"
  pg=$(sed -n 's/.*"transfer_mb_per_sec":\([0-9.]*\).*/\1/p' <<<"$rc")
  sess=$(sed -n 's/.*"seconds":[0-9.]*,"mb_per_sec":\([0-9.]*\).*/\1/p' <<<"$rc")
  outside=$(sed -n 's/.*"ms_per_session_outside_retr":\([0-9.]*\).*/\1/p' <<<"$rc")
  octets=$(sed -n 's/.*"payload_octets":\([0-9]*\).*/\1/p' <<<"$rc")
  cpugb=$(awk -v t=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" -v o="$octets" 'BEGIN {printf "%.2f", t / hz / (o / 1e9)}')
  echo "$cpugb" >>"$ROOT/cpu"
  anon=$(cat "$ROOT/anon_peak")
  fl=-
  if [[ $WITH_FLOOD == 1 ]]; then
    out=$("$FLOOD" --target=127.0.0.1:"$PORT" --scenario=retr-throughput:1 \
          --user="$USER_NAME" --pass="$PASSWORD" --duration="$DURATION" --threads=1 \
          --progress=off 2>&1)
    fl=$(grep -o '([0-9.]* MB/s)' <<<"$out" | tr -d '(' | awk '{print $1}' | tail -1)
    [[ -n $fl ]] || { echo "$out" >&2; exit 1; }
    echo "$fl" >>"$ROOT/fl"
  fi
  [[ -n $pg ]] || { echo "retr_client failed" >&2; exit 1; }
  share=$(awk -v a="$pg" -v b="$ceil" 'BEGIN {printf "%.1f", 100 * a / b}')
  echo "run $run: ceiling $ceil MB/s, popgate $pg MB/s ($(printf %.0f "$share")%) [retr_client; whole sessions $sess MB/s, $outside ms per session outside RETR], $fl MB/s [popgate-flood], daemon CPU $cpugb s/GB, peak anon $((anon / 1024)) MiB"
  echo "$ceil" >>"$ROOT/ceil"; echo "$pg" >>"$ROOT/pg"; echo "$sess" >>"$ROOT/sess"; echo "$anon" >>"$ROOT/anon"
  echo "$share" >>"$ROOT/share"
done
C=$(median <"$ROOT/ceil"); P=$(median <"$ROOT/pg")
F=-; [[ -s $ROOT/fl ]] && F=$(median <"$ROOT/fl")
echo "median: ceiling $C MB/s, popgate $P MB/s = $(awk -v a="$P" -v b="$C" 'BEGIN {printf "%.0f", 100 * a / b}')% of the ceiling (retr_client; median of the runs' own shares $(median <"$ROOT/share")%; whole sessions $(median <"$ROOT/sess") MB/s); popgate-flood $F MB/s; daemon CPU $(median <"$ROOT/cpu") s/GB; peak anon max $(( $(sort -n "$ROOT/anon" | tail -1) / 1024 )) MiB"
