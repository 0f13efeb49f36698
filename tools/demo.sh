#!/usr/bin/env bash
# Builds popgate and runs it in the foreground on an embedded default:
# 127.0.0.1:${POPGATE_DEMO_PORT:-1110}, a bundled passwd-file (user "demo",
# password "demo") and a demo mbox spool under build/demo. Logs go to stderr.
# Changes nothing on the system beyond installing missing build packages.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${POPGATE_BUILD_DIR:-$root/build}
port=${POPGATE_DEMO_PORT:-1110}

"$root/tools/build.sh" popgate

demo=$build/demo
mkdir -p "$demo/spool" "$demo/state" "$demo/home"
# The session drops to the demo user's uid; as root that is "nobody", so the
# spool belongs to it. As a normal user the session keeps your own uid.
if [[ $(id -u) -eq 0 ]]; then uid=65534 gid=65534; else uid=$(id -u) gid=$(id -g); fi
sed -e "s|@UID@|$uid|" -e "s|@GID@|$gid|" -e "s|@HOME@|$demo/home|" \
  "$root/tools/demo/passwd.in" >"$demo/passwd"
chmod 0600 "$demo/passwd"
[[ -s $demo/spool/demo ]] || cp "$root/tools/demo/mbox" "$demo/spool/demo"
chown "$uid:$gid" "$demo/spool" "$demo/spool/demo" "$demo/home" 2>/dev/null || true
chmod 0600 "$demo/spool/demo"

cat >&2 <<MSG
popgate demo on 127.0.0.1:$port (user demo, password demo). Try:
  curl pop3://127.0.0.1:$port/1 -u demo:demo
  python3 -c "import poplib; p=poplib.POP3('127.0.0.1',$port); p.user('demo'); p.pass_('demo'); print(p.stat(), p.uidl()); p.quit()"
Stop with Ctrl-C.
MSG
exec "$build/net/popgate" -D --foreground --log=stderr \
  --listen="127.0.0.1:$port" \
  --auth="passwd-file:$demo/passwd" \
  --mail="mbox:$demo/spool/%u" \
  --state_dir="$demo/state" "$@"
