"""The run's plots: PNG files in ``<run>/plots/`` that people can read at a glance.

One plain function per plot, each ``plot_x(..., path) -> Path``, so they can be reused and tested
alone, plus `make_run_plots`, which reads a finished run folder and draws every plot it has
inputs for. Figures are built with `matplotlib.figure.Figure` directly (never pyplot), so no GUI
backend, global figure list or thread is involved: each figure is saved atomically and freed.
Titles name the model and the data, axes say their units, classes are shown by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import Normalize, PowerNorm
from matplotlib.figure import Figure

from tasks.layout import RunFolder
from tasks.logs import get_logger
from tasks.results.figures import save_figure
from tasks.results.gallery import misclassified_items, plot_misclassified_gallery

#: Cell values are written into confusion matrices up to this many classes (beyond: heat map only).
MAX_ANNOTATED_CLASSES = 10
PLOT_NAMES = (
    "class_distribution",
    "training_curves",
    "confusion_matrix",
    "per_class_f1",
    "model_comparison",
    "misclassified",
)


def class_axis_font_size(n_classes: int) -> float:
    """Tick labels shrink with the number of classes so that 50 family names still fit."""
    return 10.0 if n_classes <= 10 else 8.0 if n_classes <= 20 else 6.5


def plot_class_distribution(
    class_names: Sequence[str], before: Sequence[int], after: Sequence[int], strategy: str, path: Path
) -> Path:
    """Training images per class before and after resampling (the train split only).

    Horizontal bars, so that class names stay horizontal and readable for 8 or 50 classes.
    """
    n = len(class_names)
    if len(before) != n or len(after) != n:
        raise ValueError(f"{n} class names but {len(before)} 'before' and {len(after)} 'after' counts")
    figure = Figure(figsize=(9, max(3.5, 0.32 * n + 1.6)))
    axes = figure.subplots()
    rows = np.arange(n)
    height = 0.4
    axes.barh(rows - height / 2, before, height, label=f"before ({sum(before):,} images)", color="#9aa5b1")
    axes.barh(rows + height / 2, after, height, label=f"after {strategy} ({sum(after):,} images)", color="#2f6fb3")
    for y, value in zip(rows + height / 2, after):
        axes.text(value, y, f" {value:,}", va="center", fontsize=class_axis_font_size(n) - 1)
    axes.set_yticks(rows, labels=list(class_names), fontsize=class_axis_font_size(n))
    axes.invert_yaxis()  # label index 0 at the top, as in info.json
    axes.set_xlabel("training images (count)")
    ratio_before = max(before) / max(1, min(before))
    ratio_after = max(after) / max(1, min(after))
    title = f"Training images per class, before and after resampling ({strategy})"
    subtitle = f"imbalance ratio (largest / smallest class): {ratio_before:.1f} before, {ratio_after:.1f} after"
    if strategy == "class-weights":
        subtitle += "; counts unchanged, the loss weighs classes instead"
    axes.set_title(f"{title}\n{subtitle}", fontsize=11)
    axes.legend(loc="lower right")
    axes.margins(x=0.12)
    axes.grid(axis="x", alpha=0.3)
    return save_figure(figure, path)


def global_epochs(epochs: Sequence[dict[str, Any]]) -> np.ndarray:
    """1, 2, ... across both stages, so stage 2 continues where stage 1 ended on one x axis."""
    return np.arange(1, len(epochs) + 1)


def plot_training_curves(history: dict[str, Any], path: Path) -> Path:
    """Loss, training accuracy and validation macro-F1 per epoch, both stages on one axis.

    Stage 1 (frozen backbone) and stage 2 (fine-tuning) are drawn in different colours with a
    dashed line where fine-tuning starts, so a jump or a collapse after unfreezing is obvious.
    """
    epochs = sorted(history.get("epochs", []), key=lambda r: (int(r.get("stage", 1)), int(r.get("epoch", 0))))
    if not epochs:
        raise ValueError("the training history has no epochs to plot")
    x = global_epochs(epochs)
    stages = np.array([int(r.get("stage", 1)) for r in epochs])
    panels = [
        ("loss", "Training loss", "loss (cross-entropy)"),
        ("accuracy", "Training accuracy", "accuracy (share)"),
        ("val_macro_f1", "Validation macro-F1", "macro-F1 on the validation slice"),
    ]
    figure = Figure(figsize=(14, 4.2))
    axes_row = figure.subplots(1, 3)
    colours = {1: "#2f6fb3", 2: "#d1495b"}
    for axes, (key, title, label) in zip(axes_row, panels):
        values = np.array([float(r[key]) if r.get(key) is not None else np.nan for r in epochs])
        for stage in sorted(set(stages.tolist())):
            mask = stages == stage
            name = "stage 1: frozen backbone" if stage == 1 else "stage 2: fine-tuning"
            axes.plot(x[mask], values[mask], marker="o", markersize=3, color=colours.get(stage, "gray"), label=name)
        if 2 in stages and 1 in stages:
            axes.axvline(x[stages == 2][0] - 0.5, color="gray", linestyle="--", linewidth=1)
        if key == "val_macro_f1" and np.isfinite(values).any():
            best = int(np.nanargmax(values))
            axes.annotate(
                f"best {values[best]:.3f}",
                (x[best], values[best]),
                textcoords="offset points",
                xytext=(0, -14),
                ha="center",
                fontsize=8,
            )
        if key != "loss":
            axes.set_ylim(0, 1.05)
        axes.set_xlabel("epoch (stage 1, then stage 2)")
        axes.set_ylabel(label)
        axes.set_title(title)
        axes.grid(alpha=0.3)
    axes_row[0].legend(fontsize=8)
    figure.suptitle(f"Training curves: {history.get('model', 'transfer model')}", fontsize=12)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_confusion_matrix(
    normalised: Sequence[Sequence[float]],
    class_names: Sequence[str],
    model: str,
    path: Path,
    counts: Sequence[Sequence[int]] | None = None,
) -> Path:
    """The row-normalised confusion matrix (rows: true class, columns: predicted class).

    Row-normalised so that small classes are as visible as large ones: the diagonal is each
    class's recall. Cells carry their values up to `MAX_ANNOTATED_CLASSES` classes; beyond that
    it is a heat map whose off-diagonal hot spots show which classes are confused.
    """
    matrix = np.asarray(normalised, dtype=float)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {n} classes")
    side = 7.5 if n <= MAX_ANNOTATED_CLASSES else min(22.0, 4 + 0.34 * n)
    figure = Figure(figsize=(side + 1.5, side))
    axes = figure.subplots()
    annotated = n <= MAX_ANNOTATED_CLASSES
    # Without cell text, a square-root colour scale keeps 5% confusions visible next to a 90% diagonal.
    norm = Normalize(0.0, 1.0) if annotated else PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    image = axes.imshow(matrix, cmap="Blues", norm=norm)
    colourbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colourbar.set_label("share of the true class's hold-out images" + ("" if annotated else " (square-root scale)"))
    font = class_axis_font_size(n)
    axes.set_xticks(
        range(n),
        labels=list(class_names),
        rotation=60 if annotated else 90,
        ha="right" if annotated else "center",
        fontsize=font,
    )
    axes.set_yticks(range(n), labels=list(class_names), fontsize=font)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    if annotated:
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                text = f"{value:.2f}" if counts is None else f"{value:.2f}\n({int(np.asarray(counts)[i, j])})"
                colour = "white" if value > 0.55 else "black" if value > 0 else "#b0b0b0"
                axes.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    recall = float(np.mean(np.diag(matrix))) if n else 0.0
    axes.set_title(
        f"Confusion matrix on the hold-out, row-normalised: {model}\ndiagonal = recall per class (mean {recall:.3f})",
        fontsize=11,
    )
    return save_figure(figure, path)


def plot_per_class_f1(models: dict[str, Sequence[float]], class_names: Sequence[str], path: Path) -> Path:
    """Per-class hold-out F1 for every model side by side.

    Macro-F1 hides which classes a model fails; this shows whether the rare classes (one family
    each) are the ones that drag a model down. Up to `MAX_ANNOTATED_CLASSES` classes: grouped
    horizontal bars; beyond (50 families x several models would be hundreds of hair-thin bars):
    a class x model heat map with the F1 written in each cell.
    """
    if not models:
        raise ValueError("no models to plot")
    n = len(class_names)
    for name, values in models.items():
        if len(values) != n:
            raise ValueError(f"model {name} has {len(values)} per-class F1 values for {n} classes")
    if n > MAX_ANNOTATED_CLASSES:
        return plot_per_class_f1_heatmap(models, class_names, path)
    k = len(models)
    figure = Figure(figsize=(10, max(4.0, n * (0.12 * k + 0.25) + 1.5)), layout="constrained")
    axes = figure.subplots()
    height = 0.8 / k
    colours = color_cycle(k)
    rows = np.arange(n)
    for i, (name, values) in enumerate(models.items()):
        axes.barh(
            rows - 0.4 + height * (i + 0.5),
            values,
            height,
            label=f"{name} (macro {np.mean(values):.3f})",
            color=colours[i],
        )
    axes.set_yticks(rows, labels=list(class_names), fontsize=class_axis_font_size(n))
    axes.invert_yaxis()
    axes.set_xlim(0, 1.0)
    axes.set_xlabel("F1 on the hold-out (0 to 1)")
    axes.set_title("Per-class F1 of every model on the same hold-out", fontsize=11)
    axes.grid(axis="x", alpha=0.3)
    figure.legend(fontsize=8, loc="outside lower center", ncol=min(3, k), frameon=False)
    return save_figure(figure, path)


def plot_per_class_f1_heatmap(models: dict[str, Sequence[float]], class_names: Sequence[str], path: Path) -> Path:
    """Per-class F1 as a class x model grid (red: poor, green: good), for many classes."""
    n, k = len(class_names), len(models)
    values = np.array([list(v) for v in models.values()], dtype=float).T  # classes x models
    figure = Figure(figsize=(min(4 + 1.3 * k, 20), 2.5 + 0.24 * n))
    axes = figure.subplots()
    image = axes.imshow(values, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    colourbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colourbar.set_label("F1 on the hold-out (0 to 1)")
    labels = [f"{name}\n(macro {np.mean(v):.3f})" for name, v in models.items()]
    axes.set_xticks(range(k), labels=labels, rotation=30, ha="right", fontsize=8)
    axes.set_yticks(range(n), labels=list(class_names), fontsize=class_axis_font_size(n))
    if k <= 12:
        for i in range(n):
            for j in range(k):
                axes.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
    axes.set_title("Per-class F1 of every model on the same hold-out", fontsize=11)
    return save_figure(figure, path)


def color_cycle(k: int) -> list[Any]:
    """k distinguishable colours (tab10, then tab20 for more models)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def error_bars(values: np.ndarray, intervals: list[dict[str, Any]]) -> np.ndarray | None:
    """(2, n) distances below and above each value to its interval's ends; None unless every row has one."""
    if not intervals or not all(intervals):
        return None
    low = np.array([float(ci["low"]) for ci in intervals])
    high = np.array([float(ci["high"]) for ci in intervals])
    return np.clip(np.vstack([values - low, high - values]), 0, None)


