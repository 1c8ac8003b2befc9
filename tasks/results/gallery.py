"""The misclassified-images gallery: hold-out mistakes of the best model, one thumbnail each."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tasks.data.splitting import ROLE_HOLDOUT, read_table
from tasks.layout import RunFolder
from tasks.models.predictions import read_predictions
from tasks.results.figures import save_figure

#: Hold-out images shown in the misclassified gallery.
GALLERY_SIZE = 16
#: Side of a gallery thumbnail in pixels (keeps the PNG small enough to embed in a report).
THUMBNAIL_SIDE = 160


def load_thumbnail(path: str | Path, side: int = THUMBNAIL_SIDE) -> np.ndarray | None:
    """The image as an RGB array at most ``side`` pixels wide/high, or None if it cannot be read.

    Any mode (grayscale, palette, RGBA, CMYK) is converted to RGB, as the models see it.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            rgb.thumbnail((side, side))
            return np.asarray(rgb)
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def thumbnail_grid(items: Sequence[tuple[str | Path | None, str, bool]]) -> Figure:
    """A figure of up to 4 thumbnails a row, one per (image path or None, title, alert) item, the
    title as given (already wrapped), in dark red when ``alert``; an image that cannot be read (or
    None) is a note in its cell. Shared by the misclassified and the prediction galleries."""
    columns = max(min(4, len(items)), 1)
    rows = max(math.ceil(len(items) / columns), 1)
    figure = Figure(figsize=(3.2 * columns, 3.0 * rows + 0.6), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, (image_path, title, alert) in zip(grid.flat, items):
        pixels = load_thumbnail(image_path) if image_path is not None else None
        if pixels is None:
            axes.text(0.5, 0.5, "image not readable", ha="center", va="center", color="#a00")
        else:
            axes.imshow(pixels)
        axes.set_title(title, fontsize=8, color="#8b1a1a" if alert else "#1a1a1a")
    return figure


def plot_misclassified_gallery(
    items: Sequence[tuple[str, str, str]], path: Path, model: str = "", total_wrong: int | None = None
) -> Path:
    """A grid of hold-out images the model got wrong, each titled ``true: X / pred: Y``.

    ``items`` are (image path, true class name, predicted class name). With no items the figure
    says that every hold-out image was classified correctly, so the file always exists.
    """
    items = list(items)[:GALLERY_SIZE]
    suffix = f" ({model})" if model else ""
    if not items:
        figure = Figure(figsize=(8, 4.5))
        axes = figure.subplots()
        axes.axis("off")
        axes.text(0.5, 0.55, "No misclassified hold-out images", ha="center", va="center", fontsize=14)
        axes.text(
            0.5,
            0.35,
            f"every hold-out image was classified correctly{suffix}",
            ha="center",
            va="center",
            fontsize=10,
            color="#555555",
        )
        axes.set_facecolor("#e8f3e8")
        figure.patch.set_facecolor("#eef6ee")
        return save_figure(figure, path)
    figure = thumbnail_grid(
        [(image, "\n".join(textwrap.wrap(f"true: {true} / pred: {pred}", 40)), True) for image, true, pred in items]
    )
    shown = f"{len(items)} of {total_wrong}" if total_wrong is not None else f"{len(items)}"
    figure.suptitle(f"Misclassified hold-out images{suffix}: {shown} shown", fontsize=12)
    return save_figure(figure, path)


def pick_misclassified(wrong: pd.DataFrame, target: str, limit: int = GALLERY_SIZE) -> pd.DataFrame:
    """Up to ``limit`` wrong rows, taken round-robin over true classes.

    One dominant confusion (say Magnoliopsida read as Liliopsida) would otherwise fill the whole
    gallery; round-robin shows the variety of mistakes. Deterministic: table order within a class.
    """
    if wrong.empty:
        return wrong
    ranked = wrong.assign(_rank=wrong.groupby(target).cumcount())
    return ranked.sort_values(["_rank", target], kind="stable").head(limit).drop(columns="_rank")


def misclassified_items(run_dir: Path, metrics: dict[str, Any]) -> tuple[list[tuple[str, str, str]], int]:
    """(image path, true name, predicted name) of the best model's wrong hold-out rows, and how many."""
    target, best, names = metrics["target"], metrics["best_model"], metrics["class_names"]
    run = RunFolder(run_dir)
    table = read_table(run.table)
    predictions = read_predictions(run.predictions_of(best))
    holdout = table[table["role"] == ROLE_HOLDOUT].loc[:, ["split", "filename", "path", target]]
    merged = holdout.merge(predictions.loc[:, ["split", "filename", "pred"]], on=["split", "filename"], how="inner")
    merged[target] = merged[target].astype(int)
    wrong = merged[merged[target] != merged["pred"]]
    chosen = pick_misclassified(wrong, target)
    items = [(str(r["path"]), names[int(r[target])], names[int(r["pred"])]) for _, r in chosen.iterrows()]
    return items, len(wrong)
