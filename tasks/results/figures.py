"""Writing matplotlib figures: one resolution, atomic PNG files."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from tasks.io import atomic_write

DPI = 110


def save_figure(figure: Figure, path: Path) -> Path:
    """Write the figure as PNG atomically (a reader never sees half a file), then free it."""
    try:
        return atomic_write(Path(path), lambda tmp: figure.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight"))
    finally:
        figure.clear()
