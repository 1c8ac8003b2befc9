"""Cache keys without absolute paths (a moved or copied output directory reruns warm) and cache
side files that heal (a lost recipe, step folder, remembered validation or SQLite journal next to
a good main file never fails a run). See flows/caching.py and flows/result_records.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.caching import FingerprintPolicy, fingerprint_inputs, output_cache_of, step_dir
from flows.result_records import RESULT_SERIALIZER_TYPE, rebase_result_record
from flows.validation_reuse import remember_validation, reuse_validation, validation_key
from tasks.data.dataset import load_dataset
from tasks.data.splitting import ROLE_TRAIN, read_table, split_dataset
from tasks.layout import OutputDir
from tasks.models.baselines import train_baseline
from tasks.models.embeddings import EmbeddingSpec, embedding_key, ensure_recipe, read_recipe, recipe_file, target_for
from tasks.models.feature_chunks import chunk_key
from tasks.models.features import pixel_cache_key, portable_path
from tasks.models.settings import BaselineSettings, TransferSettings
from tasks.validation.image_contents import CONTENT_KEYS
from tasks.validation.report import ValidationReport
from tasks.validation.scan_cache import cache_companions, lookup_cache, open_cache, store_cache
from tasks.validation.settings import ValidationSettings
from tests.helpers import passed_report

SPEC = EmbeddingSpec.of(TransferSettings(image_size=32), 3)


def output_with_sample(tiny_sample: Path, root: Path) -> Path:
    """An output directory holding its data as the embedded sample does (``<out>/sample``)."""
    shutil.copytree(tiny_sample, OutputDir(root).sample)  # copy2: mtimes kept, as cp -a and mv keep them
    return OutputDir(root).root


def run_table(root: Path, run: str = "r1") -> Path:
    folder = OutputDir(root).runs / run
    folder.mkdir(parents=True)
    return split_dataset(load_dataset(OutputDir(root).sample, folder), folder, "coarse", 0.2, 5, "stratified")


def keys(root: Path, table: Path) -> dict[str, str]:
    """Every kind of cache key for one output directory, folders given relative to it."""
    output, frame = OutputDir(root), read_table(table)
    paths, roles = frame["path"].tolist(), frame["role"].tolist()
    features = output.cache / "pixels-48g-0.npy"
    features.parent.mkdir(parents=True, exist_ok=True)
    features.write_bytes(b"features")
    step_inputs = {"kind": "svm", "table": table, "features": features, "settings": BaselineSettings(), "seed": 3}
    task_inputs = {**step_inputs, "cache_dir": output.cache, "out_dir": output.steps / "baseline" / "k"}
    return {
        "task": fingerprint_inputs(task_inputs, FingerprintPolicy().ignore),
        "step folder": str(
            step_dir(output.cache, "baseline", "tasks.models.baselines", **step_inputs).relative_to(root)
        ),
        "embeddings": embedding_key(SPEC, paths, roles),
        "embeddings file": str(target_for(frame, SPEC, output.cache).relative_to(root)),
        "chunk": chunk_key(SPEC, False, 3, paths[:8], np.ones(8, bool)),
        "pixels": pixel_cache_key(paths, 48, True),
        "validation": str(validation_key(output.sample, ValidationSettings())),
    }


def test_portable_path_is_relative_to_the_data_dir() -> None:
    assert portable_path("/a/public/x/out/sample/public/train/f.jpg") == "public/train/f.jpg"
    assert portable_path("/elsewhere/f.jpg") == "/elsewhere/f.jpg"
    assert portable_path("/a/b/public") == "/a/b/public"  # a file named like the folder


def test_a_copied_or_moved_output_dir_keeps_every_key(tiny_sample: Path, tmp_path: Path) -> None:
    first = output_with_sample(tiny_sample, tmp_path / "first")
    before = keys(first, run_table(first))
    copy = Path(shutil.copytree(first, tmp_path / "copy"))
    assert keys(copy, run_table(copy, "r2")) == before
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    os.rename(copy, moved)
    assert keys(moved, run_table(moved, "r3")) == before
    assert keys(moved, moved / "runs" / "r1" / "table.csv") == before  # a table naming the old place, too


def test_keys_still_follow_data_and_settings(tiny_sample: Path, tmp_path: Path) -> None:
    root = output_with_sample(tiny_sample, tmp_path / "out")
    table = run_table(root)
    before = keys(root, table)
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    frame.loc[0, "coarse"] = str((int(frame.loc[0, "coarse"] or 0) + 1) % 8)  # one label changed
    frame.to_csv(table, index=False)
    assert keys(root, table)["task"] != before["task"]
    image = Path(read_table(table)["path"][0])
    image.write_bytes(image.read_bytes() + b"\0")  # one image's content changed
    changed = keys(root, table)
    for kind in ("embeddings", "embeddings file", "chunk", "pixels", "validation"):
        assert changed[kind] != before[kind], kind
    other = EmbeddingSpec.of(TransferSettings(image_size=64), 3)
    assert embedding_key(other, [str(image)], ["train"]) != embedding_key(SPEC, [str(image)], ["train"])


# --- Prefect result records of a moved, copied or half-deleted output dir ----------------------


def write_record(output: OutputDir, key: str, result: object) -> Path:
    """A result record as Prefect writes it with `PlainJSONSerializer`."""
    path = output.prefect_results / key
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"storage_key": key, "serializer": {"type": RESULT_SERIALIZER_TYPE}}
    path.write_text(json.dumps({"metadata": metadata, "result": json.dumps(result)}))
    return path


def stored_result(record: Path) -> object:
    return json.loads(json.loads(record.read_text())["result"])


def test_records_of_a_copied_output_dir_name_the_copy(tmp_path: Path) -> None:
    first = OutputDir(tmp_path / "first")
    predictions = first.steps / "transfer" / "k" / "predictions" / "head.csv"
    predictions.parent.mkdir(parents=True)
    predictions.write_text("filename\n")
    write_record(first, "train-transfer-k", {"head": str(predictions), "note": "/not/ours"})
    copy = OutputDir(shutil.copytree(first.root, tmp_path / "copy"))
    record = copy.prefect_results / "train-transfer-k"
    assert output_cache_of(record) == copy.cache
    rebase_result_record(record, copy.cache)
    assert stored_result(record) == {
        "head": str(copy.steps / "transfer" / "k" / "predictions" / "head.csv"),
        "note": "/not/ours",
    }
    assert output_cache_of(tmp_path / "elsewhere" / "key") is None  # Prefect's own storage: left alone


@pytest.mark.parametrize("lost", ["step folder", "features file"])
def test_record_naming_a_deleted_cache_file_is_discarded(tmp_path: Path, lost: str) -> None:
    output = OutputDir(tmp_path / "out")
    target = (
        output.steps / "baseline" / "k" / "predictions" / "x.csv" if lost == "step folder" else output.cache / "p.npy"
    )
    target.parent.mkdir(parents=True)
    target.write_text("x")
    record = write_record(output, "step-k", str(target))
    rebase_result_record(record, output.cache)
    assert record.is_file()  # every file it names is there: kept as is
    shutil.rmtree(output.steps) if lost == "step folder" else target.unlink()
    rebase_result_record(record, output.cache)
    assert not record.exists()  # the step is recomputed instead of handing on a missing file


# --- side files of the caches --------------------------------------------------------------------


def features_with_recipe(table: Path, cache: Path) -> Path:
    """A good embeddings file for ``table`` under ``SPEC``'s name, with its recipe next to it."""
    frame = read_table(table)
    labels = frame["coarse"].fillna(0).astype(int).to_numpy()
    rng = np.random.default_rng(0)
    clean = (np.eye(8)[labels] * 4 + rng.normal(0, 0.5, (len(frame), 8))).astype(np.float16)
    train_rows = np.flatnonzero((frame["role"] == ROLE_TRAIN).to_numpy())
    path = target_for(frame, SPEC, cache)
    path.parent.mkdir(parents=True)
    np.savez(path, clean=clean, views=np.empty((0, len(train_rows), 8), np.float16), train_rows=train_rows)
    ensure_recipe(path, SPEC)
    return path


