#!/usr/bin/env bash
# Prepares a Debian 12 machine for popgate's tests. Idempotent and quiet:
# installs with apt-get only what is missing, creates only what the tests
# cannot create themselves. Run as root (tools/test.sh does).
#
#  - build deps (tools/install-build-deps.sh);
#  - test clients: python3 curl fetchmail mpop iproute2 util-linux (unshare);
#  - Debian's popa3d for tests/e2e/test_popa3d_diff.py. popa3d Conflicts with
#    other pop3-server packages: if dovecot-pop3d is installed it is not
#    installed but unpacked (apt-get download + dpkg -x) into
#    /var/cache/popgate-test/popa3d, and the tests find it there;
#  - what popa3d needs to run that its postinst would have made when only
#    unpacked: the `popa3d` system user, the empty chroot /var/lib/popa3d
#    (root:root 0755) and the PAM service /etc/pam.d/popa3d.
# Tests create and remove their own users, spools and mailboxes.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "test-setup.sh: needs root (apt-get, system users)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

updated=0
apt_update_once() {
  if ((updated == 0)); then
    apt-get update -qq
    updated=1
  fi
}

"$(dirname "$0")/install-build-deps.sh"

packages=(python3 curl fetchmail mpop iproute2 util-linux adduser passwd)
missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
if ! installed dovecot-pop3d && ! installed popa3d; then
  missing+=(popa3d)
fi
if ((${#missing[@]})); then
  echo "test-setup: installing ${missing[*]}" >&2
  apt_update_once
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# popa3d unpacked beside dovecot-pop3d (pop3-server conflict).
unpacked=/var/cache/popgate-test/popa3d
if ! installed popa3d && [[ ! -x $unpacked/usr/sbin/popa3d ]]; then
  echo "test-setup: unpacking popa3d into $unpacked" >&2
  apt_update_once
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq popa3d >/dev/null)
  mkdir -p "$unpacked"
  dpkg -x "$tmp"/popa3d_*.deb "$unpacked"
fi

# What popa3d's postinst provides, for the unpacked case (no-ops otherwise).
if ! getent passwd popa3d >/dev/null; then
  adduser --system --quiet --group --home /var/lib/popa3d --no-create-home \
    --shell /usr/sbin/nologin popa3d 2>/dev/null ||
    useradd --system --user-group --home-dir /var/lib/popa3d \
      --shell /usr/sbin/nologin popa3d
fi
if [[ ! -d /var/lib/popa3d ]]; then
  install -d -o root -g root -m 0755 /var/lib/popa3d
fi
if [[ ! -e /etc/pam.d/popa3d ]]; then
  cat >/etc/pam.d/popa3d <<'EOF'
# PAM configuration for popa3d (created by popgate's tools/test-setup.sh)
auth     required pam_unix.so
account  required pam_unix.so
EOF
fi
