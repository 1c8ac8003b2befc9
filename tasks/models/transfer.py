"""Transfer learning in two stages (Keras' fine-tuning guide, DESIGN §3).

Stage 1 trains a new head on cached backbone features (`tasks.models.embeddings`), so the frozen
backbone never runs per epoch. Stage 2 puts the backbone under the trained head, unfreezes its
top blocks (BatchNorm stays frozen and the backbone is called with ``training=False``) and
fine-tunes at a low learning rate on augmented images. Both stages stop early on the macro-F1 of
a stratified validation slice carved from the TRAIN role; the hold-out is never seen here.
Stage 2 checkpoints every epoch under a key of its inputs (`tasks.models.checkpoints`), so a rerun
after a crash continues from the last completed epoch, and a rerun after success reuses the result.

The model itself is plain Keras 3 (no ``tf.*``), so it also runs on the JAX backend.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.metrics import f1_score

from tasks.data.settings import SplitSettings
from tasks.io import atomic_write_json, fingerprint_text
from tasks.layout import RunFolder
from tasks.models.checkpoints import EpochCheckpoint, checkpoint_key, resume_state, write_state
from tasks.models.settings import HeadKind, TransferSettings


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam, RMSprop or SGD (momentum 0.9) by name."""
    options: dict[str, Callable[[], keras.optimizers.Optimizer]] = {
        "adam": lambda: keras.optimizers.Adam(learning_rate),
        "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate),
        "sgd": lambda: keras.optimizers.SGD(learning_rate, momentum=0.9),
    }
    if name not in options:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(options)}")
    return options[name]()


def build_head(
    feature_shape: tuple[int, ...], n_classes: int, kind: HeadKind, dropout: float, dense_units: int
) -> keras.Model:
    """The new classifier: softmax probabilities (so losses use from_logits=False: the original
    project paired a softmax output with from_logits=True). The last layer computes in float32
    so mixed precision cannot overflow the softmax."""
    inputs = keras.Input(shape=feature_shape, name="features")
    x = inputs
    if kind == "flatten-dense":
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    elif len(feature_shape) == 3:
        x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="head_probs")(x)
    return keras.Model(inputs, outputs, name="head")


