#!/usr/bin/env python3
"""Re-login on a big mbox with one new message: popgate against popa3d.

    sudo bench/relogin.py [--popgate=build/net/popgate] [--mb=1024] [--kb=100]
                          [--trials=5]

Servers: popa3d and popgate in inetd mode over a socketpair (how popa3d is
deployed), popgate -D (fork mode: popa3d -D's model, a process per session)
and popgate -D --mode=pool (one worker; its auth cache on, as by default) on
loopback, each daemon with its own state folder (its own index cache). All read the same mbox file in a private spool bind-mounted over /var/mail (the
real /var/mail is not touched) and authenticate one throwaway user through
PAM (service "popa3d"; its shadow hash is sha512-crypt with 5000 rounds, as
in bench/compare: Debian's default yescrypt would add ~40 ms to both).
The mbox holds --mb MB of --kb KB messages with LF line ends, as MDAs write.

Per server: one login first, not in the medians (popa3d has nothing to
warm; popgate builds its index cache, and the pool fills its auth cache, as a
client's previous poll would have: its time is printed as the first login). Then, per trial, one message is
appended MDA-style (fcntl-locked) and one session runs: greeting, USER, PASS,
STAT, QUIT. Timed: the login, from sending PASS to its +OK (every server
verifies the password, unless cached, then opens and indexes the mailbox
before answering), and the whole session from spawning the server (inetd) or
connecting (daemons) to the QUIT reply. The STAT count is checked, so a server
that missed the new message fails the run. The page cache is warmed first:
this measures CPU work, not the disk.

Prints each login and the medians; the ratios are popa3d / popgate.
"""
import contextlib
import os
import shutil
import statistics
import subprocess
import time

from big_mailbox import h, parse_args, stop_daemon


