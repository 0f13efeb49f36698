"""End-to-end: popgate -D driven by real POP3 clients (curl, fetchmail, mpop).

Each test writes a fresh mailbox, runs one client (bounded by a timeout) and
checks the delivered bytes against what was stored (modulo what the client
itself does: CR LF -> LF, its own headers) and the mailbox on disk after
keep/delete. Commands follow shared/reference/pop3-standards-and-peers.md §5.

Run: sudo POPGATE_BIN=build-e2e/net/popgate python3 -m unittest -v test_clients
"""

import os
import shutil
import subprocess
import unittest

import popgate_harness as h

CLIENT_TIMEOUT = 60  # seconds per client run

MDA_SCRIPT = """#!/bin/sh
# Test MDA: one file per message, numbered in delivery order.
d="$1"
n=$(ls "$d" | wc -l)
exec cat > "$d/$(printf %04d "$n")"
"""


def fixture_messages():
    return [
        h.make_message(1),
        h.make_message(2, body_lines=[b".leading dot", b"..two", b".", b"text",
                                      b">From quoted", b"From unquoted after text",
                                      b"8-bit: \xe9\xe8\xff caf\xc3\xa9"]),
        h.make_message(3, crlf=True, body_lines=[b"crlf line", b".crlf dot", b"",
                                                 b"after blank"]),
        h.make_message(4, body_lines=[]),
        h.make_message(5, body_lines=[b"A" * 998, b"B" * 5000, b"end"]),
    ]


def lf(b):
    return b.replace(b"\r\n", b"\n")


class _ClientBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_root()
        if not h.reference_mode():
            h.require_popgate()
        cls.user = h.SystemUser(set_password=True)
        cls.root = h.make_test_root()
        cls.spool = h.Spool(cls.root)
        try:
            cls.server = h.ServerUnderTest(cls.root, cls.spool, [cls.user])
        except BaseException:
            cls.user.remove()
            shutil.rmtree(cls.root, ignore_errors=True)
            raise
        cls.mda = os.path.join(cls.root, "mda.sh")
        with open(cls.mda, "w") as f:
            f.write(MDA_SCRIPT)
        os.chmod(cls.mda, 0o755)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop()
        finally:
            cls.user.remove()
            shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.messages = fixture_messages()
        self.mbox = h.make_mbox(self.messages)
        self.model = h.parse_mbox(self.mbox)
        self.assertEqual(len(self.model), len(self.messages))
        self.path = self.spool.write(self.user.name, self.user.uid, self.mbox)
        self.work = os.path.join(self.root, f"w-{self._testMethodName}")
        os.mkdir(self.work)
        self.addCleanup(shutil.rmtree, self.work, True)
        self.addCleanup(lambda: os.path.exists(self.path) and os.unlink(self.path))
        self.popgate = self.server.is_popgate
        self.port = self.server.port

    def data(self, msn):
        return h.message_data(self.mbox, self.model[msn - 1])

    def wire(self, msn):
        return h.expected_retr(self.data(msn), crlf_fix=self.popgate)

    def comparable(self, msn):
        """Messages whose delivered form is defined for this server: popa3d
        sends CR CR LF for CR LF-stored lines, which clients mangle."""
        return self.popgate or b"\r\n" not in self.data(msn)

    def run_client(self, argv, env=None):
        e = dict(os.environ, HOME=self.work, LC_ALL="C")
        e.update(env or {})
        r = subprocess.run(argv, capture_output=True, timeout=CLIENT_TIMEOUT,
                           env=e, cwd=self.work)
        return r

    def assert_ran(self, r, what):
        self.assertEqual(r.returncode, 0,
                         f"{what} rc={r.returncode}\nstdout:\n"
                         f"{r.stdout.decode(errors='replace')[-4000:]}\nstderr:\n"
                         f"{r.stderr.decode(errors='replace')[-4000:]}\n"
                         f"server stderr:\n{self.server.stderr().decode(errors='replace')[-3000:]}")

    def delivered(self, d):
        out = []
        for n in sorted(os.listdir(d)):
            with open(os.path.join(d, n), "rb") as f:
                out.append(f.read())
        return out

    def file_state(self):
        st = os.stat(self.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)


