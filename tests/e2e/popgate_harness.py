"""Shared helpers for popgate's end-to-end suites (Python 3 stdlib only).

What is here:
  - locating the daemon (POPGATE_BIN) and Debian's popa3d (POPA3D_BIN);
  - throwaway system users (useradd/userdel) and Debian-style spools
    (dir root:mail 2775, mbox user:mail 0660, session user can't create files);
  - passwd-file generation ({SHA512-CRYPT} hashes);
  - Daemon: `popgate -D --foreground --log=stderr --listen=127.0.0.1:0`,
    stderr captured to a file, port parsed from it, SIGTERM on stop with a
    bounded wait;
  - inetd mode over a socketpair (popgate or popa3d, optionally inside a
    private mount namespace with a spool bind-mounted over /var/mail);
  - MiniInetd: a loopback listener that runs an inetd-mode server per
    connection (lets the client suites run against popa3d as a reference);
  - Pop3Conn: a raw POP3 client where every recv has a timeout and every loop
    is bounded;
  - a reference model of popa3d's mbox parser (boundaries, sizes, UIDL) and
    of the wire encoding, after shared/reference/popa3d-behaviour.md §4.

Safety: everything talks to 127.0.0.0/8 only. Every wait is bounded.
"""

import contextlib
import errno
import fcntl
import grp
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import warnings

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Seconds. Generous but finite: the whole e2e set must finish in minutes.
IO_TIMEOUT = 15.0
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


# --------------------------------------------------------------------------
# Locating binaries and skipping cleanly.


def popgate_bin():
    """Path of the popgate binary, or None.

    POPGATE_BIN wins (CTest passes $<TARGET_FILE:popgate>); otherwise the
    usual build dirs are searched so `python3 -m unittest` works by hand.
    """
    env = os.environ.get("POPGATE_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    for d in ("build-e2e", "build", "build-core", "build-auth"):
        p = os.path.join(REPO_ROOT, d, "net", "popgate")
        if os.access(p, os.X_OK):
            return p
    return None


def popa3d_bin():
    env = os.environ.get("POPA3D_BIN")
    cands = [env] if env else []
    cands += ["/usr/sbin/popa3d", "/var/cache/popgate-test/popa3d/usr/sbin/popa3d"]
    for p in cands:
        if p and os.access(p, os.X_OK):
            return p
    return None


def require_root(tc=None):
    if os.geteuid() != 0:
        raise unittest.SkipTest("e2e tests need root (users, spools, setuid "
                                "sessions); run as root or via sudo")


def require_popgate():
    p = popgate_bin()
    if not p:
        raise unittest.SkipTest(
            "popgate binary not found: set POPGATE_BIN or build it "
            "(cmake -S . -B build-e2e -G Ninja && ninja -C build-e2e popgate)")
    return p


def require_tool(name):
    p = shutil.which(name)
    if not p:
        raise unittest.SkipTest(f"{name} not installed (run tools/test-setup.sh)")
    return p


def tool_available(name):
    return shutil.which(name) is not None


# --------------------------------------------------------------------------
# Users, passwords, spools.


def _run(cmd, input_=None, timeout=30, check=True):
    return subprocess.run(cmd, input=input_, capture_output=True,
                          timeout=timeout, check=check)


def _retry_locked(cmd, input_=None):
    """useradd/userdel/chpasswd fail when another process holds the passwd
    lock (suites may run in parallel): retry a bounded number of times."""
    last = None
    for _ in range(40):
        r = _run(cmd, input_=input_, check=False)
        if r.returncode == 0:
            return r
        last = r
        msg = (r.stderr or b"").decode(errors="replace")
        if "lock" not in msg and "try again" not in msg:
            break
        time.sleep(0.25)
    raise RuntimeError(f"{cmd!r} failed rc={last.returncode}: "
                       f"{(last.stderr or b'').decode(errors='replace')}")


def random_password(n=14):
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))


