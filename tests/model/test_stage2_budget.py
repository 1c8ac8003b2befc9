"""Stage 2's image budget: a CPU run fine-tunes on a stratified draw, so its cost stops growing
with the dataset, while the stage-1 probe still sees every image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.data.dataset import load_dataset
from tasks.data.settings import SplitSettings
from tasks.data.splitting import read_table, split_dataset
from tasks.layout import RunFolder
from tasks.models.settings import TransferSettings
from tasks.models.sizing import CPU_STAGE2_IMAGES, cpu_hours, stage2_budget
from tasks.models.transfer.rows import stratified_draw

SPLIT = SplitSettings(target="coarse", seed=5)


def test_default_budget_caps_cpus_and_leaves_gpus_every_image() -> None:
    assert stage2_budget(None, n_gpus=0) == CPU_STAGE2_IMAGES
    assert stage2_budget(None, n_gpus=1) == 0  # 0: every fit image
    assert stage2_budget(500, n_gpus=0) == 500
    assert stage2_budget(0, n_gpus=0) == 0


def test_stratified_draw_keeps_every_class_and_its_share() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(8, size=5_000, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.04, 0.01])
    rows = np.arange(10_000, 15_000)
    drawn = stratified_draw(rows, labels, 600, seed=3)
    assert len(drawn) == 600
    assert len(set(drawn)) == 600 and set(drawn) <= set(rows)
    drawn_labels = labels[drawn - 10_000]
    for cls in range(8):
        expected = 600 * np.mean(labels == cls)
        assert abs(np.sum(drawn_labels == cls) - expected) < 1, cls  # a plain random draw: about +-12
    assert np.array_equal(drawn, stratified_draw(rows, labels, 600, seed=3))  # the seed decides it
    assert not np.array_equal(drawn, stratified_draw(rows, labels, 600, seed=4))


def test_stratified_draw_keeps_a_rare_class_and_repeated_rows() -> None:
    labels = np.array([0] * 90 + [1] * 9 + [2])
    rows = np.concatenate([np.arange(99), [99]])
    drawn = stratified_draw(rows, labels, 10, seed=0)
    assert sorted(set(labels[drawn])) == [0, 1, 2]
    # Oversampled fit rows repeat: the draw picks positions, so repeats can be drawn as repeats.
    repeated = np.repeat(np.arange(50), 2)
    assert len(stratified_draw(repeated, np.repeat(np.arange(50) % 5, 2), 30, seed=1)) == 30


def test_no_draw_without_a_budget_or_above_the_rows() -> None:
    rows, labels = np.arange(40), np.arange(40) % 4
    assert np.array_equal(stratified_draw(rows, labels, 0, seed=0), rows)
    assert np.array_equal(stratified_draw(rows, labels, 40, seed=0), rows)


def test_cpu_estimate_counts_the_budgeted_images_only() -> None:
    capped = TransferSettings()
    every = TransferSettings(stage2_max_images=0)
    forward_only = TransferSettings(stage2_epochs=0)
    base = cpu_hours(forward_only, 200_000, 100_000)
    assert cpu_hours(every, 200_000, 100_000) - base == pytest.approx(
        (cpu_hours(capped, 200_000, 100_000) - base) * 100_000 / CPU_STAGE2_IMAGES
    )
    assert TransferSettings(preset="original").resolved().stage2_max_images == 0  # the original used them all


@pytest.mark.slow
def test_fine_tuning_trains_on_the_draw_and_records_its_budget(
    tiny_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.models.embeddings import EmbeddingSpec, compute_embeddings
    from tasks.models.transfer import rows as transfer_rows
    from tasks.models.transfer import stage2, train

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    table_path = split_dataset(load_dataset(tiny_sample, run_dir), run_dir, "coarse", 0.2, 5, "stratified")
    settings = TransferSettings(
        backbone="efficientnet_lite0",
        weights="random",
        image_size=32,
        batch_size=16,
        stage2_epochs=1,
        stage2_max_images=40,
    )
    trained: list[np.ndarray] = []
    build = stage2.image_dataset_for

    def recording(table: Any, rows: np.ndarray, target: str | None, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("shuffle"):
            trained.append(np.asarray(rows))
        return build(table, rows, target, *args, **kwargs)

    monkeypatch.setattr(stage2, "image_dataset_for", recording)
    embeddings = compute_embeddings(table_path, EmbeddingSpec.of(settings, SPLIT.seed), tmp_path / "cache")
    train.train_transfer(table_path, embeddings, settings, SPLIT, 8, tmp_path / "out", tmp_path / "cache")

    table = read_table(table_path)
    plan = transfer_rows.plan_training_rows(table, 8, settings, SPLIT)
    assert len(plan.fit) > 40  # the budget binds on this sample
    (rows,) = trained
    assert len(rows) == 40 and set(rows) <= set(plan.fit)
    assert table.loc[rows, "coarse"].nunique() == table.loc[plan.fit, "coarse"].nunique()
    history = json.loads(RunFolder(tmp_path / "out").training_history.read_text())
    assert history["stage2_max_images"] == 40
    assert [r["stage"] for r in history["epochs"]] == [1, 2]
