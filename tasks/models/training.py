"""Keras training pieces both stages share: optimizers and schedules, the loss, macro-F1 early
stopping, progress reporting, and the stage-1 head trained by Adam (``--transfer.stage1 train``;
the default stage 1 is the folded probe of `tasks.models.probe`).

The model itself is plain Keras 3 (no ``tf.*``), so it also runs on the JAX backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from sklearn.metrics import f1_score

from tasks.models.settings import HeadKind, TransferSettings
from tasks.progress import ProgressReporter

#: Share of stage 2's steps spent warming the learning rate up (then cosine decay to zero).
WARMUP_SHARE = 0.1


def make_optimizer(
    name: str, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule
) -> keras.optimizers.Optimizer:
    """Adam, RMSprop or SGD (momentum 0.9) by name, at a fixed rate or on a schedule."""
    options: dict[str, Callable[[], keras.optimizers.Optimizer]] = {
        "adam": lambda: keras.optimizers.Adam(learning_rate),
        "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate),
        "sgd": lambda: keras.optimizers.SGD(learning_rate, momentum=0.9),
    }
    if name not in options:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(options)}")
    return options[name]()


def warmup_cosine(learning_rate: float, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from a tenth of ``learning_rate`` over `WARMUP_SHARE` of the steps, then cosine
    decay to zero: the first steps after unfreezing do not wreck the probe-initialised head."""
    warmup = max(int(total_steps * WARMUP_SHARE), 1)
    return keras.optimizers.schedules.CosineDecay(
        learning_rate / 10, decay_steps=max(total_steps - warmup, 1), warmup_target=learning_rate, warmup_steps=warmup
    )


@keras.saving.register_keras_serializable(package="living_things")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on softmax probabilities against integer labels smoothed towards uniform
    (Keras' sparse loss has no ``label_smoothing``): (1 - s) * CE(y) + s * mean over classes of -log p.

    A registered `keras.losses.Loss` (not a closure), so a model compiled with it saves its
    compile config and loads back in safe mode (`tasks.models.persistence` imports this module)."""

    def __init__(self, smoothing: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.smoothing = float(smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        log_p = keras.ops.log(keras.ops.clip(y_pred, 1e-7, 1.0))
        n_classes = keras.ops.shape(y_pred)[-1]
        onehot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32"), n_classes)
        target = onehot * (1 - self.smoothing) + self.smoothing / keras.ops.cast(n_classes, y_pred.dtype)
        return -keras.ops.sum(target * log_p, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smoothing": self.smoothing}


def build_head(
    feature_shape: tuple[int, ...], n_classes: int, kind: HeadKind, dropout: float, dense_units: int, seed: int
) -> keras.Model:
    """The new classifier: softmax probabilities (so losses use from_logits=False: the original
    project paired a softmax output with from_logits=True). The last layer computes in float32
    so mixed precision cannot overflow the softmax.

    Every random layer is seeded from ``seed``: unseeded, Keras draws a layer's seed from Python's
    global ``random`` when the layer is built, which Prefect's threads and any model built earlier
    (a weights conversion a cache miss triggers) also consume, so the same run trained differently
    depending on what happened to run before it."""
    inputs = keras.Input(shape=feature_shape, name="features")
    x = inputs
    if kind == "flatten-dense":
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(
            dense_units, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed), name="head_dense"
        )(x)
    elif len(feature_shape) == 3:
        x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout, seed=seed + 1, name="head_dropout")(x)
    outputs = keras.layers.Dense(
        n_classes,
        activation="softmax",
        dtype="float32",
        kernel_initializer=keras.initializers.GlorotUniform(seed + 2),
        name="head_probs",
    )(x)
    return keras.Model(inputs, outputs, name="head")


def compile_for_training(
    model: keras.Model,
    optimizer: str,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    jit_compile: bool = False,
    label_smoothing: float = 0.0,
) -> None:
    """Cross-entropy on softmax probabilities (optionally label-smoothed), accuracy as a cheap metric."""
    loss: Any = (
        SmoothedSparseCrossentropy(label_smoothing)
        if label_smoothing
        else keras.losses.SparseCategoricalCrossentropy(from_logits=False)
    )
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss=loss,
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
    """The run's progress artifact of one stage, ``training-progress-stage-<n>``: one per stage, so
    stage 2's bar never leaves stage 1's behind stuck at "done" under the same key."""
    return ProgressReporter(key=f"training-progress-stage-{stage}", description=f"transfer model, stage {stage}")
