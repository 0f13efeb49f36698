#!/usr/bin/env bash
# bench/compare/run.sh: popgate against popa3d and Dovecot on the same machine,
# same users (sha512-crypt), same mbox contents, same load (popgate-flood), inside
# a network namespace and a private mount namespace this script creates.
#
#   sudo bench/compare/run.sh [--duration=10s] [--big-messages=2000] [--big-kb=100]
#        [--servers=popgate,popgate-d,popgate-pool,popgate-pool-cache,popa3d,dovecot]
#        [--scenarios=poll8,poll64,retr4k,retr200m,flood,flood10k] [--ceiling-mb=200]
#        [--popgate=PATH] [--flood=PATH] [--results=bench/RESULTS.md|-]
#        [--flood-threads=1] [--users=64]
#
# Servers (all run at once in the namespace; scenarios interleave them so the
# noise of a busy machine spreads evenly):
#   popgate    127.0.0.1:1110  admission opened up for the load:
#              --max_sessions_per_source=10000 --max_sessions=10000 --min_session_slot=0
#   popgate-d  127.0.0.1:1111  popa3d's policy (50 per source, 500 in all, slot held 10 s)
#   popgate-pool        127.0.0.1:1112  --mode=pool --workers=2, auth cache off
#              (--auth_cache_ttl=0), admission opened up (--max_sessions=30000
#              --max_sessions_per_source=250 --min_session_slot=0: above the 200 idle
#              connections each flood10k source holds); workers run as
#              pgpool:pgbench, reading a copy of the spool with mboxes 0660 user:pgbench
#   popgate-pool-cache  127.0.0.1:1113  the same with the auth cache on (its default TTL)
#   popa3d     0.0.0.0:110     Debian's popa3d -D, PAM (pam_unix), /var/mail/<user>
#   dovecot    127.0.0.1:2110  Debian dovecot-core/dovecot-pop3d 2.3 unpacked with
#              dpkg -x into /var/cache/popgate-bench/dovecot, run through an overlay of /usr
#              in the private mount namespace (its paths are compiled in),
#              pop3-login service_count=0 process_min_avail=2 ("high-performance").
# Scenarios (each --duration long, popgate-flood --threads=--flood-threads):
#   poll8     poll:8        USER PASS STAT UIDL QUIT, 8 clients, users pgb1..pgbN
#   poll64    poll:64       the same with 64 clients
#   retr4k    download:8    --retr=1: one 4 KB message per session
#   retr200m  retr-throughput:1 on pgbig (--big-messages x --big-kb, 200 MB by default)
#   flood     connect-close:50 + hold-idle:200 from 127.0.1.1-50, while poll:8 runs
#             from 127.0.2.1-8 (two popgate-flood processes at once); the row shows
#             the legitimate clients' figures
#   flood10k  per server: poll:8 from 127.0.2.1-8 alone (the unloaded baseline); then
#             hold-idle:10000 from 127.0.1.1-50 (--processes=2: under 20,000 fds per
#             process), PSS of the server tree before and once the held count stops
#             growing (memory per idle connection = delta / connections held: the
#             accepted ones, ss -p); then connect-close:50 from the same sources joins
#             and poll:8 runs again (the row). Not run against popgate (fork mode:
#             10,000 processes).
# Each run samples the server's whole process tree (bench/compare/proctree.cc):
# CPU seconds = delta of utime+stime+cutime+cstime over the tree, peak RSS and
# peak PSS (and anonymous PSS) sums. Then the loopback copy ceiling (bench/compare/copyceiling.cc),
# and per server three more ceiling runs followed by one client downloading pgbig for
# --duration with bench/retr_client.cc (the ceiling's reader, same read size, 16 RETRs
# pipelined): the servers' send path, where popgate-flood's byte-at-a-time parser limits the
# retr200m rows; each server's share (its RETR phases' rate, not its whole sessions') is
# of the ceiling measured just before it.
#
# Test users exist only inside the private mount namespace: copies of
# /etc/passwd, /etc/shadow and /etc/group with the users added are overlaid on
# /etc there, so nothing on the host changes except
# /var/cache/popgate-bench (the unpacked Dovecot, compiled helpers, last raw JSON).
# Everything is bounded by timeouts; a trap kills every process left in the
# namespace (by pid, from `ip netns pids`) and deletes it. PGB_STRACE_POPA3D=1
# runs popa3d under strace -f (debugging only).
set -euo pipefail

SELF=$(readlink -f "$0")
HERE=$(dirname "$SELF")
REPO=$(cd "$HERE/../.." && pwd)
CACHE=/var/cache/popgate-bench

DURATION=10s
BIG_MESSAGES=2000
BIG_KB=100
SERVERS=popgate,popgate-d,popgate-pool,popgate-pool-cache,popa3d,dovecot
SCENARIO_LIST=poll8,poll64,retr4k,retr200m,flood,flood10k
CEILING_MB=200
READ_CHUNK=262144  # copyceiling's and retr_client's read() size
POPGATE=""
FLOOD=""
RESULTS="$REPO/bench/RESULTS.md"
FLOOD_THREADS=1
NUSERS=64
INNER=0
ORIG_ARGS=("$@")

