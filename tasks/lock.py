"""One writer per output directory: an exclusive ``flock`` on ``<output-dir>/.lock`` (`OutputDir.lock`).

`output_dir_lock` is held for the whole of a run of ``full_pipeline`` and of ``validate``, taken
inside the flows so that command-line, UI and scheduled runs all queue on it. A second run on the
same output directory waits, after one log line naming the holder, or with ``wait=False`` raises
`OutputDirBusy` at once, naming it. While held, the file records who holds it as JSON: pid, host,
start time (UTC) and the Prefect flow run's name and id when there is one; it is emptied on release.

No stale-lock logic is needed: the lock belongs to the open file, so the kernel releases it when
its holder exits in any way, ``kill -9`` included, and the next run takes it at once. The file
itself stays (deleting a lock file lets two processes lock two different files). Locks are
per process: a flow that calls another flow on the same output directory in the same process
does not wait for itself. POSIX only (``fcntl``); on Windows runs are not serialised. On network
file systems ``flock`` is only as good as the server's lock support (the record names the host).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tasks.confine import open_in_place
from tasks.layout import OutputDir
from tasks.logs import get_logger

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: How long a reader retries when the record is empty (its holder took the lock a moment ago).
RECORD_WAIT_S = 1.0

_held: dict[Path, int] = {}  # lock file -> how many times this process holds it
_held_guard = threading.Lock()


class OutputDirBusy(RuntimeError):
    """Another run holds the output directory and the caller asked not to wait."""


def flow_run_info() -> dict[str, str]:
    """The current Prefect flow run's flow name, run name and id (empty outside a flow run)."""
    if "prefect" not in sys.modules:  # no flow run without it; importing it takes seconds
        return {}
    try:
        from prefect.context import FlowRunContext
    except ImportError:  # pragma: no cover - prefect is a hard dependency
        return {}
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return {}
    flow = context.flow.name if context.flow is not None else context.flow_run.flow_id
    return {"flow": str(flow), "flow_run": context.flow_run.name, "flow_run_id": str(context.flow_run.id)}


def holder_record(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What this process writes into the lock file while it holds it."""
    record: dict[str, Any] = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record.update(flow_run_info())
    record.update(extra or {})
    return record


def describe_holder(record: Mapping[str, Any] | None) -> str:
    """``pid 123 on host h since <time>, flow run 'name' (id ...)`` (or why nothing is known)."""
    if not record:
        return "another process (it has not written its record yet)"
    text = f"pid {record.get('pid', '?')} on host {record.get('host', '?')} since {record.get('started', '?')}"
    if record.get("flow_run"):
        text += f", flow run '{record['flow_run']}' of {record.get('flow', '?')} (id {record.get('flow_run_id', '?')})"
    return text


def read_record(lock_file: Path, patience_s: float = RECORD_WAIT_S) -> dict[str, Any] | None:
    """The holder's record; retried for ``patience_s`` while it is empty, unreadable or a dead
    process's (the holder took the lock a moment ago and is writing its own)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            record = json.loads(lock_file.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or left_by_the_dead(record):
            record = None
        if record or time.monotonic() >= deadline:
            return record
        time.sleep(0.05)


def left_by_the_dead(record: Mapping[str, Any]) -> bool:
    """A record of a process of this host that no longer exists (killed while it held the lock:
    the kernel released the lock, and the new holder has not overwritten the record yet)."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it exists
        return False
    return False


def ensure_free(output_dir: Path) -> None:
    """Raise `OutputDirBusy` if another process holds the output directory's lock right now.

    Takes nothing and creates nothing: a command line's fast check (with ``--no-wait``) before a
    Prefect server starts; the run itself still takes the lock with `output_dir_lock`.
    """
    lock_file = OutputDir(output_dir).lock
    if fcntl is None or not lock_file.exists():
        return
    with _held_guard:
        if lock_file in _held:
            return
    with open_lock_file(lock_file) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy(lock_file) from None
        fcntl.flock(handle, fcntl.LOCK_UN)


def open_lock_file(lock_file: Path) -> IO[str]:
    """Open (creating if needed, never truncating: a holder's record may be in it) the lock file for
    reading and rewriting, refusing a link or any other planted file there (`tasks.confine`)."""
    return os.fdopen(open_in_place(lock_file, os.O_RDWR | os.O_CREAT), "r+", encoding="utf-8")


def busy(lock_file: Path) -> OutputDirBusy:
    """The error of a run that does not wait, naming the lock's holder."""
    return OutputDirBusy(
        f"the output directory {lock_file.parent} is in use by {describe_holder(read_record(lock_file))} "
        f"(lock {lock_file}); not waiting (--no-wait): rerun without it to queue behind that run"
    )


@contextlib.contextmanager
def output_dir_lock(output_dir: Path, *, wait: bool = True, extra: Mapping[str, Any] | None = None) -> Iterator[Path]:
    """Hold ``<output-dir>/.lock`` exclusively; yields the lock file's path.

    Busy: with ``wait`` log one line naming the holder and block until it is released, else raise
    `OutputDirBusy` naming the holder. ``extra`` adds fields to this holder's record.
    """
    output = OutputDir(output_dir)
    lock_file = output.lock
    with _held_guard:
        if lock_file in _held:  # this process holds it already (a nested flow)
            _held[lock_file] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield lock_file
        finally:
            with _held_guard:
                _held[lock_file] -= 1
        return
    if fcntl is None:  # pragma: no cover - Windows
        yield lock_file
        return
    output.root.mkdir(parents=True, exist_ok=True)
    with open_lock_file(lock_file) as handle:
        acquire(handle, lock_file, wait)
        try:
            write_record(handle, holder_record(extra))
            with _held_guard:
                _held[lock_file] = 1
            try:
                yield lock_file
            finally:
                with _held_guard:
                    del _held[lock_file]
                handle.seek(0)
                handle.truncate()
                handle.flush()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def acquire(handle: IO[str], lock_file: Path, wait: bool) -> None:
    """Take the lock on ``handle``: at once if free, else wait (one log line) or raise `OutputDirBusy`."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    if not wait:
        raise busy(lock_file)
    holder = describe_holder(read_record(lock_file))
    get_logger().warning(f"Waiting for the output directory {lock_file.parent}: it is in use by {holder}")
    fcntl.flock(handle, fcntl.LOCK_EX)


def write_record(handle: IO[str], record: Mapping[str, Any]) -> None:
    """Replace the lock file's contents with this holder's record (the lock is held)."""
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(record, sort_keys=True) + "\n")
    handle.flush()
