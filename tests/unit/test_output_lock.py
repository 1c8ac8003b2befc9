"""One writer per output directory (tasks.lock): a second process waits naming the holder, or fails
fast with ``wait=False``; the kernel releases the lock when its holder ends, even by SIGKILL."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tasks.layout import OutputDir
from tasks.lock import OutputDirBusy, ensure_free, output_dir_lock
from tests.helpers import REPO

#: A tiny process that takes the lock (as flow run "helper-run"), says so, and holds it until its
#: stdin is closed.
HOLDER = """
import sys
from tasks.lock import output_dir_lock
extra = {"flow": "lock-holder", "flow_run": "helper-run", "flow_run_id": "0000-helper"}
with output_dir_lock(sys.argv[1], extra=extra):
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextmanager
def holder(output_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process holding ``output_dir``'s lock until the block ends (or it is killed)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(output_dir)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=10)


def waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "living_things"]


def test_a_second_process_waits_logging_the_holder_then_proceeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    taken = threading.Event()

    def second_run() -> None:
        with output_dir_lock(out, wait=True):
            taken.set()
            record = json.loads(OutputDir(out).lock.read_text())
            assert record["pid"] == os.getpid()

    caplog.set_level(logging.WARNING, logger="living_things")
    with holder(out) as process:
        thread = threading.Thread(target=second_run)
        thread.start()
        deadline = time.monotonic() + 10
        while not waiting_lines(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert not taken.is_set(), "the second run did not wait for the holder"
        [line] = waiting_lines(caplog)
        assert f"pid {process.pid} on host {socket.gethostname()}" in line
        assert "flow run 'helper-run' of lock-holder (id 0000-helper)" in line
        assert str(OutputDir(out).root) in line
    thread.join(timeout=10)
    assert taken.is_set(), "the second run did not proceed after the holder released the lock"
    assert OutputDir(out).lock.read_text() == ""  # released: no stale record left


def test_no_wait_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with holder(out) as process:
        started = time.monotonic()
        with pytest.raises(OutputDirBusy) as caught:
            with output_dir_lock(out, wait=False):
                pytest.fail("took a lock that another process holds")
        assert time.monotonic() - started < 2
        with pytest.raises(OutputDirBusy) as checked:
            ensure_free(out)
    for message in (str(caught.value), str(checked.value)):
        assert f"in use by pid {process.pid} on host {socket.gethostname()}" in message
        assert "'helper-run'" in message and str(OutputDir(out).root) in message and "--no-wait" in message


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    with pytest.raises(OutputDirBusy):
        ensure_free(out)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert json.loads(OutputDir(out).lock.read_text())["pid"] == process.pid  # SIGKILL: no cleanup ran
    ensure_free(out)
    with output_dir_lock(out, wait=False):  # at once, and the dead holder's record is replaced
        assert json.loads(OutputDir(out).lock.read_text())["pid"] == os.getpid()


def test_the_lock_is_released_after_the_run_even_when_it_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the run failed"):
        with output_dir_lock(out):
            raise RuntimeError("the run failed")
    assert OutputDir(out).lock.read_text() == ""
    check = subprocess.run(
        [sys.executable, "-c", "import sys; from tasks.lock import ensure_free; ensure_free(sys.argv[1])", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_a_nested_run_in_the_same_process_does_not_wait_for_itself(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with output_dir_lock(out, wait=False):
        with output_dir_lock(out, wait=False):
            ensure_free(out)
        assert json.loads(OutputDir(out).lock.read_text())["pid"] == os.getpid()  # still held
    assert OutputDir(out).lock.read_text() == ""


def test_ensure_free_creates_nothing(tmp_path: Path) -> None:
    ensure_free(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


@pytest.mark.slow
def test_cli_no_wait_exits_1_with_one_line_naming_the_holder(tiny_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with holder(out) as process:
        result = subprocess.run(
            [sys.executable, "-m", "flows.full", "--data-dir", str(tiny_sample), "--output-dir", str(out), "--no-wait"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: the output directory"), result.stderr
    assert f"in use by pid {process.pid} on host {socket.gethostname()}" in lines[0]
    assert not OutputDir(out).runs.exists()