usage() { sed -n '2,53p' "$SELF" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
  case "$arg" in
    --duration=*) DURATION=${arg#*=} ;;
    --big-messages=*) BIG_MESSAGES=${arg#*=} ;;
    --big-kb=*) BIG_KB=${arg#*=} ;;
    --servers=*) SERVERS=${arg#*=} ;;
    --scenarios=*) SCENARIO_LIST=${arg#*=} ;;
    --ceiling-mb=*) CEILING_MB=${arg#*=} ;;
    --popgate=*) POPGATE=${arg#*=} ;;
    --flood=*) FLOOD=${arg#*=} ;;
    --results=*) RESULTS=${arg#*=} ;;
    --flood-threads=*) FLOOD_THREADS=${arg#*=} ;;
    --users=*) NUSERS=${arg#*=} ;;
    --inner) INNER=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

# Duration in whole seconds (accepts 10, 10s, 2m).
secs() {
  local d=$1
  case "$d" in
    *ms) echo 1 ;;
    *s) echo "${d%s}" ;;
    *m) echo $(( ${d%m} * 60 )) ;;
    *) echo "$d" ;;
  esac
}
DUR_S=$(secs "$DURATION")
[[ "$DUR_S" =~ ^[0-9]+$ && "$DUR_S" -ge 1 && "$DUR_S" -le 120 ]] || { echo "run.sh: --duration must be 1s..120s" >&2; exit 2; }
[[ "$BIG_MESSAGES" =~ ^[0-9]+$ && "$BIG_MESSAGES" -ge 1 && "$BIG_MESSAGES" -le 20000 ]] || { echo "bad --big-messages" >&2; exit 2; }
[[ "$BIG_KB" =~ ^[0-9]+$ && "$BIG_KB" -ge 1 && "$BIG_KB" -le 10000 ]] || { echo "bad --big-kb" >&2; exit 2; }
[[ "$NUSERS" =~ ^[0-9]+$ && "$NUSERS" -ge 8 && "$NUSERS" -le 500 ]] || { echo "bad --users (8..500)" >&2; exit 2; }
[[ "$CEILING_MB" =~ ^[0-9]+$ && "$CEILING_MB" -ge 1 && "$CEILING_MB" -le 2000 ]] || { echo "bad --ceiling-mb" >&2; exit 2; }

