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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tasks.data.settings import SplitSettings
from tasks.io import atomic_write_json, fingerprint_text
from tasks.layout import RunFolder
from tasks.models.checkpoints import EpochCheckpoint, checkpoint_key, resume_state, write_state
from tasks.models.settings import TransferSettings
from tasks.models.sizing import stage2_budget
from tasks.models.training import (
    MacroF1EarlyStopping,
    ProgressCallback,
    build_head,
    compile_for_training,
    fit_head,
    macro_f1,
    progress_reporter,
    warmup_cosine,
)


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


# --- the two stages, end to end -------------------------------------------------------------

#: Batch of the stage-1 head's predictions on cached features (its inputs recipe records it).
HEAD_PREDICT_BATCH = 256


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


def stratified_draw(rows: np.ndarray, labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``rows`` (all when ``limit`` is 0 or not smaller), drawn at random
    within each class; each class gets its share of ``limit`` by largest remainders (within one
    row of it), and at least one row while ``limit`` allows (given up by the largest classes)."""
    if limit <= 0 or len(rows) <= limit:
        return rows
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = limit * counts / len(rows)
    take = np.floor(quota).astype(int)
    take[np.argsort(take - quota, kind="stable")[: limit - take.sum()]] += 1
    if limit >= len(counts):  # a rare class keeps one row, taken from the largest share
        for cls in np.flatnonzero(take == 0):
            take[np.argmax(take)] -= 1
            take[cls] = 1
    rng = np.random.default_rng(seed)
    taken = [rng.permutation(np.flatnonzero(inverse == c))[:n] for c, n in enumerate(take)]
    return rows[np.sort(np.concatenate(taken))]


def stage1_inputs(
    emb: dict[str, np.ndarray], table: Any, rows: np.ndarray, target: str
) -> tuple[np.ndarray, np.ndarray]:
    """Clean features of ``rows`` plus each augmented view of them, as float32, and their labels
    (repeated once per view): the (x, y) a stage-1 head is fitted on."""
    parts = [emb["clean"][rows]]
    if len(emb["views"]):
        position = {int(r): i for i, r in enumerate(emb["train_rows"])}
        view_index = np.array([position[int(r)] for r in rows])
        parts += [view[view_index] for view in emb["views"]]
    return np.concatenate(parts, dtype=np.float32), np.tile(table.loc[rows, target].astype(int).to_numpy(), len(parts))


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
        shuffle=shuffle,
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
    budget = settings.stage2_max_images or 0  # resolved by `train_transfer` (`stage2_budget`)
    fit_rows = stratified_draw(plan_rows.fit, table.loc[plan_rows.fit, target].astype(int).to_numpy(), budget, seed)
    if len(fit_rows) < len(plan_rows.fit):
        logger.info(
            "Stage 2: fine-tuning on a stratified %d of the %d fit images (--transfer.stage2-max-images %d)",
            len(fit_rows),
            len(plan_rows.fit),
            budget,
        )
    steps = -(-len(fit_rows) // settings.batch_size) * settings.stage2_epochs
    rate = (
        warmup_cosine(settings.stage2_lr, steps) if settings.stage2_schedule == "warmup-cosine" else settings.stage2_lr
    )
    compile_for_training(model, settings.stage2_optimizer, rate, jit_compile, settings.label_smoothing)
    image_cache = folder.parent.parent  # <cache>/checkpoints/<key> -> <cache>
    val_ds = image_dataset_for(table, plan_rows.val, None, size, settings, shuffle=False, cache_dir=image_cache)
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
            table, fit_rows, target, size, settings, shuffle=True, seed=seed + initial_epoch, cache_dir=image_cache
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


def uses_probe(settings: TransferSettings) -> bool:
    """Whether stage 1 is the folded linear probe (a flatten-dense head has a hidden layer: it trains)."""
    return settings.stage1 == "probe" and settings.head == "gap"


def fit_probe_head(
    head: keras.Model,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    settings: TransferSettings,
    plan_rows: TrainingRows,
    seed: int,
) -> list[dict[str, float]]:
    """Stage 1 as LP: the probe fitted on the fit rows, loaded into ``head``; one history row with
    its fit-rows loss and accuracy and its validation-slice macro-F1 (what stage 2 must beat)."""
    from tasks.models.probe import fit_probe, load_into_head

    load_into_head(head, fit_probe(x_fit, y_fit, n_classes, settings.stage1_c, plan_rows.class_weight, seed))
    probs = head.predict(x_fit, verbose=0, batch_size=256)
    loss = float(-np.log(np.clip(probs[np.arange(len(y_fit)), y_fit], 1e-7, 1)).mean())
    val = macro_f1(y_val, head.predict(x_val, verbose=0, batch_size=256))
    accuracy = float((probs.argmax(1) == y_fit).mean())
    return [{"stage": 1, "epoch": 1, "loss": loss, "accuracy": accuracy, "val_macro_f1": val}]


def stage2_decision(name: str, stage1_score: float, stage2_rows: list[dict[str, float]]) -> dict[str, Any]:
    """Keep the fine-tuned model only when its best validation-slice macro-F1 beats stage 1's."""
    scores = [float(r["val_macro_f1"]) for r in stage2_rows if r.get("stage") == 2 and "val_macro_f1" in r]
    best = max(scores, default=float("nan"))
    figures = f"validation-slice macro-F1 {best:.3f} after fine-tuning against {stage1_score:.3f} for stage 1"
    if scores and best > stage1_score:
        return {"published": f"{name}_finetuned", "reason": f"fine-tuning helped: {figures}"}
    return {"published": f"{name}_head", "reason": f"fine-tuning did not help: {figures}; stage 1 is published"}


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
    """Both stages; writes predictions for the head-only and the fine-tuned model, their model files
    (``models/<backbone>_head.keras``, ``<backbone>_finetuned.keras`` when published) with their inputs
    recipes (`tasks.predict.recipe`), the training history and the class counts before/after
    resampling. Returns model name -> predictions CSV."""
    from tasks.data.splitting import read_table
    from tasks.logs import get_logger
    from tasks.models.augment import build_augmenter
    from tasks.models.backbones import build_backbone
    from tasks.models.devices import distribution_scope, plan_devices
    from tasks.models.embeddings import EmbeddingSpec, load_embeddings
    from tasks.models.persistence import KERAS_SUFFIX, save_model
    from tasks.models.probe import fit_probe, load_into_head
    from tasks.predict.recipe import ImageInputs, embedding_inputs, write_recipe
    from tasks.results.predictions import scored_rows, write_predictions

    logger = get_logger()
    target = split.target
    # First, as its own step would: a damaged features file is rebuilt (seeding Keras itself)
    # before this step seeds, so that training then runs exactly as after a cold features step.
    spec = EmbeddingSpec.of(settings, split.seed)
    emb = load_embeddings(embeddings_path, table_path, spec)
    keras.utils.set_random_seed(split.seed)
    devices = plan_devices(settings.precision)
    logger.info("Training on %s", devices.description)
    # Resolved here, so that the checkpoint key and the history name the budget stage 2 used.
    settings = settings.model_copy(
        update={"stage2_max_images": stage2_budget(settings.stage2_max_images, devices.n_gpus)}
    )
    table = read_table(table_path)
    size = settings.input_size()
    plan_rows = plan_training_rows(table, n_classes, settings, split)
    x_fit, y_fit = stage1_inputs(emb, table, plan_rows.fit, target)
    x_val = emb["clean"][plan_rows.val].astype(np.float32)
    y_val = table.loc[plan_rows.val, target].astype(int).to_numpy()
    out = RunFolder(out_dir)
    scored = scored_rows(table)
    outputs: dict[str, str] = {}
    with distribution_scope(devices):
        head = build_head(x_fit.shape[1:], n_classes, settings.head, settings.dropout, settings.dense_units)
        if uses_probe(settings):
            history = fit_probe_head(head, x_fit, y_fit, x_val, y_val, n_classes, settings, plan_rows, split.seed)
            published_head = build_head(
                x_fit.shape[1:], n_classes, settings.head, settings.dropout, settings.dense_units
            )
            # Published: refitted on the whole TRAIN role (fit rows as resampled, plus the
            # validation slice) once the slice has done its job, judging stage 2.
            x_all, y_all = stage1_inputs(emb, table, np.concatenate([plan_rows.fit, plan_rows.val]), target)
            load_into_head(
                published_head,
                fit_probe(x_all, y_all, n_classes, settings.stage1_c, plan_rows.class_weight, split.seed),
            )
        else:
            history = fit_head(head, x_fit, y_fit, x_val, y_val, settings, plan_rows.class_weight, devices.jit_compile)
            published_head = head
        stage1_score = max(r["val_macro_f1"] for r in history)
        logger.info("Stage 1 (%s): validation-slice macro-F1 %.3f", settings.stage1, stage1_score)
        head_probs = published_head.predict(
            emb["clean"][scored.index.to_numpy()].astype(np.float32), verbose=0, batch_size=HEAD_PREDICT_BATCH
        )
        name = settings.backbone
        outputs[f"{name}_head"] = str(
            write_predictions(scored, head_probs.argmax(1), out.predictions_of(f"{name}_head"))
        )
        # Saved now: stage 2 fine-tunes ``head`` in place (the trained, non-probe head is the published one).
        head_file = save_model(published_head, out.model_file(f"{name}_head", KERAS_SUFFIX))
        inputs = embedding_inputs(spec, predict_batch_size=HEAD_PREDICT_BATCH)
        write_recipe(out.root, f"{name}_head", head_file, target, range(n_classes), inputs)
        decision = {"published": f"{name}_head", "reason": "stage 2 is off (--transfer.stage2-epochs 0)"}
        if settings.stage2_epochs > 0:
            backbone = build_backbone(
                settings.backbone,
                input_size=size,
                weights=settings.weights,
                pooling="avg" if settings.head == "gap" else None,
            )
            model = build_finetune_model(backbone, head, size, build_augmenter(split.seed))
            key = checkpoint_key(settings, split, embeddings_path, table["role"].tolist())
            checkpoints = Path(cache_dir) / "checkpoints" / key
            if refresh:
                shutil.rmtree(checkpoints, ignore_errors=True)
            stage2 = fine_tune(
                model, backbone, table, plan_rows, target, size, settings, split.seed, checkpoints, devices.jit_compile
            )
            history += stage2
            decision = stage2_decision(name, stage1_score, stage2)
            logger.info("Published %s: %s", decision["published"], decision["reason"])
            if decision["published"] == f"{name}_finetuned":
                probs = model.predict(
                    image_dataset_for(table, scored.index.to_numpy(), None, size, settings, shuffle=False), verbose=0
                )
                outputs[f"{name}_finetuned"] = str(
                    write_predictions(scored, probs.argmax(1), out.predictions_of(f"{name}_finetuned"))
                )
                tuned_file = save_model(model, out.model_file(f"{name}_finetuned", KERAS_SUFFIX))
                images = ImageInputs(image_size=size, batch_size=settings.batch_size)
                write_recipe(out.root, f"{name}_finetuned", tuned_file, target, range(n_classes), images)
    atomic_write_json(
        out.training_history,
        {
            "model": settings.backbone,
            "stage1": settings.stage1,
            "stage2_max_images": settings.stage2_max_images,
            **decision,
            "epochs": history,
        },
    )
    atomic_write_json(out.resampling, {"strategy": split.resampling, **plan_rows.counts})
    return outputs
