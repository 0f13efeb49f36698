"""End-to-end: popgate-flood against popgate -D on loopback, and the tool's
report checked against what the server logged.

A short, bounded poll + download run (a few seconds, a handful of clients,
127.0.0.1 only). The daemon is then stopped (SIGTERM drains it), and its
stderr log lines are counted: every session the tool reports as complete
must appear in the server's log as a finished QUIT, every connection the
server logged must be one the tool established, and the tool's own checks
(multi-line framing, RETR octets vs LIST, UIDL stability) must find nothing.

Run: sudo POPGATE_BIN=build/net/popgate POPGATE_FLOOD_BIN=build/tools/popgate-flood \
       python3 -m unittest -v test_flood_tool
"""

import json
import os
import re
import shutil
import subprocess
import unittest

import popgate_harness as h

REPO_ROOT = h.REPO_ROOT


def flood_bin():
    env = os.environ.get("POPGATE_FLOOD_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    for d in ("build", "build-flood", "build-e2e"):
        p = os.path.join(REPO_ROOT, d, "tools", "popgate-flood")
        if os.access(p, os.X_OK):
            return p
    return None


class FloodToolAgainstPopgate(unittest.TestCase):
    def setUp(self):
        h.require_root()
        h.require_popgate()
        self.flood = flood_bin()
        if not self.flood:
            self.skipTest("popgate-flood not built (set POPGATE_FLOOD_BIN)")
        self.root = h.make_test_root()
        self.addCleanup(shutil.rmtree, self.root, True)
        self.user = h.SystemUser()
        self.addCleanup(self.user.remove)
        self.spool = h.Spool(self.root)
        messages = [h.make_message(i) for i in range(1, 6)]
        self.spool.write(self.user.name, self.user.uid, h.make_mbox(messages))
        pf = os.path.join(self.root, "passwd")
        h.write_passwd_file(pf, [(self.user.name, self.user.password,
                                  self.user.uid, self.user.gid, "/nonexistent")])
        self.daemon = h.Daemon(
            h.popgate_common_args(self.root, self.spool, pf) +
            ["--max_sessions_per_source=1000", "--max_sessions=1000",
             "--min_session_slot=0"], self.root).start()
        self.addCleanup(self.daemon.kill)

    def run_flood(self, *args):
        cmd = [self.flood, f"--target=127.0.0.1:{self.daemon.port}",
               f"--user={self.user.name}", f"--pass={self.user.password}",
               "--progress=off", "--json", "--threads=1"] + list(args)
        r = subprocess.run(cmd, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return json.loads(r.stdout)

    def test_report_matches_server_log(self):
        report = self.run_flood("--scenario=poll:3,download:2", "--duration=3s",
                                "--retr=5")
        self.assertEqual(self.daemon.stop(), 0)
        log = self.daemon.stderr().decode(errors="replace")

        by_name = {s["name"]: s for s in report["scenarios"]}
        poll, download = by_name["poll"], by_name["download"]
        for s in (poll, download):
            self.assertGreater(s["ok"], 0, s)
            self.assertEqual(s["failed"], 0, s)
            self.assertEqual(sum(s["checks"].values()), 0,
                             f"tool found inconsistencies: {s['checks']}")
        self.assertGreaterEqual(download["messages"], 5 * download["ok"])

        ok = poll["ok"] + download["ok"]
        in_flight = poll["in_flight_at_end"] + download["in_flight_at_end"]
        established = poll["established"] + download["established"]
        sessions = len(re.findall(r"Session from 127\.0\.0\.1$", log, re.M))
        passed = len(re.findall(r"Authentication passed for ", log))
        quits = len(re.findall(r"\d+ \(\d+\) deleted, \d+ \(\d+\) left$", log,
                               re.M))
        failed_auth = len(re.findall(r"Authentication failed for ", log))
        print(f"\nflood: ok={ok} in_flight={in_flight} established={established} "
              f"log: sessions={sessions} passed={passed} quits={quits}")
        self.assertEqual(failed_auth, 0)
        # Every completed session ended with a logged QUIT update; sessions
        # cut off by the end of the run may have logged theirs or not.
        self.assertGreaterEqual(quits, ok)
        self.assertLessEqual(quits, ok + in_flight)
        self.assertGreaterEqual(passed, quits)
        # Each logged session is a connection the tool made.
        self.assertLessEqual(sessions, established)
        self.assertGreaterEqual(sessions, established - in_flight)


if __name__ == "__main__":
    unittest.main()