def make_mbox(path, megabytes, kb, user):
    """Writes the mbox; returns its message count."""
    line = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
            "eiusmod tempor")[:70] + "\n"
    body = line * (kb * 1024 // len(line))
    count = 0
    with open(path, "w") as f:
        while f.tell() < megabytes * 1000 * 1000:
            count += 1
            f.write(new_message(count, user, body))
    return count


def new_message(n, user, body):
    return (f"From sender@example.org Thu Nov 26 10:00:00 2026\n"
            f"From: Sender <sender@example.org>\nTo: {user}@example.net\n"
            f"Message-ID: <{n}.{user}@example.org>\n"
            f"Subject: relogin bench {n}\n\n{body}\n")


class InetdServer:
    def __init__(self, argv):
        self.argv = argv

    @contextlib.contextmanager
    def session(self):
        with h.InetdSession(self.argv, timeout=120) as s:
            yield s.conn


class DaemonServer:
    """popgate -D on loopback (fork or pool mode)."""

    def __init__(self, daemon):
        self.daemon = daemon

    @contextlib.contextmanager
    def session(self):
        with self.daemon.connect(timeout=120) as conn:
            yield conn


def timed_login(server, user, want_count):
    """(PASS latency, whole session) in seconds."""
    start = time.monotonic()
    with server.session() as conn:
        greeting = conn.greeting()
        if not greeting.startswith(b"+OK"):
            raise SystemExit(f"greeting {greeting!r}")
        conn.cmd_ok(f"USER {user.name}")
        sent = time.monotonic()
        reply = conn.cmd(f"PASS {user.password}")
        login = time.monotonic() - sent
        if not reply.startswith(b"+OK"):
            raise SystemExit(f"PASS -> {reply!r}")
        stat = conn.cmd_ok("STAT")
        conn.cmd_ok("QUIT")
        session = time.monotonic() - start
    count = int(stat.split()[1])
    if count != want_count:
        raise SystemExit(f"STAT says {count}, expected {want_count}")
    return login, session


def main():
    args = parse_args(__doc__)
    h.require_root()
    popa3d = h.popa3d_bin()
    if popa3d is None:
        raise SystemExit("popa3d is not installed (apt-get install popa3d)")

    root = h.make_test_root("popgate-relogin-")
    user = h.SystemUser(prefix="pgr")
    pool_user = h.SystemUser(prefix="pgp")
    daemon = None
    fork_daemon = None
    try:
        subprocess.run(["chpasswd", "-c", "SHA512", "-s", "5000"], check=True,
                       input=f"{user.name}:{user.password}\n".encode())
        spool = h.Spool(root)
        state = os.path.join(root, "state")
        os.mkdir(state)
        os.chmod(state, 0o755)
        mbox = spool.mbox_path(user.name)
        count = make_mbox(mbox, args.mb, args.kb, user.name)
        os.chown(mbox, user.uid, h.mail_gid())
        os.chmod(mbox, 0o660)
        old = time.time() - 3600  # popa3d sleeps 1 s on an mtime of "now"
        os.utime(mbox, (old, old))
        with open(mbox, "rb") as f:
            while f.read(1 << 24):
                pass
        size = os.path.getsize(mbox)
        print(f"mbox: {size / 1e6:.0f} MB, {count} messages of {args.kb} KB "
              f"(LF); popgate {args.popgate}; popa3d {popa3d}")
        pool_state = os.path.join(root, "pool-state")
        os.mkdir(pool_state)
        os.chown(pool_state, pool_user.uid, h.mail_gid())
        os.chmod(pool_state, 0o750)
        daemon = h.Daemon([
            "--auth=pam", "--pam_service=popa3d", f"--mail=mbox:{spool.path}/%u",
            f"--state_dir={pool_state}", "--mode=pool", "--workers=1",
            f"--pool_user={pool_user.name}", "--pool_group=mail",
            "--min_session_slot=0"], root, binary=args.popgate)
        daemon.start()
        fork_state = os.path.join(root, "fork-state")
        os.mkdir(fork_state)
        os.chmod(fork_state, 0o755)
        fork_daemon = h.Daemon([
            "--auth=pam", "--pam_service=popa3d", f"--mail=mbox:{spool.path}/%u",
            f"--state_dir={fork_state}", "--min_session_slot=0"], root,
            binary=args.popgate)
        fork_daemon.start()
        servers = {
            "popa3d": InetdServer(h.in_mail_namespace(spool.path, [popa3d])),
            "popgate": InetdServer(h.in_mail_namespace(spool.path, [
                args.popgate, "--auth=pam", "--pam_service=popa3d",
                "--mail=mbox:/var/mail/%u", f"--state_dir={state}"])),
            "popgate-d": DaemonServer(fork_daemon),
            "popgate-pool": DaemonServer(daemon),
        }
        body = "one new message\n" * 20
        logins = {name: [] for name in servers}
        sessions = {name: [] for name in servers}
        for name, server in servers.items():
            login, session = timed_login(server, user, count)
            print(f"{name}: first login {login * 1000:.1f} ms "
                  f"(session {session * 1000:.1f} ms)")
        for trial in range(args.trials):
            for name, server in servers.items():  # interleaved: shared noise
                count += 1
                old = time.time() - 3600
                spool.append_locked(user.name,
                                    new_message(count, user.name, body).encode())
                os.utime(mbox, (old, old))
                login, session = timed_login(server, user, count)
                logins[name].append(login)
                sessions[name].append(session)
                print(f"trial {trial + 1} {name}: login {login * 1000:.1f} ms, "
                      f"session {session * 1000:.1f} ms")
        for what, times in (("login", logins), ("session", sessions)):
            med = {n: statistics.median(t) for n, t in times.items()}
            for name, t in times.items():
                print(f"median {what} {name}: {med[name] * 1000:.1f} ms "
                      f"(min {min(t) * 1000:.1f}, max {max(t) * 1000:.1f})")
            for name in servers:
                if name != "popa3d":
                    print(f"{what} ratio popa3d / {name}: "
                          f"{med['popa3d'] / med[name]:.1f}x")
    finally:
        stop_daemon(fork_daemon)
        stop_daemon(daemon)
        pool_user.remove()
        user.remove()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
