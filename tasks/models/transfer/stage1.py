"""Stage 1: a new head on the cached backbone features.

By default (``--transfer.stage1 probe`` with the pooled head) the head *is* a logistic-regression
probe fitted to convergence (`tasks.models.probe`, LP-FT); otherwise it is trained by Adam with
early stopping on the validation slice (`tasks.models.training.fit_head`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tasks.logs import get_logger
from tasks.models.probe import fit_probe, load_into_head
from tasks.models.settings import TransferSettings
from tasks.models.strength import choose_c
from tasks.models.training import build_head, fit_head, macro_f1
from tasks.models.transfer.rows import TrainingRows, stage1_inputs


@dataclass(frozen=True)
class Stage1Result:
    """The head stage 2 starts from, the head published for stage 1 (the probe refitted on the
    whole TRAIN role, or the same trained head), its history rows and its validation-slice score."""

    head: keras.Model
    published_head: keras.Model
    history: list[dict[str, float]]
    score: float


def uses_probe(settings: TransferSettings) -> bool:
    """Whether stage 1 is the folded linear probe (a flatten-dense head has a hidden layer: it trains)."""
    return settings.stage1 == "probe" and settings.head == "gap"


def fit_probe_head(
    head: keras.Model,
    fit: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    c: float,
    class_weight: dict[int, float] | None,
    seed: int,
) -> list[dict[str, float]]:
    """Stage 1 as LP: the probe fitted on the fit rows, loaded into ``head``; one history row with
    its fit-rows loss and accuracy and its validation-slice macro-F1 (what stage 2 must beat)."""
    (x_fit, y_fit), (x_val, y_val) = fit, val
    load_into_head(head, fit_probe(x_fit, y_fit, n_classes, c, class_weight, seed))
    probs = head.predict(x_fit, verbose=0, batch_size=256)
    loss = float(-np.log(np.clip(probs[np.arange(len(y_fit)), y_fit], 1e-7, 1)).mean())
    score = macro_f1(y_val, head.predict(x_val, verbose=0, batch_size=256))
    accuracy = float((probs.argmax(1) == y_fit).mean())
    return [{"stage": 1, "epoch": 1, "loss": loss, "accuracy": accuracy, "val_macro_f1": score, "c": c}]


def probe_strength(
    emb: dict[str, np.ndarray], table: Any, rows: TrainingRows, target: str, settings: TransferSettings, seed: int
) -> float:
    """``--transfer.stage1-c``, or (``cv``) the strength cross-validation chooses on the fit rows,
    each image once (an oversampled copy in two folds would favour weak regularisation), logged."""
    if settings.stage1_c != "cv":
        return float(settings.stage1_c)
    unique = np.unique(rows.fit)
    x, y = stage1_inputs(emb, table, unique, target)
    chosen = choose_c(x, y, rows.class_weight, seed)
    get_logger().info("Stage 1 probe: %s", chosen.describe())
    return chosen.c


def train_stage1(
    emb: dict[str, np.ndarray],
    table: Any,
    rows: TrainingRows,
    target: str,
    n_classes: int,
    settings: TransferSettings,
    seed: int,
    jit_compile: bool,
) -> Stage1Result:
    """Fit stage 1 on the fit rows, judge it on the validation slice; with the probe, publish a
    probe refitted on the whole TRAIN role (fit rows as resampled, plus the validation slice) once
    the slice has done its job (judging stage 2)."""
    x_fit, y_fit = stage1_inputs(emb, table, rows.fit, target)
    x_val = emb["clean"][rows.val].astype(np.float32)
    y_val = table.loc[rows.val, target].astype(int).to_numpy()
    shape = x_fit.shape[1:]
    head = build_head(shape, n_classes, settings.head, settings.dropout, settings.dense_units, seed)
    if not uses_probe(settings):
        history = fit_head(head, x_fit, y_fit, x_val, y_val, settings, rows.class_weight, jit_compile)
        return Stage1Result(head, head, history, max(r["val_macro_f1"] for r in history))
    c = probe_strength(emb, table, rows, target, settings, seed)
    history = fit_probe_head(head, (x_fit, y_fit), (x_val, y_val), n_classes, c, rows.class_weight, seed)
    published = build_head(shape, n_classes, settings.head, settings.dropout, settings.dense_units, seed)
    x_all, y_all = stage1_inputs(emb, table, np.concatenate([rows.fit, rows.val]), target)
    load_into_head(published, fit_probe(x_all, y_all, n_classes, c, rows.class_weight, seed))
    return Stage1Result(head, published, history, max(r["val_macro_f1"] for r in history))