@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_lost_features_recipe_is_rebuilt_before_the_baselines_read_it(
    tiny_sample: Path, tmp_path: Path, damage: str
) -> None:
    root = output_with_sample(tiny_sample, tmp_path / "out")
    table = run_table(root)
    path = features_with_recipe(table, OutputDir(root).cache)
    if damage == "deleted":
        recipe_file(path).unlink()
    else:
        recipe_file(path).write_text("{not json")
    ensure_recipe(path, SPEC)  # what the flow does with the features step's result, cached or not
    assert read_recipe(path) == SPEC
    out = tmp_path / "step"
    settings = BaselineSettings(rf_n_jobs=1).on_embeddings()
    predictions = train_baseline("logreg", SPEC.backbone, table, path, out, "coarse", settings, 3)
    assert predictions.is_file() and (out / "models" / "efficientnet_lite0_logreg.inputs.json").is_file()


@pytest.mark.parametrize("lost", ["validation folder", "report"])
def test_remembered_validation_with_a_lost_part_validates_again(tmp_path: Path, lost: str) -> None:
    cache, report = tmp_path / "cache", fake_report(tmp_path / "runs" / "r1", tmp_path / "data")
    remember_validation(report, cache, "k")
    store = cache / "steps" / "validation" / "k"
    shutil.rmtree(store / "validation") if lost == "validation folder" else (store / "report.model.json").unlink()
    assert reuse_validation(cache, "k", tmp_path / "runs" / "r2", ValidationReport) is None  # not an error
    remember_validation(report, cache, "k")  # what the run that validated again does
    assert isinstance(reuse_validation(cache, "k", tmp_path / "runs" / "r3", ValidationReport), ValidationReport)