class SystemUser:
    """A throwaway system user with its own group; never uid 0.

    `password` is set in /etc/shadow with chpasswd only if set_password=True
    (PAM/shadow tests); passwd-file tests only need the uid/gid.
    """

    def __init__(self, prefix="pgt", set_password=False):
        self.name = f"{prefix}{secrets.token_hex(4)}"
        self.password = random_password()
        _retry_locked(["useradd", "--system", "--no-create-home", "--user-group",
                       "--home-dir", "/nonexistent", "--shell",
                       "/usr/sbin/nologin", self.name])
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        assert self.uid != 0 and self.gid != 0
        if set_password:
            _retry_locked(["chpasswd"],
                          input_=f"{self.name}:{self.password}\n".encode())

    def remove(self):
        with contextlib.suppress(Exception):
            _retry_locked(["userdel", self.name])


def sha512_crypt(password):
    """A $6$ hash: python's crypt module (deprecated in 3.11, still there),
    else `openssl passwd -6`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # noqa: PLC0415
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    except Exception:  # pragma: no cover - Python 3.13+
        r = _run(["openssl", "passwd", "-6", "-stdin"],
                 input_=password.encode())
        return r.stdout.decode().strip()


def write_passwd_file(path, entries):
    """entries: iterable of (user, password, uid, gid, home).
    Line format: user:{SHA512-CRYPT}$6$...:uid:gid::home:"""
    lines = []
    for user, password, uid, gid, home in entries:
        lines.append(f"{user}:{{SHA512-CRYPT}}{sha512_crypt(password)}:"
                     f"{uid}:{gid}::{home}:\n")
    with open(path, "w") as f:
        f.writelines(lines)
    os.chmod(path, 0o600)


def mail_gid():
    return grp.getgrnam("mail").gr_gid


def make_test_root(prefix="popgate-e2e-"):
    """A temp dir every session user can traverse (mkdtemp gives 0700)."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


class Spool:
    """A Debian-style spool: dir root:mail 2775; mboxes user:mail 0660.
    Session users are not in group mail, so they cannot create files here."""

    def __init__(self, root):
        self.path = os.path.join(root, "spool")
        os.mkdir(self.path)
        os.chown(self.path, 0, mail_gid())
        os.chmod(self.path, 0o2775)

    def mbox_path(self, user):
        return os.path.join(self.path, user)

    def write(self, user, uid, data, old_mtime=True):
        p = self.mbox_path(user)
        with open(p, "wb") as f:
            f.write(data)
        os.chown(p, uid, mail_gid())
        os.chmod(p, 0o660)
        if old_mtime:
            # popa3d sleeps 1 s at login when mtime == now; an old mtime also
            # makes "file untouched" checks meaningful.
            t = time.time() - 3600
            os.utime(p, (t, t))
        return p

    def read(self, user):
        with open(self.mbox_path(user), "rb") as f:
            return f.read()

    def append_locked(self, user, data, timeout=IO_TIMEOUT):
        """Append like an MDA: exclusive fcntl lock on the whole file."""
        p = self.mbox_path(user)
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise TimeoutError("mbox stayed locked") from e
                    time.sleep(0.05)
            os.write(fd, data)
            os.fsync(fd)
            fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------
# Raw POP3 client.


class Pop3Error(AssertionError):
    pass


