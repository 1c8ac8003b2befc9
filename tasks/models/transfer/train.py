"""`train_transfer`: both stages end to end, as the transfer step runs them."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from tasks.data.settings import SplitSettings
from tasks.data.splitting import read_table
from tasks.layout import RunFolder
from tasks.logs import get_logger
from tasks.models.augment import build_augmenter
from tasks.models.backbones import build_backbone
from tasks.models.checkpoints import checkpoint_key
from tasks.models.devices import DevicePlan, distribution_scope, for_machine, plan_devices
from tasks.models.embeddings import EmbeddingSpec, load_embeddings
from tasks.models.recipe import ImageInputs, embedding_inputs
from tasks.models.settings import TransferSettings
from tasks.models.transfer.publish import HEAD_PREDICT_BATCH, Publisher, write_history
from tasks.models.transfer.rows import plan_training_rows
from tasks.models.transfer.stage1 import Stage1Result, train_stage1
from tasks.models.transfer.stage2 import (
    Publication,
    Stage2Job,
    build_finetune_model,
    fine_tune,
    image_dataset_for,
    stage2_decision,
)


def train_transfer(
    table_path: Path,
    embeddings_path: Path,
    settings: TransferSettings,
    split: SplitSettings,
    n_classes: int,
    out_dir: Path,
    cache_dir: Path,
    refresh: bool = False,
    machine: DevicePlan | None = None,
) -> dict[str, str]:
    """Both stages; writes predictions for the head-only and the fine-tuned model, their model files
    (``models/<backbone>_head.keras``, ``<backbone>_finetuned.keras`` when published) with their inputs
    recipes, the training history and the class counts before/after resampling. Returns model
    name -> predictions CSV. ``settings`` should come resolved for the machine (`for_machine`), as
    the flow does before the step's cache key is computed; what is left unresolved is resolved here."""
    # First, as its own step would: a damaged features file is rebuilt (seeding Keras itself)
    # before this step seeds, so that training then runs exactly as after a cold features step.
    spec = EmbeddingSpec.of(settings, split.seed)
    emb = load_embeddings(embeddings_path, table_path, spec)
    keras.utils.set_random_seed(split.seed)
    devices = devices_for(settings, machine)
    settings = for_machine(settings, devices)  # the checkpoint key and the history name what stage 2 used
    table = read_table(table_path)
    rows = plan_training_rows(table, n_classes, settings, split)
    out, name = RunFolder(out_dir), settings.backbone
    publisher = Publisher.of(out, table, split.target, n_classes)
    with distribution_scope(devices):
        stage1 = train_stage1(emb, table, rows, split.target, n_classes, settings, split.seed, devices.jit_compile)
        get_logger().info("Stage 1 (%s): validation-slice macro-F1 %.3f", settings.stage1, stage1.score)
        features = emb["clean"][publisher.scored_rows].astype(np.float32)
        head_probs = stage1.published_head.predict(features, verbose=0, batch_size=HEAD_PREDICT_BATCH)
        # Published now: stage 2 fine-tunes ``stage1.head`` in place (a trained head is the published one).
        inputs = embedding_inputs(spec, predict_batch_size=HEAD_PREDICT_BATCH)
        outputs = {f"{name}_head": publisher.publish(f"{name}_head", head_probs, stage1.published_head, inputs)}
        history, decision = stage1.history, Publication(f"{name}_head", "stage 2 is off (--transfer.stage2-epochs 0)")
        if settings.stage2_epochs > 0:
            folder = checkpoint_folder(cache_dir, settings, split, embeddings_path, table["role"].tolist(), refresh)
            job = Stage2Job(
                table, rows, split.target, settings.input_size(), settings, split.seed, folder, devices.jit_compile
            )
            stage2, decision = fine_tune_and_publish(job, stage1, publisher, outputs)
            history = history + stage2
    write_history(out, settings, split, asdict(decision), history, rows.counts)
    return outputs


def devices_for(settings: TransferSettings, machine: DevicePlan | None) -> DevicePlan:
    """Plan (and apply) this machine's devices; warn when they are not those the flow keyed the step for."""
    devices = plan_devices(settings.precision)
    get_logger().info("Training on %s", devices.description)
    if machine is not None and (machine.backend, machine.n_gpus) != (devices.backend, devices.n_gpus):
        get_logger().warning(
            "This step runs on %s, but its cache key was computed for %s (the flow's machine): its cached "
            "result will be reused by runs on that machine",
            devices.description,
            machine.description,
        )
    return devices


def fine_tune_and_publish(
    job: Stage2Job, stage1: Stage1Result, publisher: Publisher, outputs: dict[str, str]
) -> tuple[list[dict[str, float]], Publication]:
    """Stage 2 from stage 1's head; the fine-tuned model is published (added to ``outputs``) only
    when it beat stage 1 on the validation slice. Returns stage 2's history rows and the decision."""
    name = job.settings.backbone
    model, rows = run_stage2(job, stage1)
    decision = stage2_decision(name, stage1.score, rows)
    get_logger().info("Published %s: %s", decision.published, decision.reason)
    if decision.published == f"{name}_finetuned":
        images = image_dataset_for(job.table, publisher.scored_rows, None, job.size, job.settings, False)
        probs = model.predict(images, verbose=0)
        recipe = ImageInputs(image_size=job.size, batch_size=job.settings.batch_size)
        outputs[decision.published] = publisher.publish(decision.published, probs, model, recipe)
    return rows, decision


def checkpoint_folder(
    cache_dir: Path, settings: TransferSettings, split: SplitSettings, embeddings: Path, roles: list[str], refresh: bool
) -> Path:
    """``<cache>/checkpoints/<key>`` of these inputs, emptied first when the user asked to refresh."""
    folder = Path(cache_dir) / "checkpoints" / checkpoint_key(settings, split, embeddings, roles)
    if refresh:
        shutil.rmtree(folder, ignore_errors=True)
    return folder


def run_stage2(job: Stage2Job, stage1: Stage1Result) -> tuple[keras.Model, list[dict[str, float]]]:
    """Build the backbone under stage 1's head and fine-tune it; returns the model and its history rows."""
    settings = job.settings
    pooling = "avg" if settings.head == "gap" else None
    backbone = build_backbone(settings.backbone, input_size=job.size, weights=settings.weights, pooling=pooling)
    model = build_finetune_model(backbone, stage1.head, job.size, build_augmenter(job.seed))
    return model, fine_tune(model, backbone, job)