def label_bars(
    axes: Any, bars: Any, values: np.ndarray, intervals: list[dict[str, Any]], errors: np.ndarray | None
) -> None:
    """Each macro-F1 bar's value (and interval) written just past its end (or its error bar's)."""
    texts = [
        f"{v:.3f}" + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if errors is not None and ci else "")
        for v, ci in zip(values, intervals)
    ]
    ends = values if errors is None else values + errors[1]
    for bar, x, text in zip(bars, ends, texts):
        axes.text(x + 0.01, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8)


def plot_model_comparison(rows: Sequence[dict[str, Any]], majority: dict[str, float] | None, path: Path) -> Path:
    """Accuracy, macro-F1 and weighted-F1 of every model, best first, against the majority reference.

    The dashed line is what predicting the most frequent class scores: a model near it has
    learned nothing, whatever its accuracy looks like on imbalanced data. Error bars are the
    rows' bootstrap intervals (``macro_f1_ci``, ``accuracy_ci``) where they have them; the
    macro-F1 label then quotes the interval too.
    """
    if not rows:
        raise ValueError("no models to compare")
    metrics = [
        ("macro_f1", "macro-F1", "#2f6fb3"),
        ("accuracy", "accuracy", "#9aa5b1"),
        ("weighted_f1", "weighted-F1", "#e0a458"),
    ]
    models = [r["model"] for r in rows]
    figure = Figure(figsize=(10, max(3.5, 0.75 * len(models) + 1.8)), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(models))
    height = 0.26
    levels: set[float] = set()
    for i, (key, label, colour) in enumerate(metrics):
        values = np.array([float(r[key]) for r in rows])
        intervals: list[dict[str, Any]] = [r.get(f"{key}_ci") or {} for r in rows]
        errors = error_bars(values, intervals)
        if errors is not None:
            levels |= {float(ci["level"]) for ci in intervals}
        bars = axes.barh(
            positions - height + i * height,
            values,
            height,
            label=label,
            color=colour,
            xerr=errors,
            error_kw={"ecolor": "#333333", "elinewidth": 0.8, "capsize": 2},
        )
        if key == "macro_f1":
            label_bars(axes, bars, values, intervals, errors)
    if majority is not None and "macro_f1" in majority:
        axes.axvline(
            majority["macro_f1"],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"majority-class macro-F1 ({majority['macro_f1']:.3f})",
        )
    axes.set_yticks(positions, labels=models)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.25 if levels else 1.1)
    shown = ", ".join(f"{level:.0%}" for level in sorted(levels))
    axes.set_xlabel(
        "score on the hold-out (0 to 1)"
        + (f"; error bars: {shown} bootstrap interval over its images" if levels else "")
    )
    axes.set_title("Model comparison on the same hold-out (best macro-F1 first)", fontsize=11)
    axes.grid(axis="x", alpha=0.3)
    figure.legend(fontsize=8, loc="outside lower center", ncol=4, frameon=False)
    return save_figure(figure, path)


