"""No orphaned servers: ``kill -9`` of ``python -m flows.full`` takes Prefect's temporary API server
(a uvicorn child process) with it, and frees its port (flows.watchdog). Linux only (/proc)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")

#: How long the server may outlive the flow process.
DEADLINE_S = 10.0


def state_and_start(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a process, None when it no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (children of all its threads, recursively)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        for path in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                children = [int(child) for child in path.read_text().split()]
                found += children
                todo += children
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def find_server(flow_pid: int, timeout_s: float) -> tuple[int, int]:
    """(pid, port) of the temporary Prefect server under the flow process, once it answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in descendants(flow_pid):
            words = cmdline(pid)
            if "uvicorn" in words and "prefect.server.api.server:create_app" in words:
                port = int(words[words.index("--port") + 1])
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    return pid, port
        time.sleep(0.2)
    raise AssertionError(f"no temporary Prefect server answered under pid {flow_pid} within {timeout_s:.0f} s")


def dead(pid: int, started: int) -> bool:
    """Gone, a zombie (holds nothing, only waits to be reaped), or a new process with a recycled pid."""
    now = state_and_start(pid)
    return now is None or now[0] in ("Z", "X") or now[1] != started


def port_free(port: int) -> bool:
    """A new server could listen on the port (as uvicorn does: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


#: A stand-in for the flow process: starts its watchdog, then from a worker thread (as Prefect may)
#: a "server" that listens on a port and ignores SIGTERM; prints the server's pid and port.
FAKE_FLOW = """
import subprocess, sys, threading, time
from flows.watchdog import start_watchdog
start_watchdog(poll_s=0.1)
SERVER = (
    "import signal, socket, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); time.sleep(600)"
)
started = []
thread = threading.Thread(target=lambda: started.append(subprocess.Popen(
    [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)))
thread.start(); thread.join()
port = started[0].stdout.readline().strip()
print(started[0].pid, port, flush=True)
time.sleep(600)
"""


def test_the_watchdog_kills_what_a_killed_process_started() -> None:
    flow = subprocess.Popen(
        [sys.executable, "-c", FAKE_FLOW], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    server = 0
    try:
        assert flow.stdout is not None
        server, port = (int(word) for word in flow.stdout.readline().split())
        found = state_and_start(server)
        assert found is not None and not port_free(port)
        time.sleep(0.3)  # a few watchdog polls: it has recorded the server
        flow.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        flow.wait(timeout=10)
        while not dead(server, found[1]) and time.monotonic() - killed_at < 5:
            time.sleep(0.02)
        assert dead(server, found[1]), "the watchdog left the server of a killed process running"
        assert port_free(port)
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait()
        if server and (found := state_and_start(server)) is not None and found[0] != "Z":
            os.kill(server, signal.SIGKILL)


@pytest.mark.slow
def test_kill_9_of_the_cli_leaves_no_prefect_server(tiny_sample: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # a temporary server, please
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    log = tmp_path / "flow.log"
    with open(log, "w") as stream:
        flow = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.full",
                "--data-dir",
                str(tiny_sample),
                "--output-dir",
                str(tmp_path / "out"),
                "--no-transfer",
                "--embedding-models",
                "--pixel-models",
                "random_forest",
                "--rf-n-estimators",
                "5",
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    left: dict[int, int] = {}
    try:
        server, port = find_server(flow.pid, timeout_s=150)
        assert flow.poll() is None, log.read_text()
        for pid in [*descendants(flow.pid), server]:  # the server, the watchdog, anything else it started
            if (found := state_and_start(pid)) is not None:
                left[pid] = found[1]
        flow.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        flow.wait(timeout=10)
        while time.monotonic() - killed_at < DEADLINE_S:
            if all(dead(pid, started) for pid, started in left.items()) and port_free(port):
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - killed_at
        alive = {pid: " ".join(cmdline(pid))[:100] for pid, started in left.items() if not dead(pid, started)}
        assert not alive, f"still running {elapsed:.1f} s after kill -9 of the flow process: {alive}"
        assert port_free(port), f"port {port} of the temporary server is still taken {elapsed:.1f} s after kill -9"
        print(f"temporary server {server} (port {port}) gone {elapsed:.2f} s after kill -9 of the flow process")
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait()
        for pid, started in left.items():  # never leak an orphan, even when the test fails
            if not dead(pid, started):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
