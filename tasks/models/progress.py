"""Progress of a long stage (the backbone pass): a tqdm bar on the console, a Prefect progress artifact.

tqdm shows items/s and the ETA; on a terminal it redraws in place, in a log file (no TTY) it
writes a line at most every `LOG_INTERVAL_S` seconds. The same figures go to the run's progress
artifact (`tasks.results.report.ProgressReporter`, a no-op outside a run), one per stage key.
"""

from __future__ import annotations

import re
import sys
from types import TracebackType
from typing import Any

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

        from tasks.results.report import ProgressReporter

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
