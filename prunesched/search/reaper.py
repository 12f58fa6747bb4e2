"""Ends what is left of a private Ray instance after its driver (a coordinator) died without shutting it down.

    python prunesched/search/reaper.py SESSION_DIR DRIVER_PID      (stdin: a pipe from the driver)

Ray ties the head processes a driver starts (GCS, raylet, monitor, log monitor) to that driver
(Linux ``PR_SET_PDEATHSIG``), and its workers die with their raylet. The raylet's two agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) are the raylet's children, not the driver's:
when the raylet dies they try to report its death to the GCS, which is dead too, and linger
about a minute (Ray 2.60). Ray's own reaper, which would end them, is not started on Linux.

:func:`prunesched.search.dispatch.ensure_ray` starts this script, in its own session (terminal
signals do not reach it), with a pipe on its stdin whose other end only the driver holds. End of
file on it means the driver is exiting, in any way, SIGKILL included (or, at a clean exit, that its
interpreter is tearing down). Once DRIVER_PID is gone, every process of this
user with a file open under SESSION_DIR (each Ray process holds its logs there) gets SIGTERM and,
one second later, SIGKILL. After a clean ``ray.shutdown()`` nothing matches and it just exits.
Standard library only: it runs as a plain script, not as part of the package.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

GRACE_S = 1.0


def session_processes(session_dir: str) -> list[int]:
    """This user's live (not zombie) processes, other than this one, with a file open under ``session_dir``."""
    prefix = os.path.realpath(session_dir).rstrip("/") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                if stat.read().rpartition(")")[2].split()[0] == "Z":
                    continue  # already dead, waiting for its parent to read its exit status
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}").startswith(prefix):
                    found.append(int(entry))
                    break
        except OSError:  # gone meanwhile, or another user's
            continue
    return found


def reap(session_dir: str) -> list[int]:
    """SIGTERM every process of the session, SIGKILL those still there after :data:`GRACE_S`; returns the pids found."""
    found = pids = session_processes(session_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):  # gone meanwhile
                os.kill(pid, sig)
        if sig == signal.SIGTERM and pids:
            time.sleep(GRACE_S)
            pids = [pid for pid in pids if pid in session_processes(session_dir)]
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def main() -> None:
    session_dir, driver = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):  # only EOF ends this: the driver is exiting
        pass
    while alive(driver):  # a clean exit closes the pipe before the end; never signal the driver itself
        time.sleep(0.1)
    reap(session_dir)


if __name__ == "__main__":
    main()