def compile_for_training(model: keras.Model, optimizer: str, learning_rate: float, jit_compile: bool = False) -> None:
    """Sparse categorical cross-entropy on softmax probabilities, accuracy as a cheap metric."""
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def macro_f1(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro-F1 over the classes present in ``y_true``."""
    labels = np.unique(y_true)
    return float(f1_score(y_true, probs.argmax(axis=1), labels=labels, average="macro", zero_division=0))


class MacroF1EarlyStopping(keras.callbacks.Callback):
    """Early stopping on the validation slice's macro-F1 (accuracy would favour big classes).

    Adds ``val_macro_f1`` to the epoch logs, keeps the best weights in memory and restores them
    when training ends. ``best``/``best_epoch``/``wait`` can be preset to resume a run.
    """

    def __init__(self, predict: Callable[[], np.ndarray], y_val: np.ndarray, patience: int) -> None:
        super().__init__()
        self.predict, self.y_val, self.patience = predict, np.asarray(y_val, int), patience
        self.best, self.best_epoch, self.wait = -1.0, -1, 0
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        score = macro_f1(self.y_val, self.predict())
        if logs is not None:
            logs["val_macro_f1"] = score
        if score > self.best:
            self.best, self.best_epoch, self.wait = score, epoch, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def history_rows(history: keras.callbacks.History, stage: int, offset: int = 0) -> list[dict[str, float]]:
    """Per-epoch loss/accuracy/macro-F1 as JSON rows (for the training-curve plots)."""
    keys = list(history.history)
    n = len(history.history[keys[0]]) if keys else 0
    return [
        {"stage": stage, "epoch": offset + i + 1, **{k: float(history.history[k][i]) for k in keys}} for i in range(n)
    ]


def fit_head(
    head: keras.Model,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    settings: TransferSettings,
    class_weight: dict[int, float] | None,
    jit_compile: bool = False,
) -> list[dict[str, float]]:
    """Stage 1: train the head on cached features; returns per-epoch history rows."""
    compile_for_training(head, settings.stage1_optimizer, settings.stage1_lr, jit_compile)
    stopper = MacroF1EarlyStopping(
        lambda: head.predict(x_val, verbose=0, batch_size=256), y_val, settings.stage1_patience
    )
    progress = ProgressCallback(progress_reporter(1), 1, settings.stage1_epochs)
    history = head.fit(
        x_fit,
        y_fit,
        batch_size=settings.batch_size,
        epochs=settings.stage1_epochs,
        shuffle=True,
        class_weight=class_weight,
        callbacks=[stopper, progress],
        verbose=0,
    )
    progress.reporter.finish(f"stage 1 done after {len(history.epoch)} epochs")
    return history_rows(history, stage=1)


def build_finetune_model(backbone: keras.Model, head: keras.Model, image_size: int) -> keras.Model:
    """Images in [0, 255] -> backbone (BatchNorm in inference mode) -> the stage-1 head."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    features = backbone(inputs, training=False)  # keeps BN statistics frozen while fine-tuning
    return keras.Model(inputs, head(features), name="classifier")


class ProgressCallback(keras.callbacks.Callback):
    """Feeds a Prefect progress artifact (a no-op outside a run) once per epoch."""

    def __init__(self, reporter: Any, stage: int, total_epochs: int) -> None:
        super().__init__()
        self.reporter, self.stage, self.total = reporter, stage, total_epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        score = (logs or {}).get("val_macro_f1")
        note = f"stage {self.stage}: epoch {epoch + 1}/{self.total}" + (
            f", val macro-F1 {score:.3f}" if score is not None else ""
        )
        self.reporter.update(epoch + 1, self.total, description=note)


def progress_reporter(stage: int) -> Any:
    """The run's `training-progress` artifact for one stage."""
    from tasks.results.report import ProgressReporter

    return ProgressReporter(key="training-progress", description=f"transfer model, stage {stage}")


# --- the two stages, end to end -------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRows:
    """Row numbers (into the run's table) of the fit set (after resampling) and the validation slice."""

    fit: np.ndarray
    val: np.ndarray
    class_weight: dict[int, float] | None
    counts: dict[str, list[int]]


def plan_training_rows(table: Any, n_classes: int, settings: TransferSettings, split: SplitSettings) -> TrainingRows:
    """Carve the validation slice from the TRAIN role, then resample what is left (train only)."""
    from tasks.data.splitting import ROLE_TRAIN, carve_validation_slice
    from tasks.models.resampling import resample

    target = split.target
    train = table[table["role"] == ROLE_TRAIN]
    fit, val = carve_validation_slice(train, target, settings.val_fraction, split.seed)  # type: ignore[arg-type]
    fit_rows = fit.index.to_numpy()
    indices, class_weight, counts = resample(
        fit[target].astype(int).to_numpy(),
        n_classes,
        split.resampling,
        split.seed,
        target_share=split.oversample_share,
        max_ratio=split.undersample_ratio,
    )
    return TrainingRows(fit=fit_rows[indices], val=val.index.to_numpy(), class_weight=class_weight, counts=counts)


def stage1_inputs(emb: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clean features of ``rows`` plus each augmented view of them; returns (x, repeat count)."""
    parts = [emb["clean"][rows]]
    if len(emb["views"]):
        position = {int(r): i for i, r in enumerate(emb["train_rows"])}
        view_index = np.array([position[int(r)] for r in rows])
        parts += [view[view_index] for view in emb["views"]]
    return np.concatenate(parts), np.asarray(len(parts))


def image_dataset_for(
    table: Any,
    rows: np.ndarray,
    target: str | None,
    size: int,
    settings: TransferSettings,
    augment: bool,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Any:
    """Image batches for some table rows (labels when ``target`` is given), from the input path
    of the active backend (`tasks.models.images`).

    With ``settings.image_cache`` and a ``cache_dir``, decoded images are kept on disk under a
    name derived from the rows and size, so later epochs skip JPEG decoding (tf.data only).
    """
    from tasks.data.dataset import image_ok_flags
    from tasks.models.images import make_image_dataset

    subset = table.loc[rows]
    labels = subset[target].astype(int).to_numpy() if target else None
    cache_file = None
    if settings.image_cache and cache_dir is not None:
        key = fingerprint_text(str(size), *subset["path"].tolist())
        cache_file = Path(cache_dir) / "images" / f"{size}-{key}"
    return make_image_dataset(
        subset["path"].tolist(),
        labels,
        size,
        settings.batch_size,
        ok=image_ok_flags(subset),
        augment=augment,
        shuffle=augment,
        seed=seed,
        cache_file=cache_file,
    )


def fine_tune(
    model: keras.Model,
    backbone: keras.Model,
    table: Any,
    plan_rows: TrainingRows,
    target: str,
    size: int,
    settings: TransferSettings,
    seed: int,
    folder: Path,
    jit_compile: bool,
) -> list[dict[str, float]]:
    """Stage 2, resumable: continues after the last completed epoch recorded in ``folder``
    (``<cache>/checkpoints/<key>``, named like a run folder: `RunFolder.transfer_state`, ``.best_weights``, ``.last_weights``)."""
    from tasks.logs import get_logger
    from tasks.models.backbones import unfreeze_top_blocks

    logger = get_logger()
    folder.mkdir(parents=True, exist_ok=True)
    unfreeze_top_blocks(backbone, settings.unfreeze_blocks)
    compile_for_training(model, settings.stage2_optimizer, settings.stage2_lr, jit_compile)
    image_cache = folder.parent.parent  # <cache>/checkpoints/<key> -> <cache>
    val_ds = image_dataset_for(table, plan_rows.val, None, size, settings, augment=False, cache_dir=image_cache)
    y_val = table.loc[plan_rows.val, target].astype(int).to_numpy()
    stopper = MacroF1EarlyStopping(lambda: model.predict(val_ds, verbose=0), y_val, settings.stage2_patience)
    state = resume_state(model, stopper, folder)
    rows: list[dict[str, float]] = list(state["history"]) if state else []
    initial_epoch = 0
    if state:
        if state["finished"]:
            logger.info("Stage 2: reusing the finished fine-tuning checkpoint in %s", folder)
            return rows
        initial_epoch = int(state["completed_epochs"])
        stopper.best, stopper.best_epoch, stopper.wait = state["best"], state["best_epoch"], state["wait"]
        logger.info("Stage 2: resuming after epoch %d from %s", initial_epoch, folder)
    if stopper.wait < settings.stage2_patience and initial_epoch < settings.stage2_epochs:
        train_ds = image_dataset_for(
            table, plan_rows.fit, target, size, settings, augment=True, seed=seed + initial_epoch, cache_dir=image_cache
        )
        model.fit(
            train_ds,
            shuffle=False,
            epochs=settings.stage2_epochs,
            initial_epoch=initial_epoch,
            class_weight=plan_rows.class_weight,
            verbose=0,
            callbacks=[
                stopper,
                EpochCheckpoint(folder, stopper, rows),
                ProgressCallback(progress_reporter(2), 2, settings.stage2_epochs),
            ],
        )
    elif stopper.best_weights is not None:
        model.set_weights(stopper.best_weights)
    write_state(folder, max(initial_epoch, len([r for r in rows if r["stage"] == 2])), stopper, rows, finished=True)
    return rows


def train_transfer(
    table_path: Path,
    embeddings_path: Path,
    settings: TransferSettings,
    split: SplitSettings,
    n_classes: int,
    out_dir: Path,
    cache_dir: Path,
    refresh: bool = False,
) -> dict[str, str]:
    """Both stages; writes predictions for the head-only and the fine-tuned model, the training
    history and the class counts before/after resampling. Returns model name -> predictions CSV."""
    from tasks.data.splitting import read_table
    from tasks.logs import get_logger
    from tasks.models.backbones import build_backbone
    from tasks.models.devices import distribution_scope, plan_devices
    from tasks.models.embeddings import EmbeddingSpec, load_embeddings
    from tasks.results.predictions import scored_rows, write_predictions

    logger = get_logger()
    target = split.target
    # First, as its own step would: a damaged features file is rebuilt (seeding Keras itself)
    # before this step seeds, so that training then runs exactly as after a cold features step.
    emb = load_embeddings(embeddings_path, table_path, EmbeddingSpec.of(settings, split.seed))
    keras.utils.set_random_seed(split.seed)
    devices = plan_devices(settings.precision)
    logger.info("Training on %s", devices.description)
    table = read_table(table_path)
    size = settings.input_size()
    plan_rows = plan_training_rows(table, n_classes, settings, split)
    x_fit, repeats = stage1_inputs(emb, plan_rows.fit)
    y_fit = np.tile(table.loc[plan_rows.fit, target].astype(int).to_numpy(), int(repeats))
    x_val, y_val = emb["clean"][plan_rows.val], table.loc[plan_rows.val, target].astype(int).to_numpy()
    out = RunFolder(out_dir)
    scored = scored_rows(table)
    outputs: dict[str, str] = {}
    with distribution_scope(devices):
        head = build_head(x_fit.shape[1:], n_classes, settings.head, settings.dropout, settings.dense_units)
        history = fit_head(head, x_fit, y_fit, x_val, y_val, settings, plan_rows.class_weight, devices.jit_compile)
        logger.info(
            "Stage 1: %d epochs, best validation-slice macro-F1 %.3f",
            len(history),
            max(r["val_macro_f1"] for r in history),
        )
        head_probs = head.predict(emb["clean"][scored.index.to_numpy()], verbose=0, batch_size=256)
        name = settings.backbone
        outputs[f"{name}_head"] = str(
            write_predictions(scored, head_probs.argmax(1), out.predictions_of(f"{name}_head"))
        )
        if settings.stage2_epochs > 0:
            backbone = build_backbone(
                settings.backbone,
                input_size=size,
                weights=settings.weights,
                pooling="avg" if settings.head == "gap" else None,
            )
            model = build_finetune_model(backbone, head, size)
            key = checkpoint_key(settings, split, embeddings_path, table["role"].tolist())
            checkpoints = Path(cache_dir) / "checkpoints" / key
            if refresh:
                shutil.rmtree(checkpoints, ignore_errors=True)
            history += fine_tune(
                model, backbone, table, plan_rows, target, size, settings, split.seed, checkpoints, devices.jit_compile
            )
            probs = model.predict(
                image_dataset_for(table, scored.index.to_numpy(), None, size, settings, augment=False), verbose=0
            )
            outputs[f"{name}_finetuned"] = str(
                write_predictions(scored, probs.argmax(1), out.predictions_of(f"{name}_finetuned"))
            )
            out.models.mkdir(parents=True, exist_ok=True)
            model.save(out.model_file(f"{name}_finetuned", ".keras"))
    atomic_write_json(out.training_history, {"model": settings.backbone, "epochs": history})
    atomic_write_json(out.resampling, {"strategy": split.resampling, **plan_rows.counts})
    return outputs
