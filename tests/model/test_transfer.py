"""Transfer learning: no leakage into the hold-out, resumable fine-tuning, the right head."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.data.dataset import load_dataset
from tasks.data.settings import SplitSettings
from tasks.data.splitting import read_table, split_dataset
from tasks.layout import RunFolder
from tasks.models.embeddings import EmbeddingSpec, compute_embeddings, load_embeddings
from tasks.models.settings import TransferSettings
from tests.helpers import REPO as ROOT  # noqa: E402

SMALL = dict(backbone="efficientnet_lite0", weights="random", image_size=32, batch_size=16)
SPLIT = SplitSettings(target="coarse", seed=5)


@pytest.fixture()
def run_table(tiny_sample: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return split_dataset(load_dataset(tiny_sample, run_dir), run_dir, "coarse", 0.2, 5, "stratified")


def pixel_hashes(paths: list[str]) -> dict[str, str]:
    """Hash of decoded pixels and of their mirror image: catches copies and flipped copies."""
    hashes = {}
    for path in paths:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB").resize((32, 32)))
        for variant in (array, array[:, ::-1], array[::-1]):
            hashes[hashlib.sha1(variant.tobytes()).hexdigest()] = path
    return hashes


def test_holdout_never_sees_a_training_image_or_an_augmented_copy(
    run_table: Path, tiny_sample: Path, tmp_path: Path
) -> None:
    from tasks.models.transfer.rows import plan_training_rows

    files_before = sorted(p for p in tmp_path.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    table = read_table(run_table)
    settings = TransferSettings(views=2, **SMALL)
    split = SPLIT.model_copy(update={"resampling": "oversample", "oversample_share": 1.0})
    plan = plan_training_rows(table, 8, settings, split)
    holdout_rows = set(np.flatnonzero((table["role"] == "holdout").to_numpy()))
    assert len(plan.fit) > (table["role"] == "train").sum()  # oversampling did add repeats
    assert holdout_rows.isdisjoint(plan.fit) and holdout_rows.isdisjoint(plan.val)
    assert set(table.loc[plan.fit, "role"]) == {"train"} and set(table.loc[plan.val, "role"]) == {"train"}

    spec = EmbeddingSpec.of(settings, SPLIT.seed)
    emb = load_embeddings(compute_embeddings(run_table, spec, tmp_path / "cache"))
    # Augmented views exist for training rows only.
    assert set(emb["train_rows"]) == set(np.flatnonzero((table["role"] == "train").to_numpy()))
    assert emb["views"].shape[:2] == (2, len(emb["train_rows"]))
    # No image copies were written anywhere, and no hold-out image equals a training image.
    files_after = sorted(p for p in tmp_path.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    assert files_after == files_before
    train_hashes = pixel_hashes(table.loc[table["role"] == "train", "path"].tolist())
    holdout_paths = table.loc[table["role"] == "holdout", "path"].tolist()
    clashes = [p for p in holdout_paths if set(pixel_hashes([p])) & set(train_hashes)]
    assert clashes == []


def test_head_outputs_probabilities_and_original_head_shape() -> None:
    import keras

    from tasks.models.training import build_head

    head = build_head((1280,), 8, "gap", 0.2, 512, 0)
    probs = np.asarray(head(np.random.default_rng(0).normal(size=(4, 1280)).astype("float32")))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5) and (probs >= 0).all()
    original = build_head((7, 7, 1280), 8, "flatten-dense", 0.2, 512, 0)
    kinds = [type(layer).__name__ for layer in original.layers]
    assert kinds == ["InputLayer", "Flatten", "Dense", "Dropout", "Dense"]
    assert original.get_layer("head_dense").units == 512
    assert isinstance(original.get_layer("head_dropout"), keras.layers.Dropout)


TRAIN_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.INFO)
from pathlib import Path
from tasks.models.transfer.train import train_transfer
from tasks.data.settings import SplitSettings
from tasks.models.settings import TransferSettings
args = json.loads(sys.argv[1])
out = train_transfer(Path(args["table"]), Path(args["emb"]), TransferSettings(**args["settings"]),
                     SplitSettings(target="coarse", seed=5), 8,
                     Path(args["run"]), Path(args["cache"]))
print("OUTPUTS", json.dumps(out))
"""


@pytest.mark.slow
def test_killed_fine_tuning_resumes_from_last_completed_epoch(run_table: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    settings = dict(SMALL, stage1_epochs=3, stage2_epochs=4, stage2_patience=100, unfreeze_blocks=1, image_cache=True)
    emb = compute_embeddings(run_table, EmbeddingSpec.of(TransferSettings(**settings), SPLIT.seed), cache)
    args = json.dumps(
        {
            "table": str(run_table),
            "emb": str(emb),
            "settings": settings,
            "run": str(tmp_path / "run"),
            "cache": str(cache),
        }
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-c", TRAIN_SCRIPT, args]

    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state_file = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        states = [RunFolder(folder).transfer_state for folder in (cache / "checkpoints").glob("*")]
        states = [path for path in states if path.is_file()]
        if states and json.loads(states[0].read_text())["completed_epochs"] >= 2:
            state_file = states[0]
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert state_file is not None, "stage 2 never recorded a completed epoch"
    killed_at = json.loads(state_file.read_text())["completed_epochs"]
    assert 2 <= killed_at < 4, "the first run was not interrupted during stage 2"

    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming after epoch {killed_at}" in second.stdout + second.stderr
    state = json.loads(state_file.read_text())
    epochs = [row["epoch"] for row in state["history"] if row["stage"] == 2]
    assert epochs == list(range(1, 5))  # each epoch exactly once: nothing redone, nothing skipped
    assert state["finished"] and state["completed_epochs"] == 4
    record = json.loads((tmp_path / "run" / "training_history.json").read_text())
    history = record["epochs"]
    assert [r["epoch"] for r in history if r["stage"] == 2] == list(range(1, 5))
    assert all("val_macro_f1" in r for r in history)
    assert list((cache / "images").glob("*.index"))  # the decoded-image cache was completed and used
    finetuned = tmp_path / "run" / "predictions" / "efficientnet_lite0_finetuned.csv"
    # The fine-tuned model is published only when it beat stage 1 on the validation slice.
    best_stage2 = max(r["val_macro_f1"] for r in history if r["stage"] == 2)
    stage1 = max(r["val_macro_f1"] for r in history if r["stage"] == 1)
    assert record["published"] == (
        "efficientnet_lite0_finetuned" if best_stage2 > stage1 else "efficientnet_lite0_head"
    )
    assert finetuned.is_file() == (record["published"] == "efficientnet_lite0_finetuned")
    if finetuned.is_file():
        assert pd.read_csv(finetuned)["pred"].between(0, 7).all()


def test_seed_faithful_preset_reproduces_the_original_settings() -> None:
    from tasks.models.settings import seed_faithful_preset

    original = seed_faithful_preset(TransferSettings(batch_size=8))
    assert (original.backbone, original.image_size, original.head, original.dense_units, original.dropout) == (
        "efficientnetv2s",
        224,
        "flatten-dense",
        512,
        0.2,
    )
    assert (original.stage1_optimizer, original.stage1_lr, original.stage1_epochs) == ("adam", 1e-5, 10)
    assert (original.stage2_optimizer, original.stage2_lr) == ("rmsprop", 1e-6)
    assert original.unfreeze_blocks >= 40 and original.batch_size == 8  # everything unfrozen; the rest is kept