has_server() { [[ ",$SERVERS," == *",$1,"* ]]; }
log() { printf '[run.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

ALL_SERVERS=(popgate popgate-d popgate-pool popgate-pool-cache popa3d dovecot)
ALL_SCENARIOS=(poll8 poll64 retr4k retr200m flood flood10k)
SCENARIOS=()
for sc in "${ALL_SCENARIOS[@]}"; do [[ ",$SCENARIO_LIST," == *",$sc,"* ]] && SCENARIOS+=("$sc"); done
((${#SCENARIOS[@]})) || { echo "run.sh: --scenarios names none of ${ALL_SCENARIOS[*]}" >&2; exit 2; }
for s in ${SERVERS//,/ }; do
  [[ " ${ALL_SERVERS[*]} " == *" $s "* ]] || { echo "run.sh: unknown server $s" >&2; exit 2; }
done
PASSWORD=bench-Secret1

# ----------------------------------------------------------------------------
# Inner part: runs inside the network namespace and a private mount namespace.
# ----------------------------------------------------------------------------
inner_main() {
  : "${RUN:?}" "${OUT:?}" "${POPGATE:?}" "${FLOOD:?}" "${BIN:?}"
  local LOGS=$OUT/logs
  mkdir -p "$LOGS"
  declare -gA PID=()
  SAMPLER_PIDS=()
  FLOOD_PIDS=()
  inner_cleanup() {
    local p
    for p in "${SAMPLER_PIDS[@]}" "${FLOOD_PIDS[@]}" "${PID[@]}"; do
      kill -TERM "$p" 2>/dev/null || true
    done
    sleep 0.5
    for p in "${PID[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  }
  trap inner_cleanup EXIT
  trap 'exit 143' TERM INT

  mount --make-rprivate / 2>/dev/null || true
  mount -t tmpfs -o mode=755,size=3g popgate-bench "$RUN"
  mount -t tmpfs -o mode=1777,size=1g popgate-bench-mail /var/mail
  ip link set lo up

  # --- users, only inside this mount namespace --------------------------------
  local hash etc=$RUN/etc
  mkdir -p "$etc" "$RUN/home"
  hash=$(openssl passwd -6 -salt popgateBench0001 "$PASSWORD")
  cp /etc/passwd "$etc/passwd"; cp /etc/shadow "$etc/shadow"; cp /etc/group "$etc/group"
  chmod 644 "$etc/passwd" "$etc/group"; chmod 640 "$etc/shadow"
  echo "pgbench:x:61000:" >> "$etc/group"
  # The --mode=pool workers' account: group pgbench gives it the pool spool copy.
  echo "pgpool:x:60990:61000:popgate pool workers:/nonexistent:/usr/sbin/nologin" >> "$etc/passwd"
  # Dovecot's default internal and login users (its conf also names group dovecot).
  getent group dovecot >/dev/null || echo "dovecot:x:60998:" >> "$etc/group"
  getent group dovenull >/dev/null || echo "dovenull:x:60999:" >> "$etc/group"
  getent passwd dovecot >/dev/null || echo "dovecot:x:60998:60998:Dovecot mail server:/nonexistent:/usr/sbin/nologin" >> "$etc/passwd"
  getent passwd dovenull >/dev/null || echo "dovenull:x:60999:60999:Dovecot login user:/nonexistent:/usr/sbin/nologin" >> "$etc/passwd"
  : > "$etc/users.passwd"
  local users=(pgbig) i u uid
  for ((i = 1; i <= NUSERS; i++)); do users+=("pgb$i"); done
  for u in "${users[@]}"; do
    if [[ $u == pgbig ]]; then uid=61000; else uid=$((61000 + ${u#pgb})); fi
    mkdir -p "$RUN/home/$u"; chown "$uid:61000" "$RUN/home/$u"
    echo "$u:x:$uid:61000::$RUN/home/$u:/usr/sbin/nologin" >> "$etc/passwd"
    echo "$u:$hash:20000:0:99999:7:::" >> "$etc/shadow"
    echo "$u:{SHA512-CRYPT}$hash:$uid:61000::$RUN/home/$u:" >> "$etc/users.passwd"
  done
  # Not world-readable (popgate warns about that); Dovecot's auth runs as group dovecot.
  chown "root:$(awk -F: '$1 == "dovecot" { print $3 }' "$etc/group")" "$etc/users.passwd"
  chmod 640 "$etc/users.passwd"
  # An overlay on the /etc directory, not bind mounts on the files: other people's
  # useradd/userdel on this host rename new files over /etc/passwd, which would
  # silently detach a file bind mount (observed: popa3d then lost our users).
  mkdir -p "$RUN/etc-top"
  cp -p "$etc/passwd" "$etc/shadow" "$etc/group" "$RUN/etc-top/"
  mount -t overlay popgate-bench-etc -o "lowerdir=$RUN/etc-top:/etc" /etc
  getent passwd pgbig >/dev/null || { log "test users not visible through the /etc overlay"; exit 1; }

  # --- mailboxes ------------------------------------------------------------
  log "generating mailboxes ($NUSERS x 10 x 4 KB, pgbig $BIG_MESSAGES x $BIG_KB KB)"
  mkdir -p "$RUN/src"
  timeout 120 /usr/bin/python3 - "$RUN/src" "$NUSERS" "$BIG_MESSAGES" "$BIG_KB" <<'PY'
import sys
out, nusers, big_n, big_kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def message(user, n, size):
    head = (f"From sender{n % 7}@example.org Thu Nov 26 10:{n // 60 % 60:02d}:{n % 60:02d} 2026\n"
            f"Received: from mx{n % 3}.example.org by pop.example.net; Thu, 26 Nov 2026 10:00:00 +0000\n"
            f"Date: Thu, 26 Nov 2026 10:{n // 60 % 60:02d}:{n % 60:02d} +0000\n"
            f"From: Sender {n % 7} <sender{n % 7}@example.org>\n"
            f"To: {user}@example.net\n"
            f"Message-ID: <{n}.{user}@example.org>\n"
            f"Subject: popgate bench message {n} for {user}\n\n")
    body = []
    total = len(head) + 1
    k = 0
    while total < size:
        line = (".dot-stuffed line " if k == 3 else "") + f"line {k:05d} of message {n}: " + "lorem ipsum dolor sit amet " * 2
        line = line[:72]
        body.append(line)
        total += len(line) + 1
        k += 1
    return head + "\n".join(body) + "\n\n"
for i in range(1, nusers + 1):
    u = f"pgb{i}"
    with open(f"{out}/{u}", "w") as f:
        for n in range(1, 11):
            f.write(message(u, n, 4096))
with open(f"{out}/pgbig", "w") as f:
    for n in range(1, big_n + 1):
        f.write(message("pgbig", n, big_kb * 1024))
PY
  local spool
  mkdir -p "$RUN/spool-popgate" "$RUN/spool-dovecot" "$RUN/spool-pool"
  chmod 1777 "$RUN/spool-popgate" "$RUN/spool-dovecot"
  # The pool workers run as one account (pgpool, group pgbench): like a Debian
  # spool (root:mail 2775, mboxes user:mail 0660) with pgbench as the mail group.
  chown root:61000 "$RUN/spool-pool"; chmod 2775 "$RUN/spool-pool"
  local need_pool=0
  { has_server popgate-pool || has_server popgate-pool-cache; } && need_pool=1
  for spool in /var/mail "$RUN/spool-popgate" "$RUN/spool-dovecot" "$RUN/spool-pool"; do
    [[ $spool == "$RUN/spool-pool" ]] && ((need_pool == 0)) && continue
    for u in "${users[@]}"; do
      if [[ $u == pgbig ]]; then uid=61000; else uid=$((61000 + ${u#pgb})); fi
      cp "$RUN/src/$u" "$spool/$u"
      chown "$uid:61000" "$spool/$u"; chmod 600 "$spool/$u"
      [[ $spool == "$RUN/spool-pool" ]] && chmod 660 "$spool/$u"
    done
  done
  rm -rf "$RUN/src"
  log "mailboxes ready"

  # --- servers ----------------------------------------------------------------
  declare -gA PORT=([popgate]=1110 [popgate-d]=1111 [popgate-pool]=1112
                    [popgate-pool-cache]=1113 [popa3d]=110 [dovecot]=2110)
  # flood10k holds 10,000 connections; each server may use up to the hard limit.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  declare -gA BROKEN=()
  if has_server popgate; then
    mkdir -p "$RUN/state-popgate"; chmod 1777 "$RUN/state-popgate"
    "$POPGATE" -D --foreground --log=stderr --listen=127.0.0.1:1110 \
      --auth=passwd-file:"$etc/users.passwd" --mail=mbox:"$RUN/spool-popgate/%u" \
      --state_dir="$RUN/state-popgate" \
      --max_sessions_per_source=10000 --max_sessions=10000 --min_session_slot=0 \
      </dev/null >"$LOGS/popgate.log" 2>&1 &
    PID[popgate]=$!
  fi
  if has_server popgate-d; then
    mkdir -p "$RUN/state-popgate-d"; chmod 1777 "$RUN/state-popgate-d"
    "$POPGATE" -D --foreground --log=stderr --listen=127.0.0.1:1111 \
      --auth=passwd-file:"$etc/users.passwd" --mail=mbox:"$RUN/spool-popgate/%u" \
      --state_dir="$RUN/state-popgate-d" \
      --max_sessions_per_source=50 --max_sessions=500 --min_session_slot=10s \
      </dev/null >"$LOGS/popgate-d.log" 2>&1 &
    PID[popgate-d]=$!
  fi
  local pool_srv pool_cache
  for pool_srv in popgate-pool popgate-pool-cache; do
    has_server "$pool_srv" || continue
    # Auth cache off for popgate-pool (every login hashes, as the other servers do);
    # popgate-pool-cache keeps the default TTL.
    pool_cache=(--auth_cache_ttl=0)
    [[ $pool_srv == popgate-pool-cache ]] && pool_cache=()
    mkdir -p "$RUN/state-$pool_srv"; chmod 1777 "$RUN/state-$pool_srv"
    "$POPGATE" -D --foreground --log=stderr --listen=127.0.0.1:${PORT[$pool_srv]} \
      --auth=passwd-file:"$etc/users.passwd" --mail=mbox:"$RUN/spool-pool/%u" \
      --state_dir="$RUN/state-$pool_srv" \
      --mode=pool --workers=2 --pool_user=pgpool --pool_group=pgbench "${pool_cache[@]}" \
      --max_sessions=30000 --max_sessions_per_source=250 --min_session_slot=0 \
      </dev/null >"$LOGS/$pool_srv.log" 2>&1 &
    PID[$pool_srv]=$!
  done
  if has_server popa3d; then
    if [[ -x /usr/sbin/popa3d ]] && id popa3d >/dev/null 2>&1 && [[ -f /etc/pam.d/popa3d ]]; then
      mkdir -p /var/lib/popa3d
      # -D detaches; stdio is inherited, so send it to the log.
      if [[ -n "${PGB_STRACE_POPA3D:-}" ]]; then
        strace -f -tt -s 200 -o "$LOGS/popa3d.strace" /usr/sbin/popa3d -D </dev/null >"$LOGS/popa3d.log" 2>&1 &
      else
        /usr/sbin/popa3d -D </dev/null >"$LOGS/popa3d.log" 2>&1 || true
      fi
      local t
      for ((t = 0; t < 50; t++)); do
        PID[popa3d]=$(ss -Hltnp 'sport = :110' 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
        [[ -n "${PID[popa3d]}" ]] && break
        sleep 0.1
      done
      [[ -n "${PID[popa3d]}" ]] || { unset 'PID[popa3d]'; BROKEN[popa3d]="popa3d -D did not listen on :110"; }
    else
      BROKEN[popa3d]="popa3d not installed (apt-get install popa3d)"
    fi
  fi
  if has_server dovecot; then
    if [[ -x "$DOVECOT_ROOT/usr/sbin/dovecot" ]]; then
      # Dovecot's libexec, module and doveconf paths are compiled in (/usr/lib/dovecot,
      # /usr/bin/doveconf): overlay the unpacked tree on /usr in this namespace only.
      mount -t overlay popgate-bench-usr -o "lowerdir=$DOVECOT_ROOT/usr:/usr" /usr
      local dc=$RUN/dovecot
      mkdir -p "$dc/base" "$dc/state" "$dc/mail"
      for u in "${users[@]}"; do
        if [[ $u == pgbig ]]; then uid=61000; else uid=$((61000 + ${u#pgb})); fi
        mkdir -p "$dc/mail/$u"; chown "$uid:61000" "$dc/mail/$u"
      done
      cat > "$dc/dovecot.conf" <<EOF
# generated by bench/compare/run.sh
protocols = pop3
listen = 127.0.0.1
base_dir = $dc/base
state_dir = $dc/state
log_path = $LOGS/dovecot.log
info_log_path = $LOGS/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 60000
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT $etc/users.passwd
}
userdb {
  driver = passwd-file
  args = $etc/users.passwd
}
mail_location = mbox:$dc/mail/%u:INBOX=$RUN/spool-dovecot/%u
# popa3d and popgate never write to the mbox without DELE; make Dovecot read-only too.
pop3_no_flag_updates = yes
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = 2110
  }
  inet_listener pop3s {
    port = 0
  }
  service_count = 0
  process_min_avail = 2
  # flood10k holds 10,000 pre-login connections: a login process keeps at most
  # client_limit of them (past it, it drops the oldest), the master starts up to
  # process_limit of them.
  client_limit = 2000
  process_limit = 32
}
# Room for 10,000 connections in the services sized from these defaults.
default_client_limit = 20000
default_process_limit = 200
EOF
      LD_LIBRARY_PATH=/usr/lib/dovecot /usr/sbin/dovecot -F -c "$dc/dovecot.conf" \
        </dev/null >"$LOGS/dovecot.stderr" 2>&1 &
      PID[dovecot]=$!
    else
      BROKEN[dovecot]="Dovecot not unpacked at $DOVECOT_ROOT"
    fi
  fi

  # Wait for greetings (bounded), then check that a login works on each.
  local s ok t
  for s in "${ALL_SERVERS[@]}"; do
    has_server "$s" || continue
    [[ -n "${BROKEN[$s]:-}" ]] && continue
    ok=0
    for ((t = 0; t < 100; t++)); do
      if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/${PORT[$s]} && head -c 3 <&3" 2>/dev/null | grep -q '+OK'; then ok=1; break; fi
      sleep 0.2
    done
    if ((ok == 0)); then BROKEN[$s]="no +OK greeting on port ${PORT[$s]} (see logs/$s*)"; continue; fi
    timeout 20 "$FLOOD" --target=127.0.0.1:${PORT[$s]} --duration=1s --threads=1 \
      --scenario=poll:1 --user=pgb1 --pass="$PASSWORD" --json \
      >"$OUT/check.$s.json" 2>>"$LOGS/flood.stderr" || true
    if ! jq -e '.scenarios[0].ok > 0' "$OUT/check.$s.json" >/dev/null 2>&1; then
      BROKEN[$s]="login check failed: $(jq -c '.scenarios[0].outcomes // empty | with_entries(select(.value > 0))' "$OUT/check.$s.json" 2>/dev/null)"
    fi
  done
  for s in "${!BROKEN[@]}"; do
    log "server $s unavailable: ${BROKEN[$s]}"
    echo "${BROKEN[$s]}" > "$OUT/broken.$s"
  done
  sleep 2

  # --- scenarios --------------------------------------------------------------
  # Legitimate clients come from 64 loopback sources, so popa3d's per-source limit
  # (50 per 10 s) is not what caps it; its global one (500 per 10 s) still is.
  local users_flags=(--user-pattern=pgb%d --user-range=1-$NUSERS --pass="$PASSWORD")
  local legit_src=(--source=127.0.3.1-127.0.3.64)
  local common=(--duration="${DUR_S}s" --threads="$FLOOD_THREADS" --timeout=30s)
  local kill_after=$((DUR_S + 40)) sc root spid fp
  # flood10k against server $1 (pid $2, port $3); see the header. Files:
  # flood10k.S.unloaded.json (poll:8 alone), .pss0/.pss1.json (proctree snapshots
  # before the hold and once it stopped growing), .held (server-side established
  # connections then, ss), .hold.json and .attack.json (hold-idle, connect-close),
  # .json and .proc.json (poll:8 under the flood, the tree during it), .held_end.
  flood10k_run() {
    local s=$1 root=$2 port=$3 hp cp spid t n prev=-1 still=0 long=$((DUR_S + 150))
    local tgt=(--target=127.0.0.1:$3)
    local legit=(--scenario=poll:8 "${users_flags[@]}" --source=127.0.2.1-127.0.2.8)
    # Established and accepted (owned by a process: -p), not waiting in the backlog.
    held_now() { ss -Htnp state established "( sport = :$port )" 2>/dev/null | grep -c 'users:' || true; }
    timeout -k 5 $kill_after "$FLOOD" "${tgt[@]}" "${common[@]}" "${legit[@]}" \
      --json >"$OUT/flood10k.$s.unloaded.json" 2>>"$LOGS/flood.stderr" || true
    sleep 2
    "$BIN/proctree" --root="$root" --interval-ms=1 --max-seconds=0 \
      >"$OUT/flood10k.$s.pss0.json" 2>>"$LOGS/proctree.stderr" || true
    # 10,000 held connections in two processes of 5,000 (the fd cap is 20,000 each);
    # a long inactivity timeout: holding is the point.
    timeout -k 5 $((long + 30)) "$FLOOD" "${tgt[@]}" --duration="${long}s" \
      --threads="$FLOOD_THREADS" --timeout=600s --processes=2 --max-connections=10000 \
      --source=127.0.1.1-127.0.1.50 --scenario=hold-idle:10000 \
      --json >"$OUT/flood10k.$s.hold.json" 2>>"$LOGS/flood.stderr" &
    hp=$!; FLOOD_PIDS+=("$hp")
    # Until 10,000 are held, or no new high for 3 s (a server refusing most), or 60 s.
    for ((t = 0; t < 120; t++)); do
      sleep 0.5
      n=$(held_now)
      ((n >= 10000)) && break
      if ((n > prev)); then prev=$n; still=0; else still=$((still + 1)); fi
      ((still >= 6 && t >= 10)) && break
    done
    n=$(held_now); echo "$n" >"$OUT/flood10k.$s.held"
    "$BIN/proctree" --root="$root" --interval-ms=1 --max-seconds=0 \
      >"$OUT/flood10k.$s.pss1.json" 2>>"$LOGS/proctree.stderr" || true
    log "flood10k / $s: $n connections held after $(( (t + 1) / 2 )) s"
    timeout -k 5 $((long + 30)) "$FLOOD" "${tgt[@]}" --duration="${long}s" \
      --threads="$FLOOD_THREADS" --timeout=30s --max-connections=1000 \
      --source=127.0.1.1-127.0.1.50 --scenario=connect-close:50 \
      --json >"$OUT/flood10k.$s.attack.json" 2>>"$LOGS/flood.stderr" &
    cp=$!; FLOOD_PIDS+=("$cp")
    "$BIN/proctree" --root="$root" --interval-ms=250 --max-seconds=$((kill_after + 10)) \
      >"$OUT/flood10k.$s.proc.json" 2>>"$LOGS/proctree.stderr" &
    spid=$!; SAMPLER_PIDS+=("$spid")
    timeout -k 5 $kill_after "$FLOOD" "${tgt[@]}" "${common[@]}" "${legit[@]}" \
      --json >"$OUT/flood10k.$s.json" 2>>"$LOGS/flood.stderr" || true
    held_now >"$OUT/flood10k.$s.held_end"
    kill -TERM "$spid" "$cp" "$hp" 2>/dev/null || true
    wait "$spid" || true
    wait "$cp" || true
    wait "$hp" || true
    # 10,000 closes to process (and popa3d's 10 s slot holds) before the next server.
    sleep 5
  }
  for sc in "${SCENARIOS[@]}"; do
    for s in "${ALL_SERVERS[@]}"; do
      has_server "$s" || continue
      [[ -n "${BROKEN[$s]:-}" ]] && continue
      root=${PID[$s]}
      if ! kill -0 "$root" 2>/dev/null; then
        BROKEN[$s]="server process $root died before $sc"; echo "${BROKEN[$s]}" > "$OUT/broken.$s"
        log "${BROKEN[$s]}"; continue
      fi
      if [[ $sc == flood10k ]]; then
        # Fork mode would run 10,000 session processes: not this row's question.
        [[ $s == popgate ]] && continue
        log "$sc / $s"
        flood10k_run "$s" "$root" "${PORT[$s]}"
        continue
      fi
      log "$sc / $s"
      "$BIN/proctree" --root="$root" --interval-ms=250 --max-seconds=$((kill_after + 10)) \
        >"$OUT/$sc.$s.proc.json" 2>>"$LOGS/proctree.stderr" &
      spid=$!; SAMPLER_PIDS+=("$spid")
      local tgt=(--target=127.0.0.1:${PORT[$s]})
      case $sc in
        poll8) timeout -k 5 $kill_after "$FLOOD" "${tgt[@]}" "${common[@]}" --scenario=poll:8 \
                 "${users_flags[@]}" "${legit_src[@]}" --json >"$OUT/$sc.$s.json" 2>>"$LOGS/flood.stderr" || true ;;
        poll64) timeout -k 5 $kill_after "$FLOOD" "${tgt[@]}" "${common[@]}" --scenario=poll:64 \
                 "${users_flags[@]}" "${legit_src[@]}" --json >"$OUT/$sc.$s.json" 2>>"$LOGS/flood.stderr" || true ;;
        retr4k) timeout -k 5 $kill_after "$FLOOD" "${tgt[@]}" "${common[@]}" --scenario=download:8 \
                 --retr=1 "${users_flags[@]}" "${legit_src[@]}" --json >"$OUT/$sc.$s.json" 2>>"$LOGS/flood.stderr" || true ;;
        retr200m) timeout -k 5 $kill_after "$FLOOD" "${tgt[@]}" "${common[@]}" \
                 --scenario=retr-throughput:1 --user=pgbig --pass="$PASSWORD" \
                 --json >"$OUT/$sc.$s.json" 2>>"$LOGS/flood.stderr" || true ;;
        flood)
          timeout -k 5 $kill_after "$FLOOD" "${tgt[@]}" "${common[@]}" --max-connections=1000 \
            --source=127.0.1.1-127.0.1.50 --scenario=connect-close:50 --scenario=hold-idle:200 \
            --user=pgb1 --pass="$PASSWORD" \
            --json >"$OUT/$sc.$s.attack.json" 2>>"$LOGS/flood.stderr" &
          fp=$!; FLOOD_PIDS+=("$fp")
          timeout -k 5 $kill_after "$FLOOD" "${tgt[@]}" "${common[@]}" \
            --scenario=poll:8 "${users_flags[@]}" --source=127.0.2.1-127.0.2.8 \
            --json >"$OUT/$sc.$s.json" 2>>"$LOGS/flood.stderr" || true
          wait "$fp" || true ;;
      esac
      kill -TERM "$spid" 2>/dev/null || true
      wait "$spid" || true
      # Let sessions and held slots drain before the next run.
      sleep 2
    done
  done

  # --- loopback copy ceiling ----------------------------------------------------
  log "loopback copy ceiling ($CEILING_MB MB x 5)"
  # The ceiling's reader and retr_client read in the same --chunk (a reader's
  # buffer size moves both figures); each server's download is preceded by its
  # own ceiling runs, so its share is taken against the machine of that minute.
  timeout 180 "$BIN/copyceiling" --mb="$CEILING_MB" --runs=5 --chunk="$READ_CHUNK" \
    >"$OUT/ceiling.json" 2>>"$LOGS/ceiling.stderr" || true
  for s in "${ALL_SERVERS[@]}"; do
    has_server "$s" && [[ -z "${BROKEN[$s]:-}" ]] || continue
    [[ " ${SCENARIOS[*]} " == *" retr200m "* ]] || continue
    timeout 120 "$BIN/copyceiling" --mb="$CEILING_MB" --runs=3 --chunk="$READ_CHUNK" \
      >"$OUT/ceiling.$s.json" 2>>"$LOGS/ceiling.stderr" || true
    log "retr_client / $s"
    "$BIN/proctree" --root="${PID[$s]}" --interval-ms=250 --max-seconds=$((DUR_S + 100)) \
      >"$OUT/retrfast.$s.proc.json" 2>>"$LOGS/proctree.stderr" &
    spid=$!; SAMPLER_PIDS+=("$spid")
    # popa3d needs ~45 s for one pass at its 4-5 MB/s; one pass always completes.
    timeout -k 5 $((DUR_S + 90)) "$BIN/retr_client" --port="${PORT[$s]}" --user=pgbig \
      --pass="$PASSWORD" --seconds="$DUR_S" --pipeline=16 --chunk="$READ_CHUNK" \
      >"$OUT/retrfast.$s.json" 2>>"$LOGS/retr_client.stderr" || true
    kill -TERM "$spid" 2>/dev/null || true
    wait "$spid" || true
  done

  # Server-side facts for the report.
  for s in "${!PID[@]}"; do
    grep -m1 VmHWM "/proc/${PID[$s]}/status" 2>/dev/null | awk '{print $2}' >"$OUT/hwm.$s" || true
  done
  local dlog=$LOGS/dovecot.log
  [[ -f $dlog ]] && grep -ci 'error\|fatal\|panic' "$dlog" >"$OUT/dovecot.errors" 2>/dev/null || true
}

if ((INNER)); then
  inner_main
  exit 0
fi

# ----------------------------------------------------------------------------
# Outer part: prepare, create the namespace, run the inner part, report.
# ----------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || { echo "run.sh: must run as root (namespaces, setuid servers)" >&2; exit 1; }
for tool in ip unshare jq openssl g++ ss timeout; do
  command -v "$tool" >/dev/null || { echo "run.sh: needs $tool" >&2; exit 1; }
done
[[ -x /usr/bin/python3 ]] || { echo "run.sh: needs /usr/bin/python3" >&2; exit 1; }

pick() { local p; for p in "$@"; do [[ -x "$p" ]] && { echo "$p"; return 0; }; done; return 1; }
if [[ -z "$POPGATE" ]]; then
  POPGATE=$(pick "$REPO/build-bench/net/popgate" "$REPO/build-net/net/popgate" "$REPO/build/net/popgate") || {
    log "building popgate (build-bench, Release)"
    (cd "$REPO" && cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null &&
       timeout 1800 ninja -C build-bench popgate popgate-flood >/dev/null)
    POPGATE=$REPO/build-bench/net/popgate
  }
fi
if [[ -z "$FLOOD" ]]; then
  FLOOD=$(pick "$REPO/build-bench/tools/popgate-flood" "$REPO/build-flood/tools/popgate-flood" "$REPO/build/tools/popgate-flood") || {
    (cd "$REPO" && cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null &&
       timeout 1800 ninja -C build-bench popgate-flood >/dev/null)
    FLOOD=$REPO/build-bench/tools/popgate-flood
  }
fi
POPGATE=$(readlink -f "$POPGATE"); FLOOD=$(readlink -f "$FLOOD")
[[ -x "$POPGATE" && -x "$FLOOD" ]] || { echo "run.sh: popgate or popgate-flood missing" >&2; exit 1; }
# Snapshot both binaries: other people may relink them during the run.
mkdir -p "$CACHE/bin"
POPGATE_SRC=$POPGATE; FLOOD_SRC=$FLOOD
POPGATE_SHA=$(sha256sum "$POPGATE" | cut -c1-12); FLOOD_SHA=$(sha256sum "$FLOOD" | cut -c1-12)
POPGATE_MTIME=$(date -u -r "$POPGATE" +%Y-%m-%dT%H:%MZ)
cp "$POPGATE" "$CACHE/bin/popgate.snap"; cp "$FLOOD" "$CACHE/bin/popgate-flood.snap"
POPGATE=$CACHE/bin/popgate.snap; FLOOD=$CACHE/bin/popgate-flood.snap

mkdir -p "$CACHE"
BIN=$CACHE/bin
DOVECOT_ROOT=$CACHE/dovecot

# popa3d: install if missing (it conflicts with dovecot-pop3d, which we only unpack).
if has_server popa3d && [[ ! -x /usr/sbin/popa3d ]]; then
  log "installing popa3d"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y popa3d >/dev/null || log "popa3d install failed"
fi
# Dovecot: apt-get download + dpkg -x, once.
if has_server dovecot && [[ ! -x $DOVECOT_ROOT/usr/sbin/dovecot || ! -x $DOVECOT_ROOT/usr/lib/dovecot/pop3 ]]; then
  log "unpacking dovecot-core + dovecot-pop3d into $DOVECOT_ROOT"
  mkdir -p "$CACHE/debs"
  (cd "$CACHE/debs" && rm -f dovecot-*.deb && timeout 300 apt-get download dovecot-core dovecot-pop3d >/dev/null 2>&1) || log "apt-get download failed"
  rm -rf "$DOVECOT_ROOT.tmp"; mkdir -p "$DOVECOT_ROOT.tmp"
  for d in "$CACHE"/debs/dovecot-*.deb; do [[ -f $d ]] && dpkg -x "$d" "$DOVECOT_ROOT.tmp"; done
  if [[ -x $DOVECOT_ROOT.tmp/usr/sbin/dovecot ]]; then rm -rf "$DOVECOT_ROOT"; mv "$DOVECOT_ROOT.tmp" "$DOVECOT_ROOT"; else rm -rf "$DOVECOT_ROOT.tmp"; fi
fi
# Helpers, rebuilt when their source changes.
mkdir -p "$BIN"
build_helper() {
  local name=$1 src=${2:-$HERE/$1.cc}
  if [[ ! -x $BIN/$name || $src -nt $BIN/$name ]]; then
    g++ -O2 -std=c++20 -pthread -o "$BIN/$name.tmp" "$src" && mv "$BIN/$name.tmp" "$BIN/$name"
  fi
}
build_helper proctree
build_helper copyceiling
build_helper retr_client "$HERE/../retr_client.cc"

NS=popgate-bench-$$
RUN=$CACHE/run.$$
OUT=$CACHE/last
rm -rf "$OUT"; mkdir -p "$OUT" "$RUN"
# What one sha512-crypt verification (5000 rounds, as in the test users' hash) costs here.
CRYPT_MS=$(timeout 60 /usr/bin/python3 -W ignore -c '
import crypt, time
h = crypt.crypt("x", "$6$popgateBench0001")
t = time.process_time()
for _ in range(50): crypt.crypt("x", h)
print("%.2f" % ((time.process_time() - t) / 50 * 1000))' 2>/dev/null || echo "?")
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)

INNER_PID=""
outer_cleanup() {
  local rc=$?
  set +e
  [[ -n "$INNER_PID" ]] && kill -TERM "$INNER_PID" 2>/dev/null
  if ip netns list 2>/dev/null | grep -qw "$NS"; then
    local p pids
    for sig in TERM KILL; do
      pids=$(ip netns pids "$NS" 2>/dev/null)
      [[ -z "$pids" ]] && break
      for p in $pids; do kill -"$sig" "$p" 2>/dev/null; done
      sleep 1
    done
    ip netns del "$NS" 2>/dev/null
  fi
  rmdir "$RUN" 2>/dev/null
  exit $rc
}
trap outer_cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
# Bound for the whole inner run: servers x (5 scenarios x (duration + margins) +
# flood10k: two runs, a ramp of at most 60 s, drains) + setup.
NSERVERS=$(tr ',' '\n' <<<"$SERVERS" | grep -c .)
TOTAL=$(( NSERVERS * (5 * (DUR_S + 8) + 2 * DUR_S + 100) + 300 ))
log "namespace $NS, ${DUR_S}s per run, servers $SERVERS, bound ${TOTAL}s"
export RUN OUT POPGATE FLOOD BIN DOVECOT_ROOT
timeout -k 10 "$TOTAL" ip netns exec "$NS" unshare -m --propagation private \
  "$SELF" --inner "${ORIG_ARGS[@]}" --popgate="$POPGATE" --flood="$FLOOD" &
INNER_PID=$!
wait "$INNER_PID" || log "inner run exited with $?"
INNER_PID=""
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ----------------------------------------------------------------------------
# Report.
# ----------------------------------------------------------------------------
COMMIT=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || true)
if [[ ! "$COMMIT" =~ ^[0-9a-f]{40}$ ]]; then
  COMMIT="uncommitted"
elif [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | head -1)" ]]; then
  COMMIT="$COMMIT (working tree had uncommitted changes; the binaries may predate it)"
fi
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
BUILD_TYPE=$(grep -h '^CMAKE_BUILD_TYPE' "$(dirname "$(dirname "$POPGATE_SRC")")/CMakeCache.txt" 2>/dev/null | cut -d= -f2)
[[ -n "$BUILD_TYPE" ]] || BUILD_TYPE="(empty: CMakeLists default RelWithDebInfo)"
DOVECOT_VERSION=$(ls "$CACHE"/debs/dovecot-pop3d_*.deb 2>/dev/null | head -1 | sed 's/.*_1%3a\([^_]*\)_.*/\1/')
POPA3D_VERSION=$(dpkg-query -W -f='${Version}' popa3d 2>/dev/null || echo "?")
CMDLINE="bench/compare/run.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}"

# Paths relative to the repository, so RESULTS.md names no host layout.
POPGATE_SRC=$(realpath --relative-to="$REPO" "$POPGATE_SRC" 2>/dev/null || basename "$POPGATE_SRC")
FLOOD_SRC=$(realpath --relative-to="$REPO" "$FLOOD_SRC" 2>/dev/null || basename "$FLOOD_SRC")
export POPGATE_SRC FLOOD_SRC POPGATE_SHA FLOOD_SHA POPGATE_MTIME CRYPT_MS
export OUT COMMIT CPU_MODEL BUILD_TYPE DOVECOT_VERSION POPA3D_VERSION CMDLINE START_TS \
  LOAD_BEFORE LOAD_AFTER DUR_S BIG_MESSAGES BIG_KB CEILING_MB POPGATE FLOOD NUSERS FLOOD_THREADS
REPORT=$(/usr/bin/python3 "$HERE/report.py")
printf '%s\n' "$REPORT"
if [[ "$RESULTS" != "-" ]]; then
  printf '%s\n' "$REPORT" > "$RESULTS"
  log "wrote $RESULTS (raw JSON and logs: $OUT)"
fi
