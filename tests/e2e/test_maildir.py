"""End-to-end: popgate -D serving Maildirs (--mail=maildir:<root>/%u/Maildir),
in fork mode and in pool mode (workers running as the mailbox owner), to
poplib, raw sockets and curl: STAT/LIST/UIDL/RETR/TOP, DELE+QUIT unlinks
the files, DELE+RSET+QUIT keeps them, mail in tmp/ and dot-files is never
served, a second concurrent session gets -ERR [IN-USE], and the lock file
is gone after the session.

Run: sudo POPGATE_BIN=build-e2e/net/popgate python3 -m unittest -v test_maildir
(from tests/e2e; CTest does this). Needs root: a throwaway system user owns
the Maildir and the daemon drops to it for the session.
"""

import glob
import os
import poplib
import shutil
import subprocess
import time
import unittest

import popgate_harness as h

LOCK_NAME = "popgate.lock"


def message(idx, crlf=False, body_lines=None):
    return h.make_message(idx, body_lines=body_lines, crlf=crlf)


class MaildirDaemonCase(unittest.TestCase):
    """One popgate -D per class serving Maildirs under a temp root, with one
    throwaway system user; subclasses say where mail lives and who logs in."""

    POOL = False  # --mode=pool, the workers running as the mailbox owner

    @classmethod
    def start_daemon(cls, mail_pattern, entries):
        """`entries`: passwd-file lines (user, password) mapped to cls.user."""
        pf = os.path.join(cls.root, "passwd")
        h.write_passwd_file(pf, [(name, password, cls.user.uid, cls.user.gid,
                                  "/nonexistent") for name, password in entries])
        state = os.path.join(cls.root, "state")
        os.makedirs(state)
        os.chmod(state, 0o755)
        args = [f"--auth=passwd-file:{pf}",
                f"--mail=maildir:{mail_pattern}",
                f"--state_dir={state}",
                "--min_session_slot=0"]
        daemon = h.Daemon
        if cls.POOL:
            # Virtual-mail style: one account owns every Maildir and runs
            # the workers (a Maildir is the owner's alone, mode 0700).
            os.chown(state, cls.user.uid, cls.user.gid)
            args += ["--mode=pool", "--workers=1",
                     f"--pool_user={cls.user.name}"]
            daemon = h.PoolDaemon
        cls.daemon = daemon(args + h.extra_popgate_args(), cls.root).start()

    @classmethod
    def setUpClass(cls):
        h.require_root()
        if h.reference_mode():
            raise unittest.SkipTest("popa3d has no Maildir support")
        h.require_popgate()
        cls.user = h.SystemUser()
        cls.root = h.make_test_root()
        try:
            cls.set_up_mail()
        except BaseException:
            cls.user.remove()
            shutil.rmtree(cls.root, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.daemon.stop()
        finally:
            cls.user.remove()
            shutil.rmtree(cls.root, ignore_errors=True)


class MaildirE2E(MaildirDaemonCase):
    @classmethod
    def set_up_mail(cls):
        mail_root = os.path.join(cls.root, "mail")
        os.mkdir(mail_root)
        os.chmod(mail_root, 0o755)
        cls.user_dir = os.path.join(mail_root, cls.user.name)
        cls.maildir = os.path.join(cls.user_dir, "Maildir")
        cls.start_daemon(f"{mail_root}/%u/Maildir",
                         [(cls.user.name, cls.user.password)])
        cls.port = cls.daemon.port

    def setUp(self):
        shutil.rmtree(self.user_dir, ignore_errors=True)
        os.makedirs(self.user_dir)
        os.chown(self.user_dir, self.user.uid, self.user.gid)
        os.chmod(self.user_dir, 0o700)
        self.msgs = [
            # (subdir, name, bytes)
            ("new", "1700000001.M100P11.mx,S={size}",
             message(1)),
            ("cur", "1700000002.M200P12.mx:2,S",
             message(2, crlf=True, body_lines=[b"crlf", b".dot line", b"",
                                               b"end"])),
            ("new", "1700000003.M300P13.mx",
             message(3, body_lines=[b".", b"..x", b"tail"])),
        ]
        self.paths = []
        for sub in ("new", "cur", "tmp"):
            self.put_dir(sub)
        for i, (sub, name, data) in enumerate(self.msgs):
            name = name.format(size=len(data))
            self.msgs[i] = (sub, name, data)
            self.paths.append(self.put(sub, name, data))
        # Never served: a partial delivery, dot-files.
        self.put("tmp", "1700000000.M1P1.mx", b"Subject: partial\n\nx\n")
        self.put("new", ".hidden", b"Subject: hidden\n\nx\n")

    def put_dir(self, sub):
        p = os.path.join(self.maildir, sub)
        os.makedirs(p, exist_ok=True)
        for d in (self.maildir, p):
            os.chown(d, self.user.uid, self.user.gid)
            os.chmod(d, 0o700)

    def put(self, sub, name, data):
        p = os.path.join(self.maildir, sub, name)
        with open(p, "wb") as f:
            f.write(data)
        os.chown(p, self.user.uid, self.user.gid)
        os.chmod(p, 0o600)
        return p

    def data(self, msn):
        return self.msgs[msn - 1][2]

    def uidl(self, msn):
        return self.msgs[msn - 1][1].split(":", 1)[0]

    def pop(self):
        p = poplib.POP3("127.0.0.1", self.port, timeout=10)
        self.addCleanup(p.close)
        return p

    def login(self):
        p = self.pop()
        p.user(self.user.name)
        resp = p.pass_(self.user.password)
        self.assertTrue(resp.startswith(b"+OK"), resp)
        return p

    def wait_unlocked(self, timeout=5.0):
        lock = os.path.join(self.maildir, LOCK_NAME)
        deadline = time.monotonic() + timeout
        while os.path.exists(lock):
            if time.monotonic() > deadline:
                self.fail("lock file still there after the session ended")
            time.sleep(0.02)

    # Tests ------------------------------------------------------------------

    def test_stat_list_uidl(self):
        p = self.login()
        sizes = [h.expected_size(self.data(i)) for i in (1, 2, 3)]
        self.assertEqual(p.stat(), (3, sum(sizes)))
        _, lines, _ = p.list()
        self.assertEqual(lines, [f"{i} {s}".encode()
                                 for i, s in enumerate(sizes, 1)])
        _, lines, _ = p.uidl()
        self.assertEqual(lines, [f"{i} {self.uidl(i)}".encode()
                                 for i in (1, 2, 3)])
        self.assertEqual(p.uidl(2), f"+OK 2 {self.uidl(2)}".encode())
        p.quit()
        self.wait_unlocked()
        for path in self.paths:
            self.assertTrue(os.path.exists(path), path)

    def test_retr_and_top_wire_bytes(self):
        c = h.Pop3Conn.connect(self.port)
        self.addCleanup(c.close)
        self.assertTrue(c.login(self.user.name, self.user.password)
                        .startswith(b"+OK"))
        for i in (1, 2, 3):
            r, body = c.cmd_multi(f"RETR {i}")
            self.assertTrue(r.startswith(b"+OK"), r)
            self.assertEqual(body, h.expected_retr(self.data(i)), i)
            for n in (0, 1, 5):
                r, body = c.cmd_multi(f"TOP {i} {n}")
                self.assertTrue(r.startswith(b"+OK"), r)
                self.assertEqual(body, h.expected_top(self.data(i), n), (i, n))
        c.cmd_ok("QUIT")

    def test_big_crlf_messages_sent_from_the_page_cache(self):
        # Wire-clean runs of 16 KiB or more go out with sendfile (in both
        # modes: MaildirPoolE2E runs this too): a clean
        # 300 KB message, one with dotted lines every 40 KB (the runs between
        # them), and one with a bare LF near its end; pipelined, so the
        # final dot and the next reply share a send. Each must arrive exact.
        line = b"x" * 70 + b"\r\n"
        clean = b"Subject: big\r\n\r\n" + line * 4200
        dotted = b"Subject: dots\r\n\r\n" + b"".join(
            (b".dot %d\r\n" % i if i % 560 == 0 else line) for i in range(4200))
        bare = b"Subject: bare\r\n\r\n" + line * 3000 + b"bare lf\n" + line
        for n, data in enumerate((clean, dotted, bare), 4):
            self.msgs.append(("cur", f"17000000{n:02d}.M{n}P1.mx:2,S", data))
            self.paths.append(self.put("cur", self.msgs[-1][1], data))
        c = h.Pop3Conn.connect(self.port)
        self.addCleanup(c.close)
        self.assertTrue(c.login(self.user.name, self.user.password)
                        .startswith(b"+OK"))
        c.send(b"RETR 4\r\nRETR 5\r\nRETR 6\r\n")
        for i in (4, 5, 6):
            r = c.readline()
            self.assertTrue(r.startswith(b"+OK"), r)
            self.assertEqual(c.read_multiline(10), h.expected_retr(self.data(i)),
                             i)
        c.cmd_ok("QUIT")

    def test_relogin_sizes_come_from_a_cache_only_the_user_can_write(self):
        sizes = [h.expected_size(self.data(i)) for i in (1, 2, 3)]
        p = self.login()
        self.assertEqual(p.stat(), (3, sum(sizes)))
        p.quit()
        self.wait_unlocked()
        # Named after this Maildir (earlier tests' Maildirs left theirs).
        md = os.stat(self.maildir)
        caches = glob.glob(os.path.join(
            self.root, "state", "**", f"maildir-{md.st_dev}-{md.st_ino}.sizes"),
            recursive=True)
        self.assertEqual(len(caches), 1, caches)
        st = os.stat(caches[0])
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (self.user.uid, 0o600))
        # Rewritten in place with the same size and one LF more: the cached
        # size must not survive it (the ctime moved).
        time.sleep(0.02)
        sub, name, data = self.msgs[0]
        changed = data[:-3] + b"\n" + data[-2:]
        self.assertEqual(len(changed), len(data))
        with open(self.paths[0], "r+b") as f:
            f.write(changed)
        self.msgs[0] = (sub, name, changed)
        self.assertNotEqual(h.expected_size(changed), sizes[0])
        sizes[0] = h.expected_size(changed)
        c = h.Pop3Conn.connect(self.port)
        self.addCleanup(c.close)
        self.assertTrue(c.login(self.user.name, self.user.password)
                        .startswith(b"+OK"))
        r, lines = c.cmd_multi("LIST")
        self.assertEqual(lines, b"".join(b"%d %d\r\n" % (i, n)
                                         for i, n in enumerate(sizes, 1)))
        r, body = c.cmd_multi("RETR 1")
        self.assertEqual(body, h.expected_retr(changed))
        c.cmd_ok("QUIT")

    def test_poplib_retr(self):
        p = self.login()
        for i in (1, 2, 3):
            _, lines, octets = p.retr(i)
            want = self.data(i).replace(b"\r\n", b"\n").split(b"\n")[:-1]
            self.assertEqual(lines, want, i)
        p.quit()

    def test_dele_quit_unlinks(self):
        p = self.login()
        p.dele(1)
        p.dele(2)
        self.assertEqual(p.stat()[0], 1)
        p.quit()
        self.wait_unlocked()
        self.assertFalse(os.path.exists(self.paths[0]))
        self.assertFalse(os.path.exists(self.paths[1]))
        self.assertTrue(os.path.exists(self.paths[2]))
        self.assertTrue(os.path.exists(
            os.path.join(self.maildir, "tmp", "1700000000.M1P1.mx")))
        # The next session sees only what is left.
        p = self.login()
        self.assertEqual(p.stat()[0], 1)
        self.assertEqual(p.uidl(1), f"+OK 1 {self.uidl(3)}".encode())
        p.quit()

    def test_dele_rset_quit_keeps(self):
        p = self.login()
        p.dele(1)
        p.dele(3)
        p.rset()
        p.quit()
        self.wait_unlocked()
        for path in self.paths:
            self.assertTrue(os.path.exists(path), path)

    def test_delivered_mid_session_invisible_and_kept(self):
        p = self.login()
        late = self.put("new", "1700000009.M900P19.mx", message(9))
        self.assertEqual(p.stat()[0], 3)
        p.dele(1)
        p.quit()
        self.wait_unlocked()
        self.assertTrue(os.path.exists(late))
        p = self.login()
        self.assertEqual(p.stat()[0], 3)
        p.quit()

    def test_message_deleted_by_someone_else_ends_session_unapplied(self):
        c = h.Pop3Conn.connect(self.port)
        self.addCleanup(c.close)
        self.assertTrue(c.login(self.user.name, self.user.password)
                        .startswith(b"+OK"))
        c.cmd_ok("DELE 2")
        os.unlink(self.paths[0])  # another client deleted message 1
        c.send("RETR 1\r\n")
        # popa3d semantics: the session ends without the message and
        # without applying its deletions.
        got = c.expect_eof()
        self.assertTrue(got is True or not got.startswith(b"+OK"), got)
        self.wait_unlocked()
        self.assertTrue(os.path.exists(self.paths[1]))
        self.assertTrue(os.path.exists(self.paths[2]))

    def test_second_session_is_in_use(self):
        first = self.login()
        self.assertTrue(os.path.exists(os.path.join(self.maildir, LOCK_NAME)))
        c = h.Pop3Conn.connect(self.port)
        self.addCleanup(c.close)
        r = c.login(self.user.name, self.user.password)
        self.assertTrue(r.startswith(b"-ERR [IN-USE]"), r)
        first.quit()
        self.wait_unlocked()
        again = self.login()
        self.assertEqual(again.stat()[0], 3)
        again.quit()

    def test_curl_retrieves_message_1(self):
        h.require_tool("curl")
        url = f"pop3://127.0.0.1:{self.port}/1"
        r = subprocess.run(["curl", "-sS", "--max-time", "30", url, "-u",
                            f"{self.user.name}:{self.user.password}"],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        # curl undoes dot-stuffing and keeps the CR LF line ends as sent.
        self.assertEqual(r.stdout, h.unstuff(h.expected_retr(self.data(1))))
        self.wait_unlocked()



class MaildirPoolE2E(MaildirE2E):
    """The same in pool mode: sessions multiplexed by an io_uring worker,
    bodies sent by the same code as fork mode's (sendfile included)."""
    POOL = True


class VirtualDomainMaildir(MaildirDaemonCase):
    """--mail=maildir:<root>/vmail/%d/%n with passwd-file users named
    local@domain (Dovecot-style virtual users sharing one system uid)."""

    @classmethod
    def set_up_mail(cls):
        cls.vmail = os.path.join(cls.root, "vmail")
        os.mkdir(cls.vmail)
        os.chmod(cls.vmail, 0o755)
        cls.login_name = "alice@example.test"
        cls.password = h.random_password()
        cls.start_daemon(f"{cls.vmail}/%d/%n",
                         [(cls.login_name, cls.password)])

    def test_domain_and_local_part_select_the_maildir(self):
        domain_dir = os.path.join(self.vmail, "example.test")
        maildir = os.path.join(domain_dir, "alice")
        for d in (domain_dir, maildir, os.path.join(maildir, "new"),
                  os.path.join(maildir, "cur"), os.path.join(maildir, "tmp")):
            os.makedirs(d, exist_ok=True)
            os.chown(d, self.user.uid, self.user.gid)
        data = message(7)
        path = os.path.join(maildir, "new", "1700000007.M7P7.mx")
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, self.user.uid, self.user.gid)
        p = poplib.POP3("127.0.0.1", self.daemon.port, timeout=10)
        self.addCleanup(p.close)
        p.user(self.login_name)
        self.assertTrue(p.pass_(self.password).startswith(b"+OK"))
        self.assertEqual(p.stat(), (1, h.expected_size(data)))
        self.assertEqual(p.uidl(1), b"+OK 1 1700000007.M7P7.mx")
        p.dele(1)
        p.quit()
        self.assertFalse(os.path.exists(path))

if __name__ == "__main__":
    unittest.main()
