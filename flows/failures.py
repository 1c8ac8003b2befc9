"""Input errors end a flow run with one readable reason, not a pair of tracebacks.

A missing data directory, data that breaks a critical validation rule, a busy output directory or
missing Kaggle credentials are the user's to fix, and the message says how. Raised out of a
deployment run, Prefect logs such an error's traceback twice (the flow, then the engine).
Returned as a Failed state instead, the reason is logged once at ERROR (flushed to the API before
the state changes), it is the flow run's state message (``prefect flow-run inspect``; ``--watch``
itself prints only the state's name), the failure hooks still run, and a caller of the flow
function still gets the original exception raised. Prefect's engine still logs one traceback of
its own when the run's process ends on the Failed state.
"""

from __future__ import annotations

from typing import Any

from flows.cluster import WorkersCannotReach
from tasks.confine import PlantedLink
from tasks.data.dataset import DatasetError
from tasks.data.splitting import SplitError
from tasks.io import DiskFullError
from tasks.kaggle import KaggleCredentialsMissing, KaggleError
from tasks.lock import OutputDirBusy
from tasks.logs import get_logger, printable, printable_lines
from tasks.models.sizing import FeaturesTooLarge
from tasks.predict.inputs import InputError
from tasks.predict.source import PredictionError
from tasks.validation.report import ValidationFailed

#: The errors that mean "fix your input", not "the pipeline broke".
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    DatasetError,
    SplitError,
    ValidationFailed,
    OutputDirBusy,
    KaggleCredentialsMissing,
    KaggleError,
    PredictionError,  # no champion, no such run, a champion file or registry line damaged (tasks.predict.source)
    InputError,  # images to classify that cannot be listed
    FeaturesTooLarge,  # backbone features over --transfer.max-feature-gib
    WorkersCannotReach,  # a Dask cluster that cannot reach the API, the paths or the code
    DiskFullError,  # the output directory's disk or quota is full: named, never retried
    PlantedLink,  # a symbolic link planted where the pipeline writes in the output directory
)


def input_failure(exc: BaseException) -> Any:
    """The Failed state a flow returns for an input error (see the module docstring)."""
    from prefect.states import Failed

    reason = f"{type(exc).__name__}: {exc}"
    # It may quote file names from the data: escaped, but a validation failure keeps its one rule a
    # line (its examples were escaped as they were written, tasks.validation.gx_results).
    reason = printable_lines(reason) if isinstance(exc, ValidationFailed) else printable(reason)
    get_logger().error("Input error, nothing was trained or published: %s", reason)
    flush_logs()
    return Failed(message=reason, data=exc)


def flush_logs() -> None:
    """Send the run's queued log lines to the API now (best effort; a no-op without a run)."""
    try:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
    except Exception:  # logging must never turn an input error into a crash
        pass
