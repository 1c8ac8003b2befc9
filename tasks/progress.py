"""Progress of long stages: a tqdm bar on the console and a Prefect progress artifact.

tqdm shows items/s and the ETA; on a terminal it redraws in place, in a log file (no TTY) it
writes a line at most every `LOG_INTERVAL_S` seconds. The same figures go to the run's progress
artifact (`ProgressReporter`, a no-op outside a run), one per stage key. Core floor: training,
the backbone pass and the flows report through it; Prefect is imported only inside a run.
"""

from __future__ import annotations

import re
import sys
from types import TracebackType
from typing import Any

from tasks.logs import get_logger

#: Key of the training progress artifact.
PROGRESS_KEY = "training-progress"
_KEY_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

#: Seconds between console lines when stderr is not a terminal (a log file, the Prefect worker).
LOG_INTERVAL_S = 30.0


def artifact_key(label: str) -> str:
    """A progress artifact key from a stage label (lowercase letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") + "-progress"


class StageProgress:
    """``with StageProgress("backbone features", total=n) as p: ... p.advance(k)``."""

    def __init__(self, label: str, total: int, unit: str = "it") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.bar: Any = None
        self.reporter: Any = None

    def __enter__(self) -> StageProgress:
        from tqdm.auto import tqdm

        tty = sys.stderr.isatty()
        self.bar = tqdm(
            total=self.total,
            desc=self.label,
            unit=self.unit,
            file=sys.stderr,
            mininterval=0.5 if tty else LOG_INTERVAL_S,
            dynamic_ncols=tty,
        )
        self.reporter = ProgressReporter(key=artifact_key(self.label), description=self.label)
        return self

    def advance(self, done: int) -> None:
        """``done`` more items finished."""
        self.bar.update(done)
        figures = self.bar.format_dict
        rate = figures.get("rate") or 0.0
        remaining = (self.total - figures["n"]) / rate if rate else None
        eta = f", ETA {remaining / 60:.1f} min" if remaining is not None else ""
        self.reporter.update(
            figures["n"],
            self.total,
            description=f"{self.label}: {figures['n']:,}/{self.total:,} {self.unit}, {rate:.1f} {self.unit}/s{eta}",
        )

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.close()


def in_prefect_run() -> bool:
    """True inside a flow or task run, where artifacts have a run to belong to."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def check_artifact_key(key: str) -> str:
    """Prefect keys are lowercase letters, digits and dashes; fail early with the bad key named."""
    if not _KEY_PATTERN.match(key):
        raise ValueError(f"artifact key {key!r} must be lowercase letters, digits and single dashes")
    return key


class ProgressReporter:
    """A progress artifact (0-100 %) for a long stage, e.g. training epochs or feature extraction.

    Created on the first `update`, then updated in place, so the UI shows one bar per run under a
    stable key. Updates smaller than ``min_step`` percentage points are skipped (an API call per
    batch would slow the stage down). Best effort: progress must never fail the work it reports
    on, so an API error is logged once and further updates are dropped. A no-op outside a run.
    """

    def __init__(self, key: str = PROGRESS_KEY, description: str | None = None, min_step: float = 1.0) -> None:
        self.key = check_artifact_key(key)
        self.description = description
        self.min_step = min_step
        self.artifact_id: Any = None
        self.last: float | None = None
        self.disabled = False

    def update(self, done: float, total: float, description: str | None = None) -> float | None:
        """Report ``done`` of ``total``; returns the percentage sent, or None when nothing was sent."""
        if self.disabled or not in_prefect_run():
            return None
        percent = 100.0 if total <= 0 else max(0.0, min(100.0, 100.0 * float(done) / float(total)))
        if self.last is not None and abs(percent - self.last) < self.min_step and percent < 100.0:
            return None
        try:
            from prefect.artifacts import create_progress_artifact, update_progress_artifact

            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(  # type: ignore[call-arg]  # Prefect adds _sync at run time
                    progress=percent, key=self.key, description=description or self.description, _sync=True
                )
            else:
                update_progress_artifact(self.artifact_id, percent, description=description, _sync=True)  # type: ignore[call-arg]  # Prefect adds _sync at run time
        except Exception as exc:  # progress is decoration; never fail the stage for it
            get_logger().warning("Progress artifact %s disabled: %s: %s", self.key, type(exc).__name__, exc)
            self.disabled = True
            return None
        self.last = percent
        return percent

    def finish(self, description: str | None = None) -> float | None:
        """Mark the stage complete (100 %)."""
        return self.update(1, 1, description)
