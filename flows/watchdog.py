"""No orphaned servers: kill what a command-line run started when that run dies (Linux).

Without ``PREFECT_API_URL``, ``python -m flows.full`` (and ``flows.validate``) make Prefect start a
temporary API server, a uvicorn child process. Prefect stops it at exit (atexit), which never runs
when the flow process is killed with SIGKILL (or the OOM killer): the server used to live on,
re-parented to PID 1, holding its port and a SQLite database, and ignoring SIGTERM.

`start_watchdog` (called by the command lines' ``main()`` before the flow runs) starts a tiny
stdlib-only child process (this file as a script) that every `POLL_S` seconds

- records its parent's children and their descendants from ``/proc/<pid>/task/*/children``
  (with each one's start time, so a recycled pid is never killed), so it knows the server's pid
  before the parent dies, and
- checks whether its parent is still alive (``os.getppid()`` changes when it dies);

when the parent has died it SIGKILLs every recorded process that still exists (and the process
groups those of them lead), prints one line naming them to stderr, and exits. It exits the same way,
killing nothing left, after a normal exit of the parent (Prefect has stopped the server by then). It
ignores SIGINT, SIGHUP and SIGTERM (sent to the whole foreground job by Ctrl-C, a closed terminal or
``kill -- -PGID``) so that it outlives the run it guards; it is gone at most `POLL_S` seconds after it.

Linux only (``/proc``); elsewhere `start_watchdog` does nothing. Prefect's ``SubprocessASGIServer``
offers no hook to set ``PR_SET_PDEATHSIG`` on the server (and that signal follows the thread that
started the child, not the process), hence a watchdog process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: Seconds between two looks at the parent (also the longest a dead parent's server survives it).
POLL_S = 0.5
PROC = Path("/proc")


def supported() -> bool:
    """Whether this system has the ``/proc`` files the watchdog reads."""
    return sys.platform.startswith("linux") and any((PROC / "self" / "task").glob("*/children"))


_watchdogs: dict[int, subprocess.Popen[bytes]] = {}  # watched pid -> its watchdog


def start_watchdog(poll_s: float = POLL_S) -> subprocess.Popen[bytes] | None:
    """Start the watchdog of this process, once (None where unsupported). It needs no stopping."""
    if not supported():
        return None
    running = _watchdogs.get(os.getpid())
    if running is not None and running.poll() is None:  # main() called again in the same process
        return running
    watchdog = subprocess.Popen(
        [sys.executable, "-I", str(Path(__file__).resolve()), str(os.getpid()), str(poll_s)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    _watchdogs[os.getpid()] = watchdog
    return watchdog


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of its stat), None if gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and ")"
    if fields[0] in ("Z", "X"):  # a zombie is dead: nothing to kill
        return None
    return int(fields[19])


def children(pid: int) -> list[int]:
    """Direct children of every thread of ``pid`` (any thread may have started one)."""
    found: list[int] = []
    for path in (PROC / str(pid) / "task").glob("*/children"):
        try:
            found += [int(child) for child in path.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int, exclude: int) -> dict[int, int]:
    """Every living descendant of ``pid`` except ``exclude`` (and its own): pid -> start time."""
    found: dict[int, int] = {}
    todo = [child for child in children(pid) if child != exclude]
    while todo:
        child = todo.pop()
        if child in found or child == exclude:
            continue
        started = start_time(child)
        if started is not None:
            found[child] = started
            todo += children(child)
    return found


def kill_all(recorded: dict[int, int]) -> list[int]:
    """SIGKILL each recorded process that is still the same process, and its descendants since;
    also the process groups that such a process leads. Returns the pids killed."""
    alive = {pid: started for pid, started in recorded.items() if start_time(pid) == started}
    for pid in list(alive):
        alive.update(descendants(pid, exclude=os.getpid()))
    own_group = os.getpgrp()
    for pid in alive:
        try:
            if os.getpgid(pid) == pid and pid != own_group:
                os.killpg(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except OSError:  # gone meanwhile
            continue
    return sorted(alive)


def command_of(pid: int) -> str:
    """A process's command line, shortened, for the one line the watchdog prints."""
    try:
        words = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    return " ".join(word.decode(errors="replace") for word in words if word)[:120]


def watch(parent: int, poll_s: float = POLL_S) -> list[int]:
    """Follow ``parent`` until it dies; then kill what it had started. Returns the pids killed."""
    me = os.getpid()
    recorded: dict[int, int] = {}
    while os.getppid() == parent:
        recorded.update(descendants(parent, exclude=me))
        recorded = {pid: started for pid, started in recorded.items() if start_time(pid) == started}
        time.sleep(poll_s)
    names = {pid: command_of(pid) for pid in recorded}
    killed = kill_all(recorded)
    if killed:
        what = "; ".join(f"{pid} ({names.get(pid) or command_of(pid)})" for pid in killed)
        print(f"flows.watchdog: process {parent} died; killed what it had left running: {what}", file=sys.stderr)
    return killed


def main(argv: list[str]) -> int:
    """``watchdog.py PARENT_PID [POLL_S]``: run by `start_watchdog`, not by hand."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    parent = int(argv[0])
    poll_s = float(argv[1]) if len(argv) > 1 else POLL_S
    if os.getppid() != parent:  # the parent died before we started: nothing recorded to kill
        return 0
    watch(parent, poll_s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
