#!/usr/bin/env python3
"""A first login on a big mailbox, seen from another session of the same pool worker.

    sudo bench/open_stall.py [--popgate=build/net/popgate] [--mb=1024] [--kb=100]
                             [--trials=5]

popgate -D --mode=pool --workers=1 on loopback, passwd-file auth, two
throwaway users in a private spool: `big` with an --mb MB mbox of --kb KB LF
messages, `small` with ten 4 KB messages. `small` logs in once and keeps its
session. Per trial, `big`'s index cache is deleted (its next login indexes
the whole mailbox, as a first login does), then a thread sends NOOP after
NOOP on `small`'s session while `big` logs in. Printed per trial: big's
PASS -> +OK time, and the NOOP round trips of small's session during that
login (the slowest and the median) against those of the 0.3 s before it.

Before the maildrop opener (a worker opened mailboxes on its event loop),
every session of the worker waited for the whole index build: the slowest
NOOP took as long as big's login. With it, small's NOOPs only share the two
cores with the index build.
"""
import glob
import os
import shutil
import statistics
import threading
import time

from big_mailbox import h, parse_args, stop_daemon


def make_mbox(path, megabytes, kb):
    line = b"x" * 75 + b"\n"
    body = line * (kb * 1024 // len(line))
    count = 0
    with open(path, "wb") as f:
        while f.tell() < megabytes * 1_000_000:
            count += 1
            f.write(b"From sender@example.org Thu Nov 26 10:00:00 2026\n"
                    b"Subject: m%d\n\n" % count + body + b"\n")
    return count


def noop_loop(conn, stop, samples):
    """NOOP round trips (send time, seconds) until `stop` is set; bounded."""
    for _ in range(1_000_000):
        if stop.is_set():
            return
        sent = time.monotonic()
        conn.cmd_ok("NOOP")
        samples.append((sent, time.monotonic() - sent))


def main():
    args = parse_args(__doc__)
    h.require_root()

    root = h.make_test_root("popgate-open-stall-")
    big = h.SystemUser(prefix="pgb")
    small = h.SystemUser(prefix="pgs")
    pool = h.SystemUser(prefix="pgp")
    daemon = None
    try:
        spool = h.Spool(root)
        count = make_mbox(spool.mbox_path(big.name), args.mb, args.kb)
        os.chown(spool.mbox_path(big.name), big.uid, h.mail_gid())
        os.chmod(spool.mbox_path(big.name), 0o660)
        small_box = b"".join(
            b"From a@example.org Thu Nov 26 10:00:00 2026\n\n" + b"y" * 4095 + b"\n\n"
            for _ in range(10))
        spool.write(small.name, small.uid, small_box)
        with open(spool.mbox_path(big.name), "rb") as f:  # page cache warm
            while f.read(1 << 24):
                pass
        passwd = os.path.join(root, "passwd")
        h.write_passwd_file(passwd, [(u.name, u.password, u.uid, u.gid, "/nonexistent")
                                     for u in (big, small)])
        state = os.path.join(root, "pool-state")
        os.mkdir(state)
        os.chown(state, pool.uid, h.mail_gid())
        os.chmod(state, 0o750)
        daemon = h.Daemon([
            f"--auth=passwd-file:{passwd}", f"--mail=mbox:{spool.path}/%u",
            f"--state_dir={state}", "--mode=pool", "--workers=1",
            f"--pool_user={pool.name}", "--pool_group=mail",
            "--min_session_slot=0"], root, binary=args.popgate)
        daemon.start()
        print(f"big: {os.path.getsize(spool.mbox_path(big.name)) / 1e6:.0f} MB, "
              f"{count} messages of {args.kb} KB (LF); popgate {args.popgate}")

        kept = daemon.connect(timeout=120)
        if not kept.login(small.name, small.password).startswith(b"+OK"):
            raise SystemExit("small's login failed")
        logins, worst, medians, base_medians = [], [], [], []
        for trial in range(args.trials):
            # <state>/<pool uid>/<big's uid>/mbox-<dev>-<ino>.index
            caches = glob.glob(os.path.join(state, "*", str(big.uid), "mbox-*.index"))
            if trial > 0 and not caches:
                raise SystemExit("big's index cache not found")
            for cache in caches:
                os.unlink(cache)
            stop = threading.Event()
            samples = []
            noops = threading.Thread(target=noop_loop, args=(kept, stop, samples))
            noops.start()
            time.sleep(0.3)
            with daemon.connect(timeout=120) as conn:
                conn.greeting()
                conn.cmd_ok(f"USER {big.name}")
                start = time.monotonic()
                reply = conn.cmd(f"PASS {big.password}")
                end = time.monotonic()
                if not reply.startswith(b"+OK"):
                    raise SystemExit(f"big's PASS -> {reply!r}")
                conn.cmd_ok("QUIT")
            stop.set()
            noops.join(timeout=130)
            during = [rtt for sent, rtt in samples if sent + rtt >= start and sent <= end]
            before = [rtt for sent, rtt in samples if sent + rtt < start]
            if not during or not before:
                raise SystemExit("no NOOP sample around the login")
            logins.append(end - start)
            worst.append(max(during))
            medians.append(statistics.median(during))
            base_medians.append(statistics.median(before))
            print(f"trial {trial + 1}: big's login {logins[-1] * 1000:.0f} ms; small's NOOP "
                  f"during it: slowest {worst[-1] * 1000:.1f} ms, median "
                  f"{medians[-1] * 1000:.2f} ms ({len(during)} NOOPs); before it: median "
                  f"{base_medians[-1] * 1000:.2f} ms")
        kept.cmd_ok("QUIT")
        print(f"median: big's login {statistics.median(logins) * 1000:.0f} ms; small's "
              f"slowest NOOP during it {statistics.median(worst) * 1000:.1f} ms, median NOOP "
              f"{statistics.median(medians) * 1000:.2f} ms (before: "
              f"{statistics.median(base_medians) * 1000:.2f} ms)")
    finally:
        stop_daemon(daemon)
        for u in (pool, small, big):
            u.remove()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