class Pop3Conn:
    """Raw POP3 over a socket. Every recv has a timeout; every loop is bounded
    by a deadline and a byte cap."""

    MAX_REPLY = 64 << 20  # bytes; a multi-line reply larger than this fails

    def __init__(self, sock, timeout=IO_TIMEOUT):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    @classmethod
    def connect(cls, port, host="127.0.0.1", source=None, timeout=IO_TIMEOUT):
        assert host.startswith("127."), "e2e tests target loopback only"
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            if source:
                assert source.startswith("127.")
                s.bind((source, 0))
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return cls(s, timeout)

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("POP3 reply deadline passed")
        self.sock.settimeout(min(self.timeout, remaining))
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        if len(self.buf) > self.MAX_REPLY:
            raise Pop3Error("reply too large")
        return True

    def readline(self, timeout=None):
        """One line including CRLF, or b'' at EOF (partial data at EOF is
        returned as is)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            start = max(0, len(self.buf) - 1)
            if not self._fill(deadline):
                line = bytes(self.buf)
                self.buf.clear()
                return line

    def read_multiline(self, timeout=None):
        """The wire bytes of a multi-line body (dot-stuffed, CRLFs as sent),
        without the terminating '.\\r\\n'."""
        deadline = time.monotonic() + (timeout or 60.0)
        # The terminator is ".\r\n" at the start of the body or after "\n".
        if self.buf.startswith(b".\r\n"):
            del self.buf[:3]
            return b""
        start = 0
        while True:
            i = self.buf.find(b"\n.\r\n", start)
            if i >= 0:
                body = bytes(self.buf[:i + 1])
                del self.buf[:i + 4]
                return body
            start = max(0, len(self.buf) - 3)
            if len(self.buf) >= 3 and self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return b""
            if not self._fill(deadline):
                raise Pop3Error(
                    f"EOF inside multi-line reply after {len(self.buf)} bytes")

    def greeting(self):
        return self.readline()

    def cmd(self, line):
        """Send one command, return its status line (with CRLF)."""
        self.send(line + (b"\r\n" if isinstance(line, bytes) else "\r\n"))
        return self.readline()

    def cmd_ok(self, line):
        r = self.cmd(line)
        if not r.startswith(b"+OK"):
            raise Pop3Error(f"{line!r} -> {r!r}")
        return r

    def cmd_multi(self, line):
        """(status line, wire body) for LIST/UIDL/RETR/TOP/CAPA."""
        r = self.cmd(line)
        if not r.startswith(b"+OK"):
            return r, None
        return r, self.read_multiline()

    def login(self, user, password):
        g = self.greeting()
        if not g.startswith(b"+OK"):
            raise Pop3Error(f"greeting {g!r}")
        self.cmd_ok(f"USER {user}")
        return self.cmd(f"PASS {password}")

    def expect_eof(self, timeout=5.0):
        """True if the peer closes (EOF) within `timeout` with no more bytes;
        returns the bytes seen otherwise (b'' means a timeout)."""
        deadline = time.monotonic() + timeout
        got = bytes(self.buf)
        self.buf.clear()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return got if got else None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return got if got else None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return True if not got else got
            got += chunk


def unstuff(wire):
    """Undo dot-stuffing on a multi-line body (lines split at LF)."""
    out = []
    for line in wire.split(b"\n"):
        out.append(line[1:] if line.startswith(b".") else line)
    return b"\n".join(out)


def parse_listing(body):
    """LIST/UIDL body -> {msn: value}."""
    res = {}
    for line in body.split(b"\r\n"):
        if not line:
            continue
        n, v = line.split(b" ", 1)
        res[int(n)] = v.decode()
    return res


# --------------------------------------------------------------------------
# Running the daemon.


def _die_with_parent():
    """preexec_fn: SIGKILL this child if the test process dies (a CTest
    timeout must not leave a daemon behind). Main-thread Popen only."""
    import ctypes  # noqa: PLC0415
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


LISTEN_RE = re.compile(rb"listening on \[?(127\.[0-9.]+)\]?:(\d+)")


class Daemon:
    """popgate -D --foreground --log=stderr --listen=127.0.0.1:0 ...

    stderr goes to a file under `workdir`; the port is parsed from the
    `listening on 127.0.0.1:PORT` line. stop() sends SIGTERM and checks that
    the process exits within STOP_TIMEOUT seconds."""

    def __init__(self, args, workdir, listen="127.0.0.1:0", binary=None):
        self.binary = binary or require_popgate()
        self.stderr_path = os.path.join(workdir, f"popgate-{secrets.token_hex(3)}.stderr")
        self.argv = [self.binary, "-D", "--foreground", "--log=stderr",
                     f"--listen={listen}"] + list(args)
        self.proc = None
        self.port = None

    def start(self):
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._err, stderr=self._err,
                                     start_new_session=True,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.stderr())
            if m:
                self.port = int(m.group(2))
                return self
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"popgate exited rc={self.proc.returncode} before listening; "
                    f"argv={self.argv}\nstderr:\n{self.stderr().decode(errors='replace')}")
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"popgate printed no 'listening on' line within "
                             f"{START_TIMEOUT}s; stderr:\n"
                             f"{self.stderr().decode(errors='replace')}")

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read()

    def stop(self):
        """SIGTERM; returns the exit code. Raises if it does not exit in time
        (after killing it, so nothing is left behind)."""
        if self.proc is None or self.proc.poll() is not None:
            self._close()
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"popgate did not exit within {STOP_TIMEOUT}s "
                                 f"of SIGTERM")
        finally:
            self._close()
        self.kill()  # strays in its process group, if any (none expected)
        return rc

    def kill(self):
        """SIGKILL the daemon and anything left in its process group (the
        group we created with start_new_session=True: the daemon, its session
        processes and their pre-auth children), even after the daemon itself
        has exited."""
        if self.proc:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
        self._close()

    def leftover_processes(self):
        """PIDs still in the daemon's process group (excluding zombies)."""
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid and fields[0] != "Z":
                out.append(int(d))
        return out

    def _close(self):
        f = getattr(self, "_err", None)
        if f and not f.closed:
            f.close()

    def connect(self, source=None, timeout=IO_TIMEOUT):
        return Pop3Conn.connect(self.port, source=source, timeout=timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill() if exc[0] else self.stop()


def in_mail_namespace(spool_dir, argv):
    """argv run in a private mount namespace with `spool_dir` bind-mounted
    over /var/mail, so the real /var/mail is never touched."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /var/mail && exec "$@"', spool_dir] + list(argv)


class InetdSession:
    """Runs an inetd-mode server (popgate without -D, or popa3d) on one end of
    a socketpair; `conn` is a Pop3Conn over the other end."""

    def __init__(self, argv, stderr_path=None, timeout=IO_TIMEOUT):
        parent, child = socket.socketpair()
        self.stderr_file = open(stderr_path or os.devnull, "wb")
        self.proc = subprocess.Popen(argv, stdin=child.fileno(),
                                     stdout=child.fileno(),
                                     stderr=self.stderr_file,
                                     start_new_session=True)
        child.close()
        self.conn = Pop3Conn(parent, timeout)

    def finish(self, timeout=STOP_TIMEOUT):
        """Close our end, wait for the server; returns its exit code."""
        self.conn.close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
            raise AssertionError(f"{self.proc.args!r} did not exit within "
                                 f"{timeout}s after the client closed")
        finally:
            self.stderr_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(AssertionError):
            self.finish()


class MiniInetd:
    """A loopback listener that runs `argv` in inetd mode for each accepted
    connection (socket on stdin/stdout). Used to point the real clients at
    popa3d as a reference server; bounded: at most `max_conns` sessions."""

    def __init__(self, argv, max_conns=64):
        self.argv = argv
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.max_conns = max_conns
        self.procs = []
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping and len(self.procs) < self.max_conns:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            p = subprocess.Popen(self.argv, stdin=c.fileno(), stdout=c.fileno(),
                                 stderr=subprocess.DEVNULL,
                                 start_new_session=True)
            c.close()
            self.procs.append(p)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.lsock.close()
        for p in self.procs:
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(STOP_TIMEOUT)


# --------------------------------------------------------------------------
# Reference model of popa3d's mbox handling (popa3d-behaviour.md §4).


class MboxRefused(Exception):
    pass


class RefMessage:
    __slots__ = ("raw_off", "raw_end", "data_off", "data_end", "size", "uidl")

    def __init__(self, raw_off):
        self.raw_off = raw_off
        self.raw_end = None
        self.data_off = None
        self.data_end = None
        self.size = 0
        self.uidl = None


def _ci_prefix(line, prefix):
    return line[:len(prefix)].lower() == prefix.lower()


def _uidl_hex(md5):
    d = md5.digest()
    return bytes([d[3], d[2], d[1], d[0], d[7], d[6], d[5], d[4]]).hex()


def split_lines(data):
    """Lines including their LF; the last may be unterminated."""
    lines = data.split(b"\n")
    out = [l + b"\n" for l in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def parse_mbox(data):
    """popa3d's parser (§4.9). Returns [RefMessage]; raises MboxRefused."""
    msgs = []
    blank, header, body, received, prev_sel = True, False, False, False, False
    cur, md5, off = None, None, 0

    def finish(end, trim):
        cur.raw_end = end
        cur.data_end = end - (1 if trim else 0)
        cur.size -= 2 if trim else 0
        cur.uidl = _uidl_hex(md5)
        msgs.append(cur)

    for L in split_lines(data):
        if blank and L.startswith(b"From "):
            if off > 0:
                if cur is None or cur.data_off is None:
                    raise MboxRefused("data before first From_ or empty message")
                finish(off, body)
            cur = RefMessage(off)
            md5 = hashlib.md5()
            header, body, received, prev_sel = True, False, False, False
            off += len(L)
            continue
        if cur is None:
            raise MboxRefused("data before the first From_ line")
        if header and cur.data_off is None:
            cur.data_off = off
            cur.size = 0
        if cur.data_off is not None:
            cur.size += len(L) + 1
        blank = L == b"\n"
        if not header:
            if cur.data_off is not None:
                body = True
            off += len(L)
            continue
        if blank:
            header = False
            off += len(L)
            continue
        c = L[:1]
        if c in (b" ", b"\t"):
            sel = prev_sel
        elif c in (b"R", b"r"):
            sel = not received and _ci_prefix(L, b"Received:")
            if sel:
                received = True
        elif c in (b"D", b"d"):
            sel = _ci_prefix(L, b"Delivered-To:") or (
                not received and _ci_prefix(L, b"Date:"))
        elif c in (b"M", b"m"):
            sel = not received and _ci_prefix(L, b"Message-ID:")
        elif c == b"X":
            sel = _ci_prefix(L, b"X-Delivery-ID:")
        else:
            sel = False
        prev_sel = sel
        if sel:
            md5.update(L)
        off += len(L)
    if cur is None or cur.data_off is None:
        raise MboxRefused("empty file or From_ line without data")
    finish(off, blank and body)
    return msgs


def raw_extent(data, m):
    return data[m.raw_off:m.raw_end]


def message_data(data, m):
    return data[m.data_off:m.data_end]


def wire_lines(msg_data, crlf_fix=True):
    """Per stored line, its wire form before dot-stuffing.
    crlf_fix=True: popgate (a line already ending CR LF goes out as is);
    False: popa3d (every LF becomes CR LF, so CR LF becomes CR CR LF)."""
    out = []
    for L in split_lines(msg_data):
        if L.endswith(b"\n"):
            content = L[:-1]
            if crlf_fix and content.endswith(b"\r"):
                out.append(L)
            else:
                out.append(content + b"\r\n")
        else:
            out.append(L + b"\r\n")
    return out


def stuff(lines):
    return b"".join(b"." + l if l.startswith(b".") else l for l in lines)


def expected_retr(msg_data, crlf_fix=True):
    """Dot-stuffed wire body (without the final '.\\r\\n')."""
    return stuff(wire_lines(msg_data, crlf_fix))


def expected_top(msg_data, n, crlf_fix=True):
    """TOP msg n. popa3d arms the counter at the first LF-only empty line;
    popgate also at a CR LF-only line. No such line: the whole message."""
    stored = split_lines(msg_data)
    wl = wire_lines(msg_data, crlf_fix)
    blanks = (b"\n", b"\r\n") if crlf_fix else (b"\n",)
    for i, L in enumerate(stored):
        if L in blanks:
            return stuff(wl[:i + 1 + n])
    return stuff(wl)


def expected_size(msg_data, crlf_fix=True):
    """popgate: octets RETR sends before dot-stuffing. popa3d (crlf_fix=False)
    counts LF as two octets and an unterminated last line as +1."""
    if crlf_fix:
        return len(b"".join(wire_lines(msg_data, True)))
    return len(msg_data) + msg_data.count(b"\n") + (
        0 if msg_data.endswith(b"\n") or not msg_data else 1)


def crcrlf_to_crlf(wire):
    """popa3d's RETR/TOP bytes -> what popgate must send: the only documented
    difference is CR CR LF (a stored CR LF line) going out as CR LF."""
    return wire.replace(b"\r\r\n", b"\r\n")


# --------------------------------------------------------------------------
# Simple mailbox builder for readable tests.


def make_message(idx, subject=None, body_lines=None, received=True, crlf=False,
                 extra_headers=()):
    nl = b"\r\n" if crlf else b"\n"
    h = []
    if received:
        h.append(f"Received: from mx{idx}.example.org (mx [192.0.2.{idx % 250}])".encode())
        h.append(f"\tby host.local with ESMTP id ID{idx:06d}".encode())
    h.append(f"Date: Mon, 1 Jan 2024 00:{idx % 60:02d}:00 +0000".encode())
    h.append(f"Message-ID: <m{idx}@example.org>".encode())
    h.append(f"Subject: {subject or f'message {idx}'}".encode())
    h.extend(extra_headers)
    if body_lines is None:
        body_lines = [f"Body of message {idx}.".encode(), b"Second line."]
    return nl.join(h) + nl + nl + b"".join(l + nl for l in body_lines)


def make_mbox(messages):
    """From_ line + message + blank separator line for each message."""
    out = []
    for i, m in enumerate(messages):
        out.append(f"From sender{i}@example.org Mon Jan  1 00:00:00 2024\n".encode())
        out.append(m)
        if not m.endswith(b"\n"):
            out.append(b"\n")
        out.append(b"\n")
    return b"".join(out)


# --------------------------------------------------------------------------
# The server under test.
#
# POPGATE_E2E_SERVER=popa3d points the TCP suites at Debian's popa3d (run per
# connection by MiniInetd inside a private mount namespace, PAM auth) instead
# of popgate. That checks the tests themselves against the reference server;
# popgate-only expectations (CAPA, response codes) are then skipped.
# POPGATE_E2E_ARGS: extra popgate flags (shell-split), e.g. "--mode=fork".


def reference_mode():
    return os.environ.get("POPGATE_E2E_SERVER", "popgate") == "popa3d"


def extra_popgate_args():
    import shlex  # noqa: PLC0415
    return shlex.split(os.environ.get("POPGATE_E2E_ARGS", ""))


def popgate_common_args(root, spool, passwd_file):
    state = os.path.join(root, "state")
    os.makedirs(state, exist_ok=True)
    os.chmod(state, 0o755)
    return [f"--auth=passwd-file:{passwd_file}",
            f"--mail=mbox:{spool.path}/%u",
            f"--state_dir={state}"] + extra_popgate_args()


class ServerUnderTest:
    """popgate -D (default) or popa3d via MiniInetd, on 127.0.0.1:port.

    users: SystemUser objects (created with set_password=True so that the
    popa3d/PAM mode works too); extra_entries: additional passwd-file lines
    (user, password, uid, gid, home) for popgate only."""

    def __init__(self, root, spool, users, extra_args=(), extra_entries=()):
        self.root = root
        self.spool = spool
        self.is_popgate = not reference_mode()
        if self.is_popgate:
            pf = os.path.join(root, "passwd")
            write_passwd_file(pf, [(u.name, u.password, u.uid, u.gid, "/nonexistent")
                                   for u in users] + list(extra_entries))
            self.passwd_file = pf
            # Functional suites open many short connections from 127.0.0.1;
            # popa3d's 10 s slot hold would turn them away after 50 in 10 s.
            # test_flood checks the default policy with its own daemons.
            args = (popgate_common_args(root, spool, pf) + ["--min_session_slot=0"] +
                    list(extra_args))
            self.daemon = Daemon(args, root).start()
            self.port = self.daemon.port
        else:
            binary = popa3d_bin()
            if not binary:
                raise unittest.SkipTest("popa3d not installed (tools/test-setup.sh)")
            self.inetd = MiniInetd(in_mail_namespace(spool.path, [binary]))
            self.port = self.inetd.port

    def connect(self, source=None, timeout=IO_TIMEOUT):
        return Pop3Conn.connect(self.port, source=source, timeout=timeout)

    def stderr(self):
        return self.daemon.stderr() if self.is_popgate else b""

    def stop(self):
        if self.is_popgate:
            return self.daemon.stop()
        self.inetd.stop()
        return 0

    def kill(self):
        if self.is_popgate:
            self.daemon.kill()
        else:
            self.inetd.stop()


AUTH_FAILED = b"-ERR [AUTH] Authentication failed (bad password?)"
POPA3D_AUTH_FAILED = b"-ERR Authentication failed (bad password?)"


def auth_failed_text(is_popgate=True):
    return AUTH_FAILED if is_popgate else POPA3D_AUTH_FAILED


# --------------------------------------------------------------------------
# --mode=pool: probing the binary, the master's children (test_pool.py).

_HELP_CACHE = {}


def popgate_flag_help(name, binary=None):
    """The help entry of flag --name in `popgate --helpfull` (abseil's
    format: `    --name (text); default: value;`), or None if there is no
    such flag."""
    binary = binary or popgate_bin()
    if not binary:
        return None
    if binary not in _HELP_CACHE:
        try:
            r = subprocess.run([binary, "--helpfull"], capture_output=True,
                               timeout=10, stdin=subprocess.DEVNULL)
            _HELP_CACHE[binary] = (r.stdout + r.stderr).decode(errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            _HELP_CACHE[binary] = ""
    m = re.search(r"^ {4}--" + re.escape(name) + r" \((.*?)(?=^ {4}--|^\S|\Z)",
                  _HELP_CACHE[binary], re.M | re.S)
    return m.group(1) if m else None


def require_pool_mode():
    """Skips unless the daemon knows --mode=pool (so its suite can land
    before the feature does)."""
    binary = require_popgate()
    text = popgate_flag_help("mode", binary)
    if text is None or "pool" not in text:
        raise unittest.SkipTest("this popgate has no --mode=pool")
    return binary


def proc_status(pid):
    """/proc/PID/status as {field: value}, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
    except (OSError, ValueError):
        return None


def proc_ids(pid):
    """(uids, gids, groups) of PID: uids and gids are the 4-tuples
    (real, effective, saved, filesystem); None once the process is gone."""
    st = proc_status(pid)
    if st is None:
        return None
    uids = tuple(int(x) for x in st["Uid"].split())
    gids = tuple(int(x) for x in st["Gid"].split())
    groups = tuple(int(x) for x in st.get("Groups", "").split())
    return uids, gids, groups


def child_pids(pid):
    """Live (non-zombie) children of PID, from /proc/PID/task/*/children."""
    out = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.update(int(x) for x in f.read().split())
        except OSError:
            continue
    live = []
    for c in sorted(out):
        st = proc_status(c)
        if st is not None and not st.get("State", "").startswith("Z"):
            live.append(c)
    return live


def tree_pids(pid):
    """PID and all its live descendants."""
    out, todo = [], [pid]
    while todo and len(out) < 10000:
        p = todo.pop()
        out.append(p)
        todo.extend(child_pids(p))
    return out


class PoolDaemon(Daemon):
    """popgate -D --mode=pool: a root master, one auth process (root) and
    --workers workers running as the pool account, all children of the
    master. Tells them apart by uid; kill() also SIGKILLs every descendant
    by pid, in case a child left the daemon's process group."""

    def children(self):
        return child_pids(self.proc.pid) if self.proc else []

    def auth_pids(self):
        return [c for c in self.children() if (proc_ids(c) or ((1,),))[0][0] == 0]

    def worker_pids(self):
        return [c for c in self.children() if (proc_ids(c) or ((0,),))[0][0] != 0]

    def wait_children(self, workers, timeout=START_TIMEOUT, exclude=(), exact=True):
        """Waits until the master has exactly one auth process and `workers`
        workers (at least that many if not `exact`: old ones draining), none
        of them in `exclude` (pids that were killed); returns (auth_pid,
        [worker pids]). Raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            a, w = self.auth_pids(), self.worker_pids()
            enough = len(w) == workers if exact else len(w) >= workers
            if len(a) == 1 and enough and not set(a + w) & set(exclude):
                return a[0], w
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after {timeout}s the master has auth processes {a} and "
                    f"workers {w} (want 1 and {workers}, none of {list(exclude)})")
            time.sleep(0.05)

    def rss_anon_kb(self):
        """Sum of RssAnon over the master and its descendants."""
        total = 0
        for p in tree_pids(self.proc.pid):
            st = proc_status(p)
            if st and "RssAnon" in st:
                total += int(st["RssAnon"].split()[0])
        return total

    def kill(self):
        pids = tree_pids(self.proc.pid) if self.proc and self.proc.poll() is None else []
        for p in pids[1:]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
        super().kill()
