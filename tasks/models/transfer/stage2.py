"""Stage 2: fine-tune the top of the backbone under the stage-1 head, resumable after a crash.

The augmenter sits inside the model (`build_finetune_model`), the fit rows may be a stratified
draw within the image budget (`TransferSettings.stage2_max_images`, resolved for the machine
before the step's cache key is computed), and every epoch is checkpointed
(`tasks.models.checkpoints`). Stage 2 is published only when it beats stage 1 on the validation
slice (`stage2_decision`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tasks.confine import make_dirs
from tasks.data.dataset import image_ok_flags
from tasks.io import fingerprint_text
from tasks.logs import get_logger
from tasks.models.backbones import unfreeze_top_blocks
from tasks.models.checkpoints import EpochCheckpoint, resume_state, write_state
from tasks.models.features import portable_path
from tasks.models.images import make_image_dataset
from tasks.models.settings import TransferSettings
from tasks.models.training import (
    MacroF1EarlyStopping,
    ProgressCallback,
    compile_for_training,
    progress_reporter,
    warmup_cosine,
)
from tasks.models.transfer.rows import TrainingRows, stratified_draw


def build_finetune_model(
    backbone: keras.Model, head: keras.Model, image_size: int, augmenter: keras.Layer | None = None
) -> keras.Model:
    """Images in [0, 255] -> [augmenter] -> backbone (BatchNorm in inference mode) -> the stage-1 head.

    The augmenter sits inside the model, so it runs in the compiled training step on the device
    (on JAX, eager augmentation in the input workers ran at ~10 img/s on this CPU, far below what
    a GPU trains at); Keras' preprocessing layers are the identity outside ``fit``, so the saved
    model predicts on clean images. Its random state is a model variable, so a resumed stage 2
    continues the same augmentation stream."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    images = augmenter(inputs) if augmenter is not None else inputs
    features = backbone(images, training=False)  # keeps BN statistics frozen while fine-tuning
    return keras.Model(inputs, head(features), name="classifier")