def read_json(path: Path) -> Any:
    """Parse a JSON file of the run folder."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


#: A plot to draw into the path it is given, or why it is skipped.
PlotJob = Callable[[Path], Path] | str


def make_run_plots(run_dir: Path) -> dict[str, Path]:
    """Draw every plot the run folder has inputs for into ``<run>/plots/``; return name -> path.

    A plot whose inputs are absent (no ``training_history.json`` when the transfer model was not
    trained, no ``resampling.json``) is skipped with a log line and no file; a plot that fails
    to draw is logged and skipped, so one bad input never costs the run its other plots.
    """
    run = RunFolder(Path(run_dir))
    if not run.metrics.is_file():
        raise FileNotFoundError(f"{run.metrics} not found: plots need a finished evaluation")
    metrics = read_json(run.metrics)
    jobs = {**training_plot_jobs(run, metrics["class_names"]), **score_plot_jobs(run, metrics)}
    logger = get_logger()
    plots: dict[str, Path] = {}
    for name, job in jobs.items():
        if isinstance(job, str):
            logger.info("Plot %s skipped: %s", name, job)
            continue
        try:
            plots[name] = job(run.plots / f"{name}.png")
        except Exception as exc:  # one bad plot must not cost the run its other plots
            logger.warning("Plot %s failed: %s: %s", name, type(exc).__name__, exc)
    logger.info("Wrote %d plot(s) to %s", len(plots), run.plots)
    return plots


def training_plot_jobs(run: RunFolder, names: Sequence[str]) -> dict[str, PlotJob]:
    """The class distribution before/after resampling and the training curves (transfer model only)."""
    jobs: dict[str, PlotJob] = {}
    if run.resampling.is_file():
        counts = read_json(run.resampling)
        jobs["class_distribution"] = lambda p: plot_class_distribution(
            names, counts["before"], counts["after"], counts.get("strategy", "none"), p
        )
    else:
        jobs["class_distribution"] = f"no {run.resampling.name} (the transfer model was not trained)"
    if run.training_history.is_file():
        jobs["training_curves"] = lambda p: plot_training_curves(read_json(run.training_history), p)
    else:
        jobs["training_curves"] = f"no {run.training_history.name} (the transfer model was not trained)"
    return jobs


def score_plot_jobs(run: RunFolder, metrics: dict[str, Any]) -> dict[str, PlotJob]:
    """The best model's confusion matrix, every model's per-class F1 and scores, and the best
    model's misclassified hold-out images."""
    names, best = metrics["class_names"], metrics["best_model"]
    best_metrics = metrics["models"][best]
    per_class: dict[str, Sequence[float]] = {
        r["model"]: [c["f1"] for c in metrics["models"][r["model"]]["per_class"]] for r in metrics["comparison"]
    }
    jobs: dict[str, PlotJob] = {
        "confusion_matrix": lambda p: plot_confusion_matrix(
            best_metrics["confusion_matrix_normalised"], names, best, p, counts=best_metrics.get("confusion_matrix")
        ),
        "per_class_f1": lambda p: plot_per_class_f1(per_class, names, p),
        "model_comparison": lambda p: plot_model_comparison(
            metrics["comparison"], metrics.get("majority_reference"), p
        ),
    }
    if run.table.is_file() and run.predictions_of(best).is_file():

        def gallery(p: Path) -> Path:
            items, total = misclassified_items(run.root, metrics)
            return plot_misclassified_gallery(items, p, model=best, total_wrong=total)

        jobs["misclassified"] = gallery
    else:
        jobs["misclassified"] = f"no {run.table.name} or {run.predictions_of(best).relative_to(run.root)}"
    return jobs