def fake_report(run: Path, data: Path) -> ValidationReport:
    """A passed validation of ``data`` in ``run``, its samples naming the images."""
    samples = run / "validation" / "samples.csv"
    samples.parent.mkdir(parents=True)
    samples.write_text(f"split,filename,path\ntrain,a.jpg,{data}/public/train/a.jpg\n")
    return passed_report(data, run)


def test_remembered_validation_follows_a_moved_data_dir(tmp_path: Path) -> None:
    first = OutputDir(tmp_path / "first")
    remember_validation(fake_report(first.runs / "r1", first.sample), first.cache, "k")
    copy = OutputDir(shutil.copytree(first.root, tmp_path / "copy"))
    report = reuse_validation(copy.cache, "k", copy.runs / "r2", ValidationReport, copy.sample)
    assert isinstance(report, ValidationReport) and report.data_dir == str(copy.sample)
    samples = Path(str(report.samples_path))
    assert samples == copy.runs / "r2" / "validation" / "samples.csv"
    assert pd.read_csv(samples)["path"].tolist() == [f"{copy.sample}/public/train/a.jpg"]


def test_scan_cache_without_its_journal_files_opens(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "image_scan" / "image-scan.sqlite"
    connection = open_cache(path)
    contents = (None,) * len(CONTENT_KEYS)  # hashes, brightness, contrast
    store_cache(connection, [("a.jpg", 3, 4, (True, 3, True, None, "JPEG", "RGB", 3, 8, 8, *contents))])
    companions = [p for p in cache_companions(path) if p.exists()]
    for companion in companions:
        companion.unlink()
    connection.close()
    again = open_cache(path)
    assert set(lookup_cache(again, [("a.jpg", 3, 4)])) <= {"a.jpg"}
    again.close()