def image_dataset_for(
    table: Any,
    rows: np.ndarray,
    target: str | None,
    size: int,
    settings: TransferSettings,
    shuffle: bool,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Any:
    """Image batches for some table rows (labels when ``target`` is given), from the input path
    of the active backend (`tasks.models.images`); shuffled for training. Not augmented: stage 2
    augments inside the model (`build_finetune_model`).

    With ``settings.image_cache`` and a ``cache_dir``, decoded images are kept on disk under a
    name derived from the rows and size, so later epochs skip JPEG decoding (tf.data only).
    """
    subset = table.loc[rows]
    labels = subset[target].astype(int).to_numpy() if target else None
    cache_file = None
    if settings.image_cache and cache_dir is not None:
        key = fingerprint_text(str(size), *map(portable_path, subset["path"].tolist()))  # a moved dir keeps it
        cache_file = Path(cache_dir) / "images" / f"{size}-{key}"
    return make_image_dataset(
        subset["path"].tolist(),
        labels,
        size,
        settings.batch_size,
        ok=image_ok_flags(subset),
        shuffle=shuffle,
        seed=seed,
        cache_file=cache_file,
    )


@dataclass(frozen=True)
class Stage2Job:
    """What one fine-tuning run reads: the table and its planned rows, the input size, the
    settings (image budget resolved), the seed, the checkpoint folder (``<cache>/checkpoints/<key>``,
    laid out like a run folder: `RunFolder.transfer_state`, ``.best_weights``, ``.last_weights``)
    and whether the training step is compiled."""

    table: Any
    rows: TrainingRows
    target: str
    size: int
    settings: TransferSettings
    seed: int
    folder: Path
    jit_compile: bool

    @property
    def image_cache(self) -> Path:
        """``<cache>`` of ``<cache>/checkpoints/<key>``: decoded images are shared by every key."""
        return self.folder.parent.parent

    def images(self, rows: np.ndarray, labelled: bool, shuffle: bool = False, seed: int = 0) -> Any:
        """`image_dataset_for` these rows of the job's table."""
        target = self.target if labelled else None
        return image_dataset_for(
            self.table, rows, target, self.size, self.settings, shuffle=shuffle, seed=seed, cache_dir=self.image_cache
        )


def budgeted_fit_rows(job: Stage2Job) -> np.ndarray:
    """The fit rows stage 2 trains on: a stratified draw within the image budget (logged when it binds)."""
    budget = job.settings.stage2_max_images or 0
    fit = job.rows.fit
    rows = stratified_draw(fit, job.table.loc[fit, job.target].astype(int).to_numpy(), budget, job.seed)
    if len(rows) < len(fit):
        get_logger().info(
            "Stage 2: fine-tuning on a stratified %d of the %d fit images (--transfer.stage2-max-images %d)",
            len(rows),
            len(fit),
            budget,
        )
    return rows


def compile_stage2(model: keras.Model, job: Stage2Job, n_fit: int) -> None:
    """Compile with the stage-2 optimizer, at a fixed rate or warm-up then cosine decay over all steps."""
    settings = job.settings
    steps = -(-n_fit // settings.batch_size) * settings.stage2_epochs
    schedule = settings.stage2_schedule == "warmup-cosine"
    rate = warmup_cosine(settings.stage2_lr, steps) if schedule else settings.stage2_lr
    compile_for_training(model, settings.stage2_optimizer, rate, job.jit_compile, settings.label_smoothing)


def fine_tune(model: keras.Model, backbone: keras.Model, job: Stage2Job) -> list[dict[str, float]]:
    """Stage 2, resumable: continues after the last completed epoch recorded in ``job.folder``;
    returns the history rows of every stage-2 epoch (resumed ones included)."""
    logger = get_logger()
    make_dirs(job.folder)
    unfreeze_top_blocks(backbone, job.settings.unfreeze_blocks)
    fit_rows = budgeted_fit_rows(job)
    compile_stage2(model, job, len(fit_rows))
    val_ds = job.images(job.rows.val, labelled=False)
    y_val = job.table.loc[job.rows.val, job.target].astype(int).to_numpy()
    stopper = MacroF1EarlyStopping(lambda: model.predict(val_ds, verbose=0), y_val, job.settings.stage2_patience)
    state = resume_state(model, stopper, job.folder)
    rows: list[dict[str, float]] = list(state["history"]) if state else []
    initial_epoch = 0
    if state:
        if state["finished"]:
            logger.info("Stage 2: reusing the finished fine-tuning checkpoint in %s", job.folder)
            return rows
        initial_epoch = int(state["completed_epochs"])
        stopper.best, stopper.best_epoch, stopper.wait = state["best"], state["best_epoch"], state["wait"]
        logger.info("Stage 2: resuming after epoch %d from %s", initial_epoch, job.folder)
    if stopper.wait < job.settings.stage2_patience and initial_epoch < job.settings.stage2_epochs:
        run_epochs(model, job, fit_rows, stopper, rows, initial_epoch)
    elif stopper.best_weights is not None:
        model.set_weights(stopper.best_weights)
    completed = max(initial_epoch, len([r for r in rows if r["stage"] == 2]))
    write_state(job.folder, completed, stopper, rows, finished=True)
    return rows


def run_epochs(
    model: keras.Model,
    job: Stage2Job,
    fit_rows: np.ndarray,
    stopper: MacroF1EarlyStopping,
    rows: list[dict[str, float]],
    initial_epoch: int,
) -> None:
    """``model.fit`` from ``initial_epoch``, checkpointing every epoch into ``job.folder`` (history
    rows appended to ``rows``); the shuffle seed moves with the epoch, so a resume continues it."""
    train_ds = job.images(fit_rows, labelled=True, shuffle=True, seed=job.seed + initial_epoch)
    model.fit(
        train_ds,
        shuffle=False,
        epochs=job.settings.stage2_epochs,
        initial_epoch=initial_epoch,
        class_weight=job.rows.class_weight,
        verbose=0,
        callbacks=[
            stopper,
            EpochCheckpoint(job.folder, stopper, rows),
            ProgressCallback(progress_reporter(2), 2, job.settings.stage2_epochs),
        ],
    )


@dataclass(frozen=True)
class Publication:
    """Which stage's model the transfer step publishes (``<backbone>_head`` or ``_finetuned``), and why."""

    published: str
    reason: str


def stage2_decision(name: str, stage1_score: float, stage2_rows: list[dict[str, float]]) -> Publication:
    """Keep the fine-tuned model only when its best validation-slice macro-F1 beats stage 1's."""
    scores = [float(r["val_macro_f1"]) for r in stage2_rows if r.get("stage") == 2 and "val_macro_f1" in r]
    best = max(scores, default=float("nan"))
    figures = f"validation-slice macro-F1 {best:.3f} after fine-tuning against {stage1_score:.3f} for stage 1"
    if scores and best > stage1_score:
        return Publication(f"{name}_finetuned", f"fine-tuning helped: {figures}")
    return Publication(f"{name}_head", f"fine-tuning did not help: {figures}; stage 1 is published")