class Curl(_ClientBase):
    def setUp(self):
        h.require_tool("curl")
        super().setUp()

    def curl(self, path="", *extra):
        url = f"pop3://127.0.0.1:{self.port}/{path}"
        r = self.run_client(["curl", "-sS", "--max-time", "30", url, "-u",
                             f"{self.user.name}:{self.user.password}", *extra])
        self.assert_ran(r, f"curl {url} {extra}")
        return r.stdout

    def test_retr_each_message(self):
        for i in range(1, len(self.model) + 1):
            got = self.curl(str(i))
            # curl writes the body with dot-stuffing undone, CR LF as sent.
            self.assertEqual(got, h.unstuff(self.wire(i)), f"message {i}")

    def test_list(self):
        got = self.curl("")
        sizes = [h.expected_size(self.data(i), self.popgate)
                 for i in range(1, len(self.model) + 1)]
        self.assertEqual(got, b"".join(f"{i} {s}\r\n".encode()
                                       for i, s in enumerate(sizes, 1)))

    def test_uidl(self):
        got = self.curl("", "-X", "UIDL")
        self.assertEqual(got, b"".join(f"{i} {m.uidl}\r\n".encode()
                                       for i, m in enumerate(self.model, 1)))

    def test_dele_commits(self):
        self.curl("3", "-X", "DELE", "-I")
        kept = b"".join(h.raw_extent(self.mbox, m)
                        for i, m in enumerate(self.model, 1) if i != 3)
        self.assertEqual(self.spool.read(self.user.name), kept)

    def test_wrong_password_fails(self):
        r = self.run_client(["curl", "-sS", "--max-time", "30",
                             f"pop3://127.0.0.1:{self.port}/1", "-u",
                             f"{self.user.name}:wrong{self.user.password}"])
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stdout, b"")
        self.assertEqual(self.spool.read(self.user.name), self.mbox)


class Fetchmail(_ClientBase):
    def setUp(self):
        h.require_tool("fetchmail")
        super().setUp()

    def fetchmail(self, keep):
        out = os.path.join(self.work, "out")
        os.mkdir(out)
        rc = os.path.join(self.work, "fetchmailrc")
        with open(rc, "w") as f:
            f.write(f'poll 127.0.0.1 protocol pop3 port {self.port} '
                    f'user "{self.user.name}" password "{self.user.password}" '
                    f'is "root" here {"keep" if keep else "nokeep"} fetchall '
                    f'mda "{self.mda} {out}"\n')
        os.chmod(rc, 0o600)  # fetchmail refuses a group/world-readable rc
        # As root fetchmail warns ("Running as root is discouraged") but works.
        r = self.run_client(["fetchmail", "-f", rc, "--nosyslog", "--idfile",
                             os.path.join(self.work, "ids"), "--sslproto", "",
                             "--auth", "password", "--invisible", "-v"])
        self.assert_ran(r, "fetchmail")
        return self.delivered(out)

    def check_delivered(self, got):
        self.assertEqual(len(got), len(self.model))
        for i, g in enumerate(got, 1):
            if self.comparable(i):
                # fetchmail hands the MDA LF line ends, dot-stuffing undone.
                self.assertEqual(lf(g), lf(h.unstuff(self.wire(i))), f"message {i}")

    def test_keep(self):
        before = self.file_state()
        self.check_delivered(self.fetchmail(keep=True))
        self.assertEqual(self.file_state(), before, "keep touched the mailbox")
        self.assertEqual(self.spool.read(self.user.name), self.mbox)

    def test_nokeep(self):
        self.check_delivered(self.fetchmail(keep=False))
        self.assertEqual(self.spool.read(self.user.name), b"")


class Mpop(_ClientBase):
    def setUp(self):
        h.require_tool("mpop")
        super().setUp()

    def mpop(self, keep, extra=()):
        out = os.path.join(self.work, "out")
        os.mkdir(out)
        r = self.run_client([
            "mpop", "-C", "/dev/null", "--host=127.0.0.1", f"--port={self.port}",
            f"--user={self.user.name}", f"--passwordeval=echo {self.user.password}",
            "--tls=off", "--auth=user", f"--keep={'on' if keep else 'off'}",
            "--only-new=off", "--received-header=off", "--timeout=30",
            f"--uidls-file={os.path.join(self.work, 'uidls')}",
            f"--delivery=mda,{self.mda} {out}", *extra])
        self.assert_ran(r, "mpop")
        return self.delivered(out)

    def check_delivered(self, got):
        self.assertEqual(len(got), len(self.model))
        for i, g in enumerate(got, 1):
            if self.comparable(i):
                self.assertEqual(lf(g), lf(h.unstuff(self.wire(i))), f"message {i}")

    def test_keep(self):
        before = self.file_state()
        self.check_delivered(self.mpop(keep=True))
        self.assertEqual(self.file_state(), before)

    def test_delete_pipelined(self):
        # mpop pipelines USER+PASS and batches of RETR/DELE in one write.
        self.check_delivered(self.mpop(keep=False, extra=["--pipelining=on"]))
        self.assertEqual(self.spool.read(self.user.name), b"")

    def test_uidls_file_matches_server(self):
        self.mpop(keep=True)
        with open(os.path.join(self.work, "uidls"), "rb") as f:
            text = f.read()
        for m in self.model:
            self.assertIn(m.uidl.encode(), text)


if __name__ == "__main__":
    unittest.main()
