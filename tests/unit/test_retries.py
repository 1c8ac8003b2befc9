"""Which failures the training tasks retry: transient ones only."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from prefect import task
from prefect.states import Failed

from flows.retries import IO_RETRIES, TRAINING_RETRIES, is_transient, retry_on_transient
from tasks.data.dataset import DatasetError
from tasks.data.splitting import SplitError
from tasks.io import atomic_write_text
from tasks.results.submission import SubmissionError
from tasks.validation.report import ValidationFailed


def tf_error(name: str) -> Exception:
    """An exception whose class is named like TensorFlow's (tf.errors.OpError subclasses)."""
    op_error = type("OpError", (Exception,), {})
    return type(name, (op_error,), {})("device busy")


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EIO, "I/O error"),
        ConnectionResetError(),
        ConnectionRefusedError(),
        TimeoutError(),
        BrokenPipeError(),
        tf_error("ResourceExhaustedError"),
        tf_error("UnavailableError"),
        tf_error("AbortedError"),
        tf_error("DeadlineExceededError"),
    ],
)
def test_transient_errors_are_retried(exc: Exception) -> None:
    assert retry_on_transient(None, None, Failed(data=exc))


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad"),
        KeyError("x"),
        TypeError("t"),
        MemoryError(),
        DatasetError("no info.json"),
        SplitError("too few"),
        SubmissionError("rows"),
        ValidationFailed("broken rule", None),
        FileNotFoundError(errno.ENOENT, "missing"),
        PermissionError(errno.EACCES, "denied"),
        OSError(errno.ENOSPC, "disk full"),
        RuntimeError("bug"),
        tf_error("InvalidArgumentError"),
        ZeroDivisionError(),
        AssertionError(),
    ],
)
def test_programming_and_data_errors_are_not(exc: Exception) -> None:
    assert not retry_on_transient(None, None, Failed(data=exc))


def test_a_full_disk_is_never_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from an atomic writer (tasks.io re-raises it with the file named) fails at once."""
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError) as error:
        atomic_write_text(tmp_path / "metrics.json", "{}")
    assert error.value.errno == errno.ENOSPC
    for exc in (error.value, OSError(errno.ENOSPC, "No space left on device")):
        assert not is_transient(exc)
        assert not IO_RETRIES["retry_condition_fn"](None, None, Failed(data=exc))
        assert not TRAINING_RETRIES["retry_condition_fn"](None, None, Failed(data=exc))


def test_io_retries_skip_permanent_errors_too() -> None:
    """Every task with the shared I/O settings (sample, Kaggle download) retries transient errors only."""
    io_task = task(lambda: None, name="io", **IO_RETRIES)
    assert io_task.retry_condition_fn is retry_on_transient
    assert IO_RETRIES["retry_condition_fn"](None, None, Failed(data=ConnectionResetError()))
    assert not IO_RETRIES["retry_condition_fn"](None, None, Failed(data=ValueError("bad layout")))


def test_a_state_without_an_exception_is_not_retried() -> None:
    assert not retry_on_transient(None, None, Failed(message="no data"))
    assert not is_transient(None)


def test_shared_settings_are_valid_task_options() -> None:
    io_task = task(lambda: None, name="io", **IO_RETRIES)
    assert io_task.retries == 3 and io_task.retry_delay_seconds == [1, 2, 4]
    train = task(lambda: None, name="train", **TRAINING_RETRIES)
    assert train.retries == 2 and train.retry_condition_fn is retry_on_transient
