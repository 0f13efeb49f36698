"""What bench/relogin.py and bench/open_stall.py share: their command line
(a popgate binary and a big mbox's shape) and stopping a daemon before its
users are removed."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "e2e"))
import popgate_harness as h  # noqa: E402,F401  (the callers' harness too)

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def parse_args(doc):
    """--popgate, --mb, --kb and --trials; `doc`'s first line is the help."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--popgate", default=os.path.join(REPO, "build/net/popgate"))
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--kb", type=int, default=100)
    ap.add_argument("--trials", type=int, default=5)
    return ap.parse_args()


def stop_daemon(daemon):
    """Graceful, so every child is gone before userdel (which refuses a user
    that still runs a process); SIGKILL if that fails. Waits at most 5 s."""
    if daemon is None:
        return
    try:
        daemon.stop()
    except AssertionError:
        daemon.kill()
    for _ in range(50):
        if not daemon.leftover_processes():
            break
        time.sleep(0.1)
