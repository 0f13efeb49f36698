"""End-to-end robustness: popgate under foreign changes, lock contention,
concurrency, big and many messages, timeouts, odd mailbox files, the other
auth backends, process privileges and SIGKILL during an update.

Run: sudo POPGATE_BIN=build-e2e/net/popgate python3 -m unittest -v test_robustness
(shares the fixture and base class of test_poplib.py).
"""

import contextlib
import os
import shutil
import signal
import socket
import time
import unittest

import popgate_harness as h
from test_poplib import _Base


class ForeignChanges(_Base):
    """Someone else (another MUA, a second session) rewrites the mailbox while
    a session is open: never lose or resurrect mail (DESIGN goal 1)."""

    def rewrite(self, data):
        with open(self.mbox_path, "r+b") as f:
            h.fcntl.lockf(f, h.fcntl.LOCK_EX)
            f.seek(0)
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
            h.fcntl.lockf(f, h.fcntl.LOCK_UN)
        t = time.time() + 5  # a visibly different mtime, even at 1 s resolution
        os.utime(self.mbox_path, (t, t))

    def assert_no_ok(self, reply, what):
        self.assertFalse(reply.startswith(b"+OK"), f"{what}: got {reply!r}")

    def test_hashed_header_edited_then_quit_applies_nothing(self):
        c = self.raw_login()
        c.cmd_ok("DELE 1")
        edited = self.mbox.replace(b"Message-ID: <m2@example.org>",
                                   b"Message-ID: <X2@example.org>", 1)
        edited = edited.replace(b"mx2.example.org", b"mX2.example.org", 1)
        self.assertEqual(len(edited), len(self.mbox))
        self.rewrite(edited)
        r = c.cmd("QUIT")
        self.assert_no_ok(r, "QUIT after a foreign rewrite")
        self.assertEqual(self.spool.read(self.user.name), edited)

    def test_truncated_then_quit_applies_nothing(self):
        c = self.raw_login()
        c.cmd_ok("DELE 1")
        shorter = b"".join(h.raw_extent(self.mbox, m) for m in self.model[:2])
        self.rewrite(shorter)
        self.assert_no_ok(c.cmd("QUIT"), "QUIT after truncation")
        self.assertEqual(self.spool.read(self.user.name), shorter)

    def test_truncated_then_retr_sends_no_message(self):
        c = self.raw_login()
        shorter = b"".join(h.raw_extent(self.mbox, m) for m in self.model[:2])
        self.rewrite(shorter)
        r = c.cmd("RETR 4")
        if r.startswith(b"+OK"):
            # The body may have started, but it must never be completed.
            with self.assertRaises((h.Pop3Error, socket.timeout)):
                c.read_multiline(timeout=5)
        self.assertEqual(self.spool.read(self.user.name), shorter)

    def test_mailbox_replaced_by_rename(self):
        # An MDA or MUA that rewrites via a temp file + rename(2): the path
        # now names another inode. Nothing in the new file may be lost.
        c = self.raw_login()
        c.cmd_ok("DELE 1")
        new = self.mbox + h.make_mbox([h.make_message(321, subject="via rename")])
        tmp = self.mbox_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(new)
        os.chown(tmp, self.user.uid, h.mail_gid())
        os.chmod(tmp, 0o660)
        os.rename(tmp, self.mbox_path)
        r = c.cmd("QUIT")
        got = self.spool.read(self.user.name)
        without_1 = new[self.model[0].raw_end:]
        self.assertIn(got, (new, without_1),
                      f"QUIT -> {r!r}; file is {len(got)} bytes, expected "
                      f"{len(new)} (untouched) or {len(without_1)} (DELE 1 applied)")

    def test_two_sessions_deleting(self):
        a = self.raw_login()
        b = self.raw_login()
        a.cmd_ok("DELE 1")
        b.cmd_ok("DELE 2")
        self.assertTrue(a.cmd("QUIT").startswith(b"+OK"))
        self.assertIs(a.expect_eof(10), True)
        rb = b.cmd("QUIT")
        got = self.spool.read(self.user.name)
        if rb.startswith(b"+OK"):
            self.assertEqual(got, self.kept_file({1, 2}), "B's +OK QUIT")
        else:
            self.assertEqual(got, self.kept_file({1}), f"B's QUIT -> {rb!r}")


