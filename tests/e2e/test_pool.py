"""End-to-end: popgate -D --mode=pool (a root master, one root auth process,
N unprivileged io_uring workers).

Sessions through poplib and raw sockets, 100 at once; every refusal cause of
the master (per-source cap, global cap, prefix aggregation, connect rate,
with and without --refuse_with_error); auth-failure penalties and lockout;
a full auth queue; SIGKILL of a worker and of the auth process; SIGHUP with
a changed passwd-file; SIGTERM drain; the pre-auth deadline (slowloris); the
write timeout on a client that never reads, with bounded daemon memory; the
uids, gids and groups of every child.

Skips when the daemon has no --mode=pool. Each test starts its own daemon;
every socket read has a timeout and every wait a deadline.

Run: sudo POPGATE_BIN=build-e2e/net/popgate python3 -m unittest -v test_pool
"""

import fcntl
import os
import poplib
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest
import warnings

import popgate_harness as h
from test_poplib import fixture_mbox

TEMP = b"-ERR [SYS/TEMP]"


def read_to_eof(conn, timeout):
    """(bytes, eof): everything the peer sends within `timeout`, and whether
    it closed (EOF or reset) in that time."""
    deadline = time.monotonic() + timeout
    got = bytes(conn.buf)
    conn.buf.clear()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return got, False
        conn.sock.settimeout(remaining)
        try:
            chunk = conn.sock.recv(1 << 20)
        except socket.timeout:
            return got, False
        except (ConnectionResetError, ConnectionAbortedError):
            return got, True
        if not chunk:
            return got, True
        got += chunk


