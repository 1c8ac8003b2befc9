"""Which failures are worth a retry, and the retry settings the task wrappers share.

A night's retraining should survive a flaky disk, a dropped connection or a GPU that was busy
for a moment, but a retry must never hide a bug or a bad dataset: those fail at once, with the
original error. `retry_on_transient` is a Prefect ``retry_condition_fn`` that draws that line;
TensorFlow's errors are matched by class name, so this module never imports TensorFlow.

Usage on a task::

    task(train_fn, retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=retry_on_transient)
    task(read_fn, **IO_RETRIES)
"""

from __future__ import annotations

import errno
from typing import Any

from prefect.tasks import exponential_backoff

from tasks.io import is_disk_full

__all__ = ["IO_RETRIES", "TRAINING_RETRIES", "is_first_attempt", "is_transient", "retry_on_transient"]

# Errors that say "try again later": the operating system's, the network's, TensorFlow's
# (matched by class name anywhere in the exception's class hierarchy) and HTTP clients'.
TRANSIENT_NAMES = frozenset(
    {
        # tf.errors
        "ResourceExhaustedError",
        "UnavailableError",
        "AbortedError",
        "DeadlineExceededError",
        # httpx / httpcore (not OSError subclasses)
        "TransportError",
        "TimeoutException",
        "NetworkError",
        "RemoteProtocolError",
        # urllib3
        "ProtocolError",
        "NewConnectionError",
        "MaxRetryError",
    }
)

# OSError subclasses that describe the world as it is, not a passing hiccup: retrying a missing
# file or a permission problem only delays the real message.
PERMANENT_OS_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
PERMANENT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EEXIST,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.EINVAL,
    }
)


def is_transient(exc: BaseException | None) -> bool:
    """True when another attempt could succeed without anyone changing code or data."""
    if exc is None or isinstance(exc, (MemoryError, KeyboardInterrupt, SystemExit)) or is_disk_full(exc):
        return False  # a full disk stays full for the seconds a retry waits (numpy reports it without errno)
    if isinstance(
        exc,
        (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            NameError,
            AssertionError,
            NotImplementedError,
            ImportError,
            IndexError,
            ZeroDivisionError,
        ),
    ):
        return False  # programming or data errors; DatasetError & co. are ValueErrors
    if isinstance(exc, (ConnectionError, TimeoutError)):  # before OSError: both are OSErrors
        return True
    if isinstance(exc, OSError):
        return not isinstance(exc, PERMANENT_OS_ERRORS) and exc.errno not in PERMANENT_ERRNOS
    return any(cls.__name__ in TRANSIENT_NAMES for cls in type(exc).__mro__)


def failure_exception(state: Any) -> BaseException | None:
    """The exception a failed Prefect state carries (Prefect 3 wraps it as ``Failed(data=exc)``)."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception:  # an unreadable result is not a reason to retry
        return None
    return result if isinstance(result, BaseException) else None


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry OS/network/timeouts and TF's resource errors only.

    Prefect 3.9 calls it as ``fn(task, task_run, state)`` with ``state = Failed(data=exception)``
    before each retry; returning False fails the task at once with the original error.
    """
    return is_transient(failure_exception(state))


# Shared retry settings. I/O: up to three retries with exponential backoff (1 s, 2 s, 4 s) and
# jitter, on transient errors only: a full disk, a missing file or a bad layout fails at once.
IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=1),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
}

# Training: only transient errors, twice; the retried run resumes from its stage-2 checkpoint.
TRAINING_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [10, 60],
    "retry_condition_fn": retry_on_transient,
}


def is_first_attempt() -> bool:
    """False inside a retry of the current task run (True outside any task run).

    A retried training run must resume from its checkpoint, so a task that wipes its checkpoint
    when asked to refresh should do so only on the first attempt:
    ``train_transfer(..., refresh=refresh and is_first_attempt())``.
    """
    from prefect.runtime import task_run

    try:
        return int(task_run.run_count or 0) <= 1
    except Exception:
        return True