class OddMailboxFiles(_Base):
    """The mailbox path is not a plain file the user owns: refuse (never hang,
    never follow, never create)."""

    def login_reply(self):
        c = self.raw()
        c.greeting()
        c.cmd_ok(f"USER {self.user.name}")
        t0 = time.monotonic()
        r = c.cmd(f"PASS {self.user.password}")
        return r, time.monotonic() - t0

    def test_fifo_refused_without_hanging(self):
        os.unlink(self.mbox_path)
        os.mkfifo(self.mbox_path, 0o660)
        os.chown(self.mbox_path, self.user.uid, h.mail_gid())
        r, took = self.login_reply()
        self.assertTrue(r.startswith(b"-ERR"), f"PASS on a FIFO mailbox -> {r!r}")
        self.assertLess(took, 5)

    def test_directory_refused(self):
        os.unlink(self.mbox_path)
        os.mkdir(self.mbox_path, 0o770)
        r, _ = self.login_reply()
        self.assertTrue(r.startswith(b"-ERR"), f"PASS on a directory mailbox -> {r!r}")
        self.assertTrue(os.path.isdir(self.mbox_path))

    def test_symlink_refused(self):
        target = os.path.join(self.root, f"target-{self.user.name}")
        with open(target, "wb") as f:
            f.write(self.mbox)
        os.chown(target, self.user.uid, h.mail_gid())
        self.addCleanup(os.unlink, target)
        os.unlink(self.mbox_path)
        os.symlink(target, self.mbox_path)
        r, _ = self.login_reply()
        self.assertTrue(r.startswith(b"-ERR"), f"PASS on a symlinked mailbox -> {r!r}")

    def test_someone_elses_file_refused(self):
        os.chown(self.mbox_path, 0, 0)
        os.chmod(self.mbox_path, 0o600)
        r, _ = self.login_reply()
        self.assertTrue(r.startswith(b"-ERR"), f"PASS on a root-owned 0600 mailbox -> {r!r}")
        with open(self.mbox_path, "rb") as f:
            self.assertEqual(f.read(), self.mbox)


class LockContention(_Base):
    """An MDA holding the fcntl lock: login and update wait or say [IN-USE];
    nothing is lost either way."""

    def hold_lock(self, seconds, deliver=b""):
        """Hold an exclusive fcntl lock from a child process (fcntl locks are
        per process) for `seconds`; returns once the lock is held. With
        `deliver`, the holder then writes it at the size it saw when it took
        the lock (pwrite, as an MDA that trusts its lock may), so a server
        that rewrote the file without the lock leaves a visible mess."""
        import multiprocessing  # noqa: PLC0415
        ready = multiprocessing.Event()

        def holder(path, ready, seconds, deliver):
            with open(path, "r+b") as f:
                h.fcntl.lockf(f, h.fcntl.LOCK_EX)
                size = os.fstat(f.fileno()).st_size
                ready.set()
                time.sleep(seconds)
                if deliver:
                    os.pwrite(f.fileno(), deliver, size)
                    os.fsync(f.fileno())

        p = multiprocessing.Process(target=holder,
                                    args=(self.mbox_path, ready, seconds, deliver))
        p.start()
        self.addCleanup(p.join, 10)
        self.assertTrue(ready.wait(10))
        return p

    def test_login_while_locked(self):
        self.hold_lock(1.5)
        c = self.raw()
        t0 = time.monotonic()
        r = c.login(self.user.name, self.user.password)
        took = time.monotonic() - t0
        print(f" [login under a 1.5 s lock: {r.strip()!r} after {took:.2f} s]", end="")
        if r.startswith(b"+OK"):
            self.assertEqual(c.cmd("STAT")[:5], b"+OK 4")
            c.cmd_ok("QUIT")
        else:
            self.assertTrue(r.startswith(b"-ERR [IN-USE]"), r)
        self.assertLess(took, 12)

    def test_quit_while_locked(self):
        c = self.raw_login()
        c.cmd_ok("DELE 2")
        new = h.make_mbox([h.make_message(55, subject="delivered under the lock")])
        holder = self.hold_lock(1.0, deliver=new)
        r = c.cmd("QUIT")
        holder.join(10)
        got = self.spool.read(self.user.name)
        if r.startswith(b"+OK"):
            self.assertEqual(got, self.kept_file({2}, new),
                             "the update did not wait for the MDA's fcntl lock")
        else:
            self.assertEqual(got, self.mbox + new, f"QUIT -> {r!r} but the file changed")