class _PoolBase(unittest.TestCase):
    """Users, spool and passwd-file shared by a class; a daemon per test."""

    @classmethod
    def setUpClass(cls):
        h.require_root()
        h.require_pool_mode()
        cls.made = []
        try:
            cls.user = h.SystemUser()
            cls.made.append(cls.user)
            cls.user2 = h.SystemUser()
            cls.made.append(cls.user2)
            # The pool account: the workers' uid; group mail opens the spool.
            cls.pool = h.SystemUser(prefix="pgp")
            cls.made.append(cls.pool)
            cls.root = h.make_test_root()
            cls.spool = h.Spool(cls.root)
            cls.passwd = os.path.join(cls.root, "passwd")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for u in getattr(cls, "made", []):
            u.remove()
        if getattr(cls, "root", None):
            shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.mbox = fixture_mbox()
        self.model = h.parse_mbox(self.mbox)
        self.spool.write(self.user.name, self.user.uid, self.mbox)
        self.spool.write(self.user2.name, self.user2.uid, self.mbox)
        self.write_passwd()

    def write_passwd(self, extra_lines=()):
        entries = [(u.name, u.password, u.uid, u.gid, "/nonexistent")
                   for u in (self.user, self.user2)]
        tmp = self.passwd + ".new"
        h.write_passwd_file(tmp, entries)
        with open(tmp, "a") as f:
            f.writelines(extra_lines)
        os.replace(tmp, self.passwd)

    def start(self, *args, workers=2):
        """A pool daemon with admission opened up (no rate limit, no slot
        hold, /32 sources); `args` come last and override."""
        common = h.popgate_common_args(self.root, self.spool, self.passwd)
        state = os.path.join(self.root, "state")
        # The workers keep per-uid state (redo records) there as the pool user.
        os.chown(state, self.pool.uid, h.mail_gid())
        os.chmod(state, 0o750)
        argv = common + [
            "--mode=pool", f"--workers={workers}",
            f"--pool_user={self.pool.name}", "--pool_group=mail",
            "--min_session_slot=0", "--max_sessions=1000",
            "--max_sessions_per_source=500", "--rate_per_source=0",
            "--source_prefix_v4=32"] + list(args)
        d = h.PoolDaemon(argv, self.root)
        self.addCleanup(d.kill)
        d.start()
        return d

    def login(self, d, source=None, user=None, password=None, timeout=h.IO_TIMEOUT):
        u = user or self.user
        c = d.connect(source=source, timeout=timeout)
        self.addCleanup(c.close)
        r = c.login(u.name, password or u.password)
        self.assertTrue(r.startswith(b"+OK"), f"PASS from {source} -> {r!r}")
        return c

    def wire(self, msn):
        return h.expected_retr(h.message_data(self.mbox, self.model[msn - 1]))

    def assert_session_works(self, c, what):
        r = c.cmd("STAT")
        self.assertEqual(r[:5], b"+OK 4", f"{what}: STAT -> {r!r}")
        r, body = c.cmd_multi("RETR 2")
        self.assertEqual(body, self.wire(2), f"{what}: RETR 2 -> {r!r}")
        self.assertTrue(c.cmd("QUIT").startswith(b"+OK"), f"{what}: QUIT")
        self.assertIs(c.expect_eof(5), True, f"{what}: no EOF after QUIT")

    def greeted(self, d, source, timeout=10):
        """A connection from `source` that got its +OK greeting (admitted)."""
        c = d.connect(source=source, timeout=timeout)
        self.addCleanup(c.close)
        g = c.greeting()
        self.assertTrue(g.startswith(b"+OK"), f"greeting for {source}: {g!r}")
        return c

    def assert_refused(self, d, source, with_error, what):
        """The connection is closed at once: without a byte, or (with
        --refuse_with_error) after exactly one -ERR [SYS/TEMP] line."""
        try:
            c = d.connect(source=source, timeout=10)
        except (ConnectionRefusedError, ConnectionResetError):
            self.assertFalse(with_error, f"{what}: reset before the -ERR line")
            return
        with c:
            got, eof = read_to_eof(c, 5)
        self.assertTrue(eof, f"{what}: not closed within 5 s (got {got!r})")
        if with_error:
            self.assertTrue(got.startswith(TEMP) and got.endswith(b"\r\n") and
                            got.count(b"\n") == 1, f"{what}: got {got!r}")
        else:
            self.assertEqual(got, b"", f"{what}: expected silence")

    def admitted_within(self, d, source, timeout, what):
        """Retries until a connection from `source` is greeted; returns it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                c = d.connect(source=source, timeout=5)
            except (ConnectionRefusedError, ConnectionResetError) as e:
                last = e
                time.sleep(0.2)
                continue
            g = c.greeting()
            if g.startswith(b"+OK"):
                self.addCleanup(c.close)
                return c
            last = g
            c.close()
            time.sleep(0.2)
        self.fail(f"{what}: {source} not admitted within {timeout}s (last: {last!r})")


class Sessions(_PoolBase):
    def test_poplib_login_stat_retr_uidl_quit(self):
        d = self.start()
        p = poplib.POP3("127.0.0.1", d.port, timeout=10)
        self.addCleanup(p.close)
        self.assertTrue(p.getwelcome().startswith(b"+OK"))
        p.user(self.user.name)
        self.assertTrue(p.pass_(self.user.password).startswith(b"+OK"))
        sizes = [h.expected_size(h.message_data(self.mbox, m)) for m in self.model]
        self.assertEqual(p.stat(), (4, sum(sizes)))
        _, lines, _ = p.uidl()
        self.assertEqual(lines, [f"{i} {m.uidl}".encode()
                                 for i, m in enumerate(self.model, 1)])
        for i, m in enumerate(self.model, 1):
            resp, lines, octets = p.retr(i)
            self.assertTrue(resp.startswith(b"+OK"), resp)
            want = [l[:-2] for l in h.wire_lines(h.message_data(self.mbox, m))]
            self.assertEqual(lines, want, f"RETR {i}")
            self.assertEqual(octets, sizes[i - 1], f"RETR {i} octets")
        self.assertTrue(p.quit().startswith(b"+OK"))
        self.assertEqual(self.spool.read(self.user.name), self.mbox)

    def test_dele_quit_applies(self):
        d = self.start()
        c = self.login(d)
        c.cmd_ok("DELE 1")
        self.assertTrue(c.cmd("QUIT").startswith(b"+OK"))
        self.assertIs(c.expect_eof(5), True)
        self.assertEqual(self.spool.read(self.user.name),
                         self.mbox[self.model[0].raw_end:])

    def test_login_waiting_for_a_locked_mbox_does_not_stall_the_worker(self):
        """The maildrop is opened on the worker's opener thread. While an MDA
        holds user2's mbox lock, user2's PASS waits for it, and user's
        session on the same (only) worker is served meanwhile; once the lock
        goes, user2 logs in. (With the open on the event loop, user's STAT
        waited for the lock too, and this test timed out.)"""
        d = self.start(workers=1)
        busy = self.login(d)
        with open(self.spool.mbox_path(self.user2.name), "r+b") as mbox:
            fcntl.lockf(mbox, fcntl.LOCK_EX)  # a POSIX record lock, as MDAs take
            waiting = d.connect()
            self.addCleanup(waiting.close)
            self.assertTrue(waiting.greeting().startswith(b"+OK"))
            waiting.cmd_ok(f"USER {self.user2.name}")
            waiting.send(f"PASS {self.user2.password}\r\n")
            # The password checked, the worker opens the mailbox next.
            passed = f"Authentication passed for {self.user2.name}".encode()
            deadline = time.monotonic() + 10
            while passed not in d.stderr() and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertIn(passed, d.stderr())
            for msn in range(1, len(self.model) + 1):
                r, body = busy.cmd_multi(f"RETR {msn}")
                self.assertEqual(body, self.wire(msn), f"RETR {msn} -> {r!r}")
            self.assertEqual(waiting.buf, b"")
            with self.assertRaises(socket.timeout):
                waiting.readline(timeout=0.3)  # still waiting for the lock
            fcntl.lockf(mbox, fcntl.LOCK_UN)
        self.assertTrue(waiting.readline().startswith(b"+OK"))
        self.assert_session_works(waiting, "after the lock went")
        self.assert_session_works(busy, "beside the wait")

    def test_wrong_password_text(self):
        d = self.start()
        c = d.connect()
        self.addCleanup(c.close)
        self.assertEqual(c.login(self.user.name, "wrong-" + self.user.password).rstrip(),
                         h.AUTH_FAILED)

    def test_100_concurrent_sessions(self):
        import random  # noqa: PLC0415
        d = self.start()
        errors = []
        start = threading.Barrier(100, timeout=60)

        def client(k):
            rnd = random.Random(k)
            u = (self.user, self.user2)[k % 2]
            try:
                with d.connect(source=f"127.0.{40 + k % 4}.{1 + k % 200}",
                               timeout=30) as c:
                    start.wait()
                    r = c.login(u.name, u.password)
                    if not r.startswith(b"+OK"):
                        raise AssertionError(f"PASS -> {r!r}")
                    r = c.cmd("STAT")
                    if not r.startswith(b"+OK 4 "):
                        raise AssertionError(f"STAT -> {r!r}")
                    for _ in range(3):
                        i = rnd.randint(1, 4)
                        r, body = c.cmd_multi(f"RETR {i}")
                        if body != self.wire(i):
                            raise AssertionError(f"RETR {i}: {r!r}, {len(body or b'')} bytes")
                    r, body = c.cmd_multi("UIDL")
                    if h.parse_listing(body or b"") != {i: m.uidl for i, m in
                                                        enumerate(self.model, 1)}:
                        raise AssertionError(f"UIDL {r!r} {body!r}")
                    if not c.cmd("QUIT").startswith(b"+OK"):
                        raise AssertionError("QUIT")
                    if c.expect_eof(10) is not True:
                        raise AssertionError("no EOF after QUIT")
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append(f"client {k}: {e!r}")

        threads = [threading.Thread(target=client, args=(k,), daemon=True)
                   for k in range(100)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.assertFalse(any(t.is_alive() for t in threads), "clients stuck")
        self.assertEqual(errors, [])
        self.assertEqual(self.spool.read(self.user.name), self.mbox)


class Refusals(_PoolBase):
    def test_per_source_cap(self):
        d = self.start("--max_sessions_per_source=3")
        conns = [self.greeted(d, "127.0.21.1") for _ in range(3)]
        self.assert_refused(d, "127.0.21.1", False, "4th session from 127.0.21.1")
        self.greeted(d, "127.0.22.1")
        # A session that ends gives its slot back (--min_session_slot=0).
        self.assertTrue(conns[0].cmd("QUIT").startswith(b"+OK"))
        self.assertIs(conns[0].expect_eof(5), True)
        self.admitted_within(d, "127.0.21.1", 5, "after one of 3 sessions ended")
        self.assert_refused(d, "127.0.21.1", False, "cap reached again")

    def test_global_cap_with_error_line(self):
        d = self.start("--max_sessions=4", "--max_sessions_per_source=4",
                       "--refuse_with_error")
        for i in range(4):
            self.greeted(d, f"127.0.23.{i + 1}")
        self.assert_refused(d, "127.0.24.1", True, "5th session in all")
        self.assert_refused(d, "127.0.23.1", True, "5th session in all, known source")

    def test_prefix_aggregation_v4_24(self):
        d = self.start("--source_prefix_v4=24", "--max_sessions_per_source=2")
        self.greeted(d, "127.0.25.1")
        self.greeted(d, "127.0.25.2")
        self.assert_refused(d, "127.0.25.3", False, "3rd session from 127.0.25.0/24")
        self.greeted(d, "127.0.26.1")

    def quick_connections(self, d, source, n):
        """n connections opened back to back (so the master accepts them
        within milliseconds of each other), greetings read afterwards."""
        conns = []
        for _ in range(n):
            c = d.connect(source=source, timeout=10)
            self.addCleanup(c.close)
            conns.append(c)
        return conns

    def check_rate(self, with_error):
        args = ["--rate_per_source=2", "--burst_per_source=3"]
        d = self.start(*args + (["--refuse_with_error"] if with_error else []))
        src = "127.0.27.1"
        conns = self.quick_connections(d, src, 4)
        for i, c in enumerate(conns[:3]):
            g = c.greeting()
            self.assertTrue(g.startswith(b"+OK"), f"connection {i + 1}: {g!r}")
        got, eof = read_to_eof(conns[3], 5)
        self.assertTrue(eof, f"4th quick connection not closed (got {got!r})")
        if with_error:
            self.assertTrue(got.startswith(TEMP) and got.count(b"\n") == 1,
                            f"4th quick connection: {got!r}")
        else:
            self.assertEqual(got, b"", "4th quick connection: expected silence")
        self.greeted(d, "127.0.28.1")  # another source has its own bucket
        # 2 tokens a second: the source is served again a second later.
        time.sleep(1.1)
        self.greeted(d, src)

    def test_rate_fourth_quick_connection_refused_silently(self):
        self.check_rate(with_error=False)

    def test_rate_fourth_quick_connection_gets_error_line(self):
        self.check_rate(with_error=True)


class AuthPenalties(_PoolBase):
    def pass_time(self, d, source, password, timeout=20):
        with d.connect(source=source, timeout=timeout) as c:
            g = c.greeting()
            self.assertTrue(g.startswith(b"+OK"), g)
            c.cmd_ok(f"USER {self.user.name}")
            t0 = time.monotonic()
            r = c.cmd(f"PASS {password}")
            took = time.monotonic() - t0
        self.assertTrue(r, f"no reply to PASS from {source} within {timeout}s")
        return r, took

    def test_growing_delay_then_lockout(self):
        d = self.start("--auth_cache_ttl=0", "--auth_fail_delay=400ms",
                       "--auth_fail_max_delay=800ms", "--auth_lockout_failures=6",
                       "--auth_lockout=3s")
        src, other = "127.0.30.1", "127.0.31.1"
        times = []
        for k in range(6):
            r, took = self.pass_time(d, src, f"wrong{k}")
            self.assertEqual(r.rstrip(), h.AUTH_FAILED, f"wrong password {k + 1}")
            times.append(took)
        msg = f"PASS reply times (s): {[round(t, 3) for t in times]}"
        # The first two are free; then 400 ms, 800 ms, 800 ms (capped).
        self.assertGreaterEqual(times[2], 0.35, msg)
        self.assertGreaterEqual(min(times[3], times[4]), 0.7, msg)
        self.assertGreater(min(times[3], times[4]), max(times[0], times[1]) + 0.3, msg)
        self.assertLess(max(times), 5, msg)
        # Locked out: even the right password is refused, without waiting long.
        r, took = self.pass_time(d, src, self.user.password)
        locked_at = time.monotonic()
        self.assertTrue(r.startswith(b"-ERR"), f"right password while locked out: {r!r}")
        self.assertLess(took, 5)
        # Penalties are per source.
        r, _ = self.pass_time(d, other, self.user.password)
        self.assertTrue(r.startswith(b"+OK"), f"another source: {r!r}")
        # After --auth_lockout the source logs in again.
        time.sleep(max(0.0, locked_at + 3.5 - time.monotonic()))
        r, _ = self.pass_time(d, src, self.user.password)
        if not r.startswith(b"+OK"):
            time.sleep(1.5)
            r, _ = self.pass_time(d, src, self.user.password)
        self.assertTrue(r.startswith(b"+OK"), f"after the lockout: {r!r}")

    def test_auth_queue_overflow(self):
        # One thread, one queued request, a ~0.5 s hash: most of 12 parallel
        # PASS are answered [SYS/TEMP] at once; every one gets an answer.
        slow = f"{self.user.name}q"
        slow_pw = "slow-" + self.user.password
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # noqa: PLC0415
        hashed = crypt.crypt(slow_pw, "$6$rounds=1000000$popgateslowhash$")
        self.write_passwd([f"{slow}:{{SHA512-CRYPT}}{hashed}:{self.user.uid}:"
                           f"{self.user.gid}::/nonexistent:\n"])
        d = self.start("--auth_threads=1", "--auth_queue=1", "--auth_cache_ttl=0")
        n = 12
        results = [None] * n
        ready = threading.Barrier(n, timeout=30)

        def client(k):
            try:
                with d.connect(source=f"127.0.32.{k + 1}", timeout=40) as c:
                    c.greeting()
                    c.cmd_ok(f"USER {slow}")
                    ready.wait()
                    t0 = time.monotonic()
                    r = c.cmd(f"PASS {slow_pw}")
                    results[k] = (r, time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001 - reported below
                results[k] = (repr(e).encode(), None)

        threads = [threading.Thread(target=client, args=(k,), daemon=True)
                   for k in range(n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.assertFalse(any(t.is_alive() for t in threads), f"clients stuck: {results}")
        replies = [r for r, _ in results]
        for k, r in enumerate(replies):
            self.assertTrue(r.startswith(b"+OK") or r.startswith(TEMP),
                            f"client {k + 1}: {r!r} (all: {results})")
        self.assertGreaterEqual(sum(r.startswith(b"+OK") for r in replies), 1, results)
        self.assertGreaterEqual(sum(r.startswith(TEMP) for r in replies), 1, results)
        # The queue drains: a later login succeeds.
        c = d.connect(source="127.0.33.1", timeout=30)
        self.addCleanup(c.close)
        r = c.login(slow, slow_pw)
        self.assertTrue(r.startswith(b"+OK"), f"after the overflow: {r!r}")


class ProcessDeaths(_PoolBase):
    def test_worker_killed_sessions_served_slots_released(self):
        cap, src = 4, "127.0.35.1"
        d = self.start(f"--max_sessions_per_source={cap}")
        _, workers = d.wait_children(2)
        conns = [self.login(d, source=src) for _ in range(cap)]
        self.assert_refused(d, src, False, "cap reached")
        killed, dead = [], []
        for w in workers:
            os.kill(w, signal.SIGKILL)
            killed.append(w)
            time.sleep(0.5)
            dead = [c for c in conns if read_to_eof(c, 1.0)[1]]
            if dead:
                break
        self.assertTrue(dead, "no session ended after killing every worker")
        alive = [c for c in conns if c not in dead]
        d.wait_children(2, timeout=10, exclude=killed)
        # The dead sessions' slots are released: the source reaches its cap again.
        for i in range(len(dead)):
            c = self.admitted_within(d, src, 10, f"replacement session {i + 1}")
            c.cmd_ok(f"USER {self.user.name}")
            self.assertTrue(c.cmd(f"PASS {self.user.password}").startswith(b"+OK"))
            alive.append(c)
        self.assert_refused(d, src, False, "cap reached after the replacements")
        for i, c in enumerate(alive):
            self.assert_session_works(c, f"session {i + 1} after the worker died")
        self.assertIsNone(d.proc.poll(), "the master exited")

    def test_auth_process_killed_then_respawned(self):
        d = self.start()
        auth, _ = d.wait_children(2)
        before = self.login(d, source="127.0.36.1")
        os.kill(auth, signal.SIGKILL)
        # The master may also replace the workers (their auth channel died);
        # an old one lives on while it drains `before`.
        d.wait_children(2, timeout=10, exclude=[auth], exact=False)
        deadline = time.monotonic() + 15
        k, seen = 0, []
        while True:
            k += 1
            with d.connect(source=f"127.0.37.{k % 250 + 1}", timeout=10) as c:
                r = c.login(self.user.name, self.user.password)
                if r.startswith(b"+OK"):
                    c.cmd_ok("QUIT")
                    break
            seen.append(r)
            self.assertTrue(r.startswith(TEMP), f"login while auth restarts: {r!r}")
            self.assertLess(time.monotonic(), deadline,
                            f"no login 15 s after the auth process died: {seen[-3:]}")
            time.sleep(0.3)
        self.assert_session_works(before, "session logged in before the auth process died")


class Signals(_PoolBase):
    def test_sighup_reloads_passwords_session_survives(self):
        d = self.start()
        old_pw = self.user.password
        a = self.login(d, source="127.0.38.1")  # also puts old_pw in the cache
        new_pw = h.random_password()
        self.user.password = new_pw
        self.addCleanup(setattr, self.user, "password", old_pw)
        self.write_passwd()
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        k = 0
        while True:
            k += 1
            with d.connect(source=f"127.0.39.{k}", timeout=10) as c:
                r = c.login(self.user.name, new_pw)
            if r.startswith(b"+OK"):
                break
            self.assertLess(time.monotonic(), deadline,
                            f"new password refused 10 s after SIGHUP: {r!r}")
            time.sleep(0.3)
        with d.connect(source="127.0.40.1", timeout=10) as c:
            r = c.login(self.user.name, old_pw)
        self.assertEqual(r.rstrip(), h.AUTH_FAILED, "old password after SIGHUP")
        self.assert_session_works(a, "session open across SIGHUP")
        self.assertIsNone(d.proc.poll(), "the master exited on SIGHUP")

    def test_sigterm_drains_open_session_then_exits(self):
        d = self.start("--drain_timeout=30s")
        a = self.login(d, source="127.0.41.1")
        d.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:
            try:
                c = d.connect(timeout=2)
            except (ConnectionRefusedError, ConnectionResetError):
                break
            c.close()
            self.assertLess(time.monotonic(), deadline, "still accepting 5 s after SIGTERM")
            time.sleep(0.1)
        self.assertIsNone(d.proc.poll(), "exited with a session running")
        self.assert_session_works(a, "session open at SIGTERM")
        try:
            d.proc.wait(h.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"still running {h.STOP_TIMEOUT}s after its last session ended")
        self.assertEqual(d.leftover_processes(), [])

    def test_drain_timeout_ends_idle_session(self):
        d = self.start("--drain_timeout=2s")
        a = self.login(d, source="127.0.42.1")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        _, eof = read_to_eof(a, 2 + 6)
        self.assertTrue(eof, "idle session not ended by --drain_timeout=2s")
        try:
            d.proc.wait(max(0.1, t0 + 2 + h.STOP_TIMEOUT - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.fail("daemon still running past --drain_timeout + 5 s")
        self.assertEqual(d.leftover_processes(), [])


class Deadlines(_PoolBase):
    def trickle(self, c, chunks, limit):
        """Sends the next chunk every 0.2 s; returns the seconds until the
        server closed, or None if it did not within `limit`."""
        t0 = time.monotonic()
        for chunk in chunks:
            if time.monotonic() - t0 > limit:
                return None
            try:
                c.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - t0
            _, eof = read_to_eof(c, 0.2)
            if eof:
                return time.monotonic() - t0
        return None

    def test_slowloris_closed_by_preauth_timeout(self):
        d = self.start("--preauth_timeout=2s")
        c = d.connect(source="127.0.43.1")
        self.addCleanup(c.close)
        self.assertTrue(c.greeting().startswith(b"+OK"))
        took = self.trickle(c, [b"USER "] + [b"a"] * 100, 8)
        self.assertIsNotNone(took, "a never-ending line was not cut off in 8 s")
        self.assertGreater(took, 1.5)

    def test_complete_lines_without_login_closed_by_preauth_timeout(self):
        d = self.start("--preauth_timeout=2s")
        c = d.connect(source="127.0.43.2")
        self.addCleanup(c.close)
        self.assertTrue(c.greeting().startswith(b"+OK"))
        took = self.trickle(c, [b"NOOP\r\n"] * 100, 8)
        self.assertIsNotNone(took, "pre-auth NOOPs kept the connection past 8 s")
        self.assertGreater(took, 1.5)

    def test_preauth_timeout_ends_at_login(self):
        d = self.start("--preauth_timeout=2s")
        c = self.login(d, source="127.0.43.3")
        time.sleep(3)
        self.assertTrue(c.cmd("NOOP").startswith(b"+OK"),
                        "a logged-in session was cut by the pre-auth deadline")
        self.assert_session_works(c, "logged-in session past --preauth_timeout")

    def test_reader_that_never_reads_cut_off_memory_bounded(self):
        # One ~24 MB message, far more than the socket buffers hold.
        line = b"x" * 76
        big = h.make_mbox([h.make_message(1, body_lines=[line] * (24 * 1024 * 1024 // 77))])
        self.spool.write(self.user2.name, self.user2.uid, big)
        model = h.parse_mbox(big)
        full = len(h.expected_retr(h.message_data(big, model[0])))
        d = self.start("--write_timeout=2s")
        d.wait_children(2)
        clients = []
        for k in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            s.bind((f"127.0.44.{k + 1}", 0))
            s.settimeout(10)
            s.connect(("127.0.0.1", d.port))
            c = h.Pop3Conn(s, 10)
            self.addCleanup(c.close)
            r = c.login(self.user2.name, self.user2.password)
            self.assertTrue(r.startswith(b"+OK"), r)
            clients.append(c)
        base = d.rss_anon_kb()
        for c in clients:
            c.send(b"RETR 1\r\n")
        peak = base
        t_end = time.monotonic() + 5  # write_timeout 2 s + margin
        while time.monotonic() < t_end:
            peak = max(peak, d.rss_anon_kb())
            time.sleep(0.25)
        grew_mb = (peak - base) / 1024
        self.assertLess(grew_mb, 16, f"daemon anonymous RSS grew {grew_mb:.1f} MB with "
                        f"3 stalled RETRs of {full >> 20} MB each")
        for k, c in enumerate(clients):
            got, eof = read_to_eof(c, 30)
            self.assertTrue(eof, f"client {k + 1}: not closed after the write timeout")
            self.assertLess(len(got), full, f"client {k + 1}: the whole message was "
                            "sent; the stalled write was never cut off")
        with d.connect(source="127.0.44.9") as c:
            r = c.login(self.user.name, self.user.password)
            self.assertTrue(r.startswith(b"+OK"), f"after the cut-offs: {r!r}")


class Privileges(_PoolBase):
    def test_workers_unprivileged_auth_only_root_child(self):
        d = self.start(workers=3)
        self.login(d).cmd_ok("STAT")
        auth, workers = d.wait_children(3)
        mail = h.mail_gid()
        for w in workers:
            uids, gids, groups = h.proc_ids(w)
            self.assertEqual(uids, (self.pool.uid,) * 4, f"worker {w} uids")
            self.assertEqual(gids, (mail,) * 4, f"worker {w} gids")
            self.assertNotIn(0, groups, f"worker {w} groups {groups}")
            self.assertTrue(set(groups) <= {mail}, f"worker {w} groups {groups}")
            st = h.proc_status(w)
            self.assertEqual(int(st["CapEff"], 16), 0, f"worker {w} CapEff")
            self.assertEqual(int(st["CapPrm"], 16), 0, f"worker {w} CapPrm")
        uids, _, _ = h.proc_ids(auth)
        self.assertEqual(uids[1], 0, "the auth process keeps root")
        self.assertEqual(sorted(d.children()), sorted([auth] + workers),
                         "the master has other children")
        roots = [p for p in h.tree_pids(d.proc.pid)[1:] if h.proc_ids(p)[0][1] == 0]
        self.assertEqual(roots, [auth], "root processes below the master")


if __name__ == "__main__":
    unittest.main()