class Concurrency(_Base):
    """Many sessions reading one mailbox while an MDA keeps appending: every
    reply is exact, and afterwards the file is the original plus exactly the
    appended mail, in order."""

    def test_readers_and_appender(self):
        import random  # noqa: PLC0415
        import threading  # noqa: PLC0415
        appended, errors = [], []
        stop = threading.Event()

        def appender():
            for i in range(30):
                if stop.is_set():
                    break
                m = h.make_mbox([h.make_message(1000 + i, subject=f"append {i}")])
                self.spool.append_locked(self.user.name, m)
                appended.append(m)
                time.sleep(0.01)

        def reader(seed):
            rnd = random.Random(seed)
            try:
                c = self.server.connect()
                try:
                    r = c.login(self.user.name, self.user.password)
                    if not r.startswith(b"+OK"):
                        raise AssertionError(f"PASS -> {r!r}")
                    n = int(c.cmd("STAT").split()[1])
                    if n < 4:
                        raise AssertionError(f"STAT saw {n} messages")
                    for _ in range(5):
                        i = rnd.randint(1, 4)
                        r, body = c.cmd_multi(f"RETR {i}")
                        if body != self.wire(i):
                            raise AssertionError(f"RETR {i}: {r!r} {len(body or b'')} bytes")
                    r, body = c.cmd_multi("UIDL")
                    u = h.parse_listing(body)
                    if [u[i] for i in range(1, 5)] != [m.uidl for m in self.model]:
                        raise AssertionError(f"UIDL {u}")
                    if not c.cmd("QUIT").startswith(b"+OK"):
                        raise AssertionError("QUIT")
                finally:
                    c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"reader {seed}: {e!r}")

        threads = [threading.Thread(target=appender)]
        threads += [threading.Thread(target=reader, args=(k,)) for k in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stop.set()
        self.assertFalse(any(t.is_alive() for t in threads), "threads stuck")
        self.assertEqual(errors, [])
        self.assertEqual(self.spool.read(self.user.name), self.mbox + b"".join(appended))


class ConcurrentDelete(_Base):
    """One session deletes and QUITs while others read and an MDA appends.
    Readers may be cut off once the file is rewritten under them ("Another
    MUA active"), but a reply that completes is always exact; the file ends
    up as (original minus the deleted message) plus the appended mail."""

    def test_deleter_readers_appender(self):
        import random  # noqa: PLC0415
        import threading  # noqa: PLC0415
        appended, errors, outcomes = [], [], []
        start = threading.Barrier(14, timeout=30)

        def appender():
            start.wait()
            for i in range(20):
                m = h.make_mbox([h.make_message(2000 + i)])
                self.spool.append_locked(self.user.name, m)
                appended.append(m)
                time.sleep(0.005)

        def deleter():
            c = self.server.connect()
            try:
                r = c.login(self.user.name, self.user.password)
                start.wait()
                c.cmd_ok("DELE 1")
                time.sleep(0.02)
                outcomes.append(c.cmd("QUIT"))
            except Exception as e:  # noqa: BLE001
                errors.append(f"deleter: {e!r}")
            finally:
                c.close()

        def reader(seed):
            rnd = random.Random(seed)
            c = self.server.connect()
            try:
                r = c.login(self.user.name, self.user.password)
                start.wait()
                if not r.startswith(b"+OK"):
                    return
                for _ in range(20):
                    i = rnd.randint(1, 4)
                    r = c.cmd(f"RETR {i}")
                    if not r.startswith(b"+OK"):
                        return  # cut off (EOF) or refused: allowed
                    try:
                        body = c.read_multiline(30)
                    except h.Pop3Error:
                        return  # aborted without the final dot: allowed
                    if body != self.wire(i):
                        errors.append(f"reader {seed}: RETR {i} completed with wrong bytes")
                        return
            except (OSError, h.Pop3Error, threading.BrokenBarrierError):
                pass
            finally:
                c.close()

        threads = [threading.Thread(target=appender), threading.Thread(target=deleter)]
        threads += [threading.Thread(target=reader, args=(k,)) for k in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "threads stuck")
        self.assertEqual(errors, [])
        got = self.spool.read(self.user.name)
        tail = b"".join(appended)
        if outcomes and outcomes[0].startswith(b"+OK"):
            self.assertEqual(got, self.kept_file({1}, tail))
        else:
            self.assertEqual(got, self.mbox + tail, f"deleter QUIT -> {outcomes!r}")


class LargeMessages(_Base):
    """Output backpressure: big bodies to slow and pipelining readers."""

    def setUp(self):
        super().setUp()
        rnd = __import__("random").Random(7)
        big = [bytes(rnd.choice(b"abcdefghij .") for _ in range(rnd.randint(1, 300)))
               for _ in range(6000)]
        body = []
        while sum(len(l) + 1 for l in body) < (6 << 20):
            body.extend(big)
        self.mbox = h.make_mbox([h.make_message(1, body_lines=body),
                                 h.make_message(2, crlf=True, body_lines=big)])
        self.model = h.parse_mbox(self.mbox)
        self.spool.write(self.user.name, self.user.uid, self.mbox)

    def test_slow_reader_gets_exact_bytes(self):
        c = self.raw_login()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
        c.send(b"RETR 1\r\n")
        want = b"+OK\r\n" + self.wire(1) + b".\r\n"
        got = bytearray()
        deadline = time.monotonic() + 60
        while len(got) < len(want) and time.monotonic() < deadline:
            chunk = c.sock.recv(16 << 10)
            if not chunk:
                break
            got += chunk
            if len(got) < (1 << 20):
                time.sleep(0.002)  # crawl through the first megabyte
        self.assertEqual(len(got), len(want))
        self.assertTrue(bytes(got) == want, "RETR 1 bytes differ")
        c.cmd_ok("QUIT")

    def test_pipelined_big_retrs(self):
        c = self.raw_login()
        c.send(b"RETR 1\r\nRETR 2\r\nRETR 1\r\nTOP 2 5\r\nNOOP\r\n")
        for msn in (1, 2, 1):
            self.assertTrue(c.readline().startswith(b"+OK"))
            self.assertTrue(c.read_multiline(60) == self.wire(msn), f"RETR {msn}")
        self.assertTrue(c.readline().startswith(b"+OK"))
        self.assertEqual(c.read_multiline(), self.wire(2, top=5))
        self.assertEqual(c.readline(), b"+OK\r\n")
        c.cmd_ok("QUIT")


class ManyMessages(_Base):
    """20,000 small messages: listings stream out completely and promptly."""

    N = 20000

    def setUp(self):
        super().setUp()
        self.mbox = h.make_mbox([h.make_message(i, body_lines=[b"x"]) for i in range(self.N)])
        self.model = h.parse_mbox(self.mbox)
        self.spool.write(self.user.name, self.user.uid, self.mbox)

    def test_stat_list_uidl(self):
        c = self.raw_login()
        t0 = time.monotonic()
        st = c.cmd("STAT").split()
        self.assertEqual(int(st[1]), self.N)
        r, body = c.cmd_multi("LIST")
        sizes = h.parse_listing(body)
        self.assertEqual(len(sizes), self.N)
        self.assertEqual(sum(int(v) for v in sizes.values()), int(st[2]))
        r, body = c.cmd_multi("UIDL")
        self.assertEqual(h.parse_listing(body), {i: m.uidl for i, m in enumerate(self.model, 1)})
        # Pipelined per-message commands, as fetchmail does.
        c.send(b"".join(f"LIST {i}\r\nUIDL {i}\r\n".encode() for i in range(1, 2001)))
        for i in range(1, 2001):
            self.assertEqual(c.readline(), f"+OK {i} {sizes[i]}\r\n".encode())
            self.assertEqual(c.readline(), f"+OK {i} {self.model[i - 1].uidl}\r\n".encode())
        self.assertLess(time.monotonic() - t0, 20)
        c.cmd_ok("QUIT")


class MailboxLimits(_Base):
    extra_args = ("--max_messages=3",)

    def test_too_many_messages_refused(self):
        if not self.popgate:
            self.skipTest("popgate flag")
        c = self.raw()
        r = c.login(self.user.name, self.user.password)
        self.assertTrue(r.startswith(b"-ERR"), r)
        self.assertEqual(self.spool.read(self.user.name), self.mbox)


class MailboxSizeLimit(_Base):
    extra_args = ("--max_mailbox_bytes=500",)

    def test_too_big_refused_and_untouched(self):
        if not self.popgate:
            self.skipTest("popgate flag")
        self.assertGreater(len(self.mbox), 500)
        c = self.raw()
        r = c.login(self.user.name, self.user.password)
        self.assertTrue(r.startswith(b"-ERR"), r)
        self.assertEqual(self.spool.read(self.user.name), self.mbox)


class Timeouts(_Base):
    extra_args = ("--idle_timeout=2s", "--write_timeout=2s")

    def setUp(self):
        if h.reference_mode():
            self.skipTest("popa3d's timeouts are fixed at 600 s")
        super().setUp()

    def test_idle_preauth_closed(self):
        c = self.raw()
        self.assertTrue(c.greeting().startswith(b"+OK"))
        t0 = time.monotonic()
        got = c.expect_eof(10)
        self.assertIsNotNone(got, "not closed 10 s into a 2 s idle timeout")
        self.assertGreater(time.monotonic() - t0, 1.0, "closed before the idle timeout")

    def test_idle_transaction_discards_deletions(self):
        before = self.stat_file()
        c = self.raw_login()
        c.cmd_ok("DELE 1")
        got = c.expect_eof(10)
        self.assertIsNotNone(got, "not closed 10 s into a 2 s idle timeout")
        self.assertEqual(self.stat_file(), before)

    def test_stalled_reader_is_dropped(self):
        big = h.make_mbox([h.make_message(1, body_lines=[b"y" * 1000] * 40000)])
        self.spool.write(self.user.name, self.user.uid, big)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
        s.settimeout(10)
        s.connect(("127.0.0.1", self.server.port))
        c = h.Pop3Conn(s)
        self.addCleanup(c.close)
        self.assertTrue(c.login(self.user.name, self.user.password).startswith(b"+OK"))
        c.send(b"RETR 1\r\n")
        time.sleep(6)  # stop reading: > 2 s write timeout
        # Now drain: the body must end without its terminating dot (EOF).
        with self.assertRaises(h.Pop3Error):
            c.readline()
            c.read_multiline(timeout=20)


class LongPassword(_Base):
    """RFC 2449 allows 255-octet lines: a 200-char password works (popa3d
    would silently truncate it at 127 bytes)."""

    @classmethod
    def setUpClass(cls):
        if h.reference_mode():
            raise unittest.SkipTest("popgate only")
        super().setUpClass()

    def test_200_char_password(self):
        c = self.raw()
        self.assertTrue(c.login(self.long_name, self.long_pw).startswith(b"+OK"))
        self.assertEqual(c.cmd("STAT"), b"+OK 0 0\r\n")  # no mailbox of that name
        c.cmd_ok("QUIT")

    def test_200_char_password_truncated_fails(self):
        c = self.raw()
        self.assertEqual(c.login(self.long_name, self.long_pw[:127]),
                         h.AUTH_FAILED + b"\r\n")


class ShadowAuth(_Base):
    extra_args = ("--auth=shadow",)

    def test_login_and_failure(self):
        if not self.popgate:
            self.skipTest("popgate only")
        p = self.login()
        self.assertEqual(p.stat()[0], 4)
        p.quit()
        c = self.raw()
        self.assertEqual(c.login(self.user.name, "bad" + self.user.password),
                         h.AUTH_FAILED + b"\r\n")


class PamAuth(_Base):
    extra_args = ("--auth=pam", "--pam_service=popa3d")

    @classmethod
    def setUpClass(cls):
        if not os.path.exists("/etc/pam.d/popa3d"):
            raise unittest.SkipTest("/etc/pam.d/popa3d missing (tools/test-setup.sh)")
        super().setUpClass()

    def test_login_and_failure(self):
        if not self.popgate:
            self.skipTest("popgate only")
        p = self.login()
        self.assertEqual(p.stat()[0], 4)
        p.dele(1)
        p.quit()
        self.assertEqual(self.spool.read(self.user.name), self.kept_file({1}))
        c = self.raw()
        self.assertEqual(c.login(self.user.name, "bad" + self.user.password),
                         h.AUTH_FAILED + b"\r\n")


class Privileges(_Base):
    """After PASS the session process runs as the user: uid/gid from the
    passwd-file line, no supplementary groups (not even mail), never root."""

    def session_children(self):
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/status") as f:
                    st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
            except OSError:
                continue
            if int(st["PPid"]) == self.server.daemon.proc.pid:
                pids.append((int(d), st))
        return pids

    def test_session_runs_as_user(self):
        if not self.popgate:
            self.skipTest("popgate only")
        c = self.raw_login()
        self.assertTrue(c.cmd("STAT").startswith(b"+OK"))
        kids = self.session_children()
        self.assertTrue(kids, "no session process found under the daemon")
        mine = [st for pid, st in kids
                if st["Uid"].split()[0] == str(self.user.uid)]
        self.assertEqual(len(mine), 1, [st["Uid"] for _, st in kids])
        st = mine[0]
        self.assertEqual(st["Uid"].split(), [str(self.user.uid)] * 4)
        self.assertEqual(st["Gid"].split(), [str(self.user.gid)] * 4)
        self.assertIn(st["Groups"].split(), ([], [str(self.user.gid)]))
        self.assertEqual(st["CapEff"].strip(), "0000000000000000")
        c.cmd_ok("QUIT")

    def descendants(self):
        """(pid, status dict, root dir) of every process below the daemon."""
        procs = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/status") as f:
                    st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
                root = os.readlink(f"/proc/{d}/root")
            except OSError:
                continue
            procs[int(d)] = (st, root)
        out, todo = [], [self.server.daemon.proc.pid]
        while todo:
            parent = todo.pop()
            for pid, (st, root) in procs.items():
                if int(st["PPid"]) == parent:
                    out.append((pid, st, root))
                    todo.append(pid)
        return out

    def test_preauth_child_dies_with_its_session(self):
        """If the root session process dies (OOM killer, a second SIGTERM to
        the daemon), its jailed pre-auth child must not go on serving the
        connection on its own."""
        if not self.popgate:
            self.skipTest("popgate only")
        c = self.raw()
        self.assertTrue(c.greeting().startswith(b"+OK"))
        c.cmd_ok("USER someone")
        roots = [pid for pid, st, _ in self.descendants()
                 if int(st["PPid"]) == self.server.daemon.proc.pid]
        self.assertEqual(len(roots), 1, roots)
        os.kill(roots[0], signal.SIGKILL)
        got = c.expect_eof(5)
        if got is None:
            left = {}
            for pid in self.server.daemon.leftover_processes():
                if pid == self.server.daemon.proc.pid:
                    continue
                with contextlib.suppress(OSError):
                    with open(f"/proc/{pid}/status") as f:
                        st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
                    left[pid] = (st["Uid"].split()[1], st["PPid"].strip(),
                                 os.readlink(f"/proc/{pid}/root"))
            self.fail(f"connection still served 5 s after its session process "
                      f"{roots[0]} was killed: NOOP -> {c.cmd('NOOP')!r}; other "
                      f"processes in the daemon's group (pid: uid, ppid, root): {left}")

    def test_preauth_parsing_is_unprivileged_and_chrooted(self):
        """popa3d parses AUTHORIZATION in a chrooted child running as an
        unprivileged pseudo-user (popa3d-behaviour.md §5.1, §6); so does
        popgate (net/session_process.h)."""
        if not self.popgate:
            self.skipTest("popgate only")
        c = self.raw()
        self.assertTrue(c.greeting().startswith(b"+OK"))
        c.cmd_ok("USER someone")  # the session is now parsing client bytes
        procs = self.descendants()
        confined = [(pid, st["Uid"], root) for pid, st, root in procs
                    if st["Uid"].split()[1] != "0" and root != "/"]
        self.assertTrue(confined, "no unprivileged, chrooted pre-auth process: " +
                        repr([(pid, st["Uid"].split()[1], root) for pid, st, root in procs]))


class CrashSafety(unittest.TestCase):
    """SIGKILL the session at many instants of its QUIT/update; the next
    session must see the original mailbox or the updated one, never a torn
    one, and mail delivered in between survives (DESIGN goal 1)."""

    DELAYS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3)

    @classmethod
    def setUpClass(cls):
        h.require_root()
        if h.reference_mode():
            raise unittest.SkipTest("popa3d's in-place rewrite is not crash-safe")
        cls.binary = h.require_popgate()
        cls.user = h.SystemUser(set_password=True)
        cls.root = h.make_test_root()
        cls.spool = h.Spool(cls.root)
        cls.passwd = os.path.join(cls.root, "passwd")
        h.write_passwd_file(cls.passwd, [(cls.user.name, cls.user.password,
                                          cls.user.uid, cls.user.gid, "/nonexistent")])

    @classmethod
    def tearDownClass(cls):
        cls.user.remove()
        shutil.rmtree(cls.root, ignore_errors=True)

    def session(self):
        argv = [self.binary] + h.popgate_common_args(self.root, self.spool, self.passwd)
        return h.InetdSession(argv, stderr_path=os.path.join(self.root, "crash.stderr"))

    def test_sigkill_during_update(self):
        rnd = __import__("random").Random(3)
        filler = [bytes(rnd.choice(b"abcdefgh ") for _ in range(200))] * 2000
        msgs = [h.make_message(i, body_lines=filler if i % 2 else [b"small"])
                for i in range(1, 13)]
        mbox = h.make_mbox(msgs)  # ~2.4 MB per big message, ~15 MB in all
        model = h.parse_mbox(mbox)
        dele = {1, 4, 7}
        kept = b"".join(h.raw_extent(mbox, m) for i, m in enumerate(model, 1)
                        if i not in dele)
        # Time an uninterrupted update first, then kill at fractions of it.
        self.spool.write(self.user.name, self.user.uid, mbox)
        s = self.session()
        self.assertTrue(s.conn.login(self.user.name, self.user.password).startswith(b"+OK"))
        for i in sorted(dele):
            s.conn.cmd_ok(f"DELE {i}")
        t0 = time.monotonic()
        self.assertTrue(s.conn.cmd("QUIT").startswith(b"+OK"))
        took = time.monotonic() - t0
        s.finish()
        self.assertEqual(self.spool.read(self.user.name), kept)
        delays = sorted(set(self.DELAYS) | {took * f / 10 for f in range(0, 13)})
        outcomes = []
        for n, delay in enumerate(delays):
            with self.subTest(delay=delay):
                self.spool.write(self.user.name, self.user.uid, mbox)
                s = self.session()
                c = s.conn
                self.assertTrue(c.login(self.user.name, self.user.password).startswith(b"+OK"))
                for i in sorted(dele):
                    c.cmd_ok(f"DELE {i}")
                c.send(b"QUIT\r\n")
                time.sleep(delay)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s.proc.pid, signal.SIGKILL)
                s.finish()
                new = b""
                if n % 2:
                    new = h.make_mbox([h.make_message(500 + n, subject="after crash")])
                    self.spool.append_locked(self.user.name, new)
                # The next session repairs whatever was interrupted.
                s2 = self.session()
                try:
                    r = s2.conn.login(self.user.name, self.user.password)
                    self.assertTrue(r.startswith(b"+OK"), r)
                    stat = s2.conn.cmd("STAT")
                    s2.conn.cmd_ok("QUIT")
                finally:
                    s2.finish()
                got = self.spool.read(self.user.name)
                if got == mbox + new:
                    outcomes.append("original")
                elif got == kept + new:
                    outcomes.append("updated")
                else:
                    self.fail(f"delay {delay}: mailbox is neither the original nor "
                              f"the updated one (+ {len(new)} appended bytes): "
                              f"{len(got)} bytes, STAT {stat!r}; expected "
                              f"{len(mbox) + len(new)} or {len(kept) + len(new)}")
        # Informational: which instants hit before/after the commit point.
        print(f"\n  update took {took * 1000:.1f} ms; crash outcomes: " +
              ", ".join(f"{d * 1000:.1f}ms:{o}" for d, o in zip(delays, outcomes)))


if __name__ == "__main__":
    unittest.main()
