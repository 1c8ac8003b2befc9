"""Nothing read back from the cache or a model file runs code: plain-JSON Prefect results, vetted
before Prefect decodes them (it trusts the serializer a record names), and models saved with
skops / loaded with Keras safe mode."""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prefect import Task, flow
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultRecord
from prefect.serializers import Serializer

import flows.steps as steps
from flows.caching import FingerprintPolicy, result_storage_block
from flows.result_records import (
    RESULT_SERIALIZER_TYPE,
    PlainJSONSerializer,
    heal_result_record,
    result_record_problem,
)
from flows.steps import PERSISTED, step
from flows.validation_reuse import reuse_validation
from tasks.layout import OutputDir
from tasks.models.baselines import fit_logistic_regression, fit_random_forest, fit_svm
from tasks.models.persistence import TRUSTED_SKOPS_TYPES, UnsafeModelFile, load_model, save_model
from tasks.validation.report import ValidationReport

# --- helpers -----------------------------------------------------------------------------------


class Planted:
    """Unpickling what this pickles opens (creates) ``marker``: stands for any code at all."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def pickle_record(marker: Path, picklelib: str = "pickle") -> bytes:
    """A Prefect result record whose payload creates ``marker`` when Prefect decodes it."""
    payload = base64.encodebytes(pickle.dumps(Planted(marker))).decode()
    serializer = {"type": "pickle", "picklelib": picklelib, "picklelib_version": None}
    return json.dumps({"metadata": {"serializer": serializer, "prefect_version": "3.9.1"}, "result": payload}).encode()


def our_record(value: Any) -> bytes:
    """A record as Prefect writes it for a task with our serializer."""
    serializer = PlainJSONSerializer()
    return json.dumps(
        {
            "metadata": {"storage_key": "k", "expiration": None, "serializer": {"type": serializer.type}},
            "result": serializer.dumps(value).decode(),
        }
    ).encode()


def tiny_step(x: int, out_dir: Path) -> Path:
    """Stands for a cached step: writes a file, returns its path, counts its calls."""
    calls = Path(out_dir) / "calls.txt"
    calls.write_text(calls.read_text() + "x" if calls.exists() else "x")
    target = Path(out_dir) / f"{x}.txt"
    target.write_text(str(x))
    return target


def run_tiny(out: Path) -> Path:
    """Run ``tiny_step`` wrapped like flows.steps' cached steps, in a flow; its result as a Path."""
    wrapped = step(
        tiny_step,
        name="tiny-step",
        cache_policy=FingerprintPolicy(code="tasks.io"),
        result_storage=result_storage_block(OutputDir(out).cache),
        **PERSISTED,
    )

    @flow(name="tiny-cached-flow")
    def tiny_flow() -> Path:
        return Path(wrapped(3, out))

    return tiny_flow()


def calls(out: Path) -> int:
    return len((out / "calls.txt").read_text())


@pytest.fixture()
def warnings_seen() -> Iterator[list[str]]:
    """Warnings logged by the run loggers and by tasks.logs' fallback logger."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno == logging.WARNING:
                seen.append(record.getMessage())

    handler = Keep()
    loggers = [logging.getLogger(name) for name in ("prefect.task_runs", "prefect.flow_runs", "living_things")]
    for logger in loggers:
        logger.addHandler(handler)
    yield seen
    for logger in loggers:
        logger.removeHandler(handler)


# --- the serializer ------------------------------------------------------------------------------


def test_plain_json_serializer_writes_paths_as_strings_and_never_imports_classes(tmp_path: Path) -> None:
    serializer = PlainJSONSerializer()
    assert serializer.type == RESULT_SERIALIZER_TYPE
    # Registered with Prefect under its own type, as a record's metadata names it.
    assert type(Serializer(type=RESULT_SERIALIZER_TYPE)) is PlainJSONSerializer
    blob = serializer.dumps({"model": tmp_path / "m.csv", "n": 1})
    assert json.loads(blob) == {"model": str(tmp_path / "m.csv"), "n": 1}
    assert serializer.loads(serializer.dumps(tmp_path)) == str(tmp_path)
    # What Prefect's JSONSerializer would turn back into an object stays a plain dict.
    tagged = b'{"__class__": "pathlib.PosixPath", "data": "/etc"}'
    assert serializer.loads(tagged) == {"__class__": "pathlib.PosixPath", "data": "/etc"}
    with pytest.raises(TypeError, match="must be JSON"):
        serializer.dumps(object())
    # A failed step's record (Prefect persists the exception) is its message, as text.
    assert serializer.loads(serializer.dumps(ValueError("bad row 3"))) == "ValueError: bad row 3"
    # No setting can be smuggled in through a record's metadata.
    with pytest.raises(ValueError):
        Serializer(type=RESULT_SERIALIZER_TYPE, object_decoder="os.system")


def test_every_persisted_step_writes_plain_json() -> None:
    persisted = {
        value.name: value.result_serializer
        for value in vars(steps).values()
        if isinstance(value, Task) and value.persist_result
    }
    assert {"pixel-features", "backbone-features", "train-baseline", "train-transfer"} <= set(persisted)
    assert all(isinstance(s, PlainJSONSerializer) for s in persisted.values()), persisted


# --- vetting a record --------------------------------------------------------------------------


def test_the_planted_record_would_run_code_if_prefect_decoded_it(tmp_path: Path) -> None:
    """The control for the tests below: Prefect decodes with the serializer named in the file."""
    marker = tmp_path / "marker"
    ResultRecord.deserialize(pickle_record(marker))
    assert marker.exists()


DAMAGED = {
    "pickle": lambda marker: pickle_record(marker),
    "cloudpickle": lambda marker: pickle_record(marker, "cloudpickle"),
    "prefect-json": lambda marker: json.dumps(
        {"metadata": {"serializer": {"type": "json"}}, "result": '{"__class__": "os.system", "data": "x"}'}
    ).encode(),
    "our-type-with-a-decoder": lambda marker: json.dumps(
        {
            "metadata": {"serializer": {"type": RESULT_SERIALIZER_TYPE, "object_decoder": "os.system"}},
            "result": '"x"',
        }
    ).encode(),
    "truncated": lambda marker: our_record("/some/path.csv")[:40],
    "garbage": lambda marker: os.urandom(256),
    "payload-not-json": lambda marker: json.dumps(
        {"metadata": {"serializer": {"type": RESULT_SERIALIZER_TYPE}}, "result": "gASV not json"}
    ).encode(),
    "empty": lambda marker: b"",
}


@pytest.mark.parametrize("damage", sorted(DAMAGED))
def test_a_record_that_is_not_ours_is_deleted_with_one_warning(
    damage: str, tmp_path: Path, warnings_seen: list[str]
) -> None:
    marker, record = tmp_path / "marker", tmp_path / "results" / "step-abc"
    record.parent.mkdir()
    record.write_bytes(DAMAGED[damage](marker))
    assert result_record_problem(record.read_bytes()) is not None
    assert heal_result_record(record) is True
    assert not record.exists() and not marker.exists()
    assert len(warnings_seen) == 1 and str(record) in warnings_seen[0], warnings_seen


def test_our_own_record_and_a_missing_one_are_left_alone(tmp_path: Path, warnings_seen: list[str]) -> None:
    record = tmp_path / "step-abc"
    record.write_bytes(our_record({"a": "b"}))
    assert result_record_problem(record.read_bytes()) is None
    assert heal_result_record(record) is True and record.exists()
    assert heal_result_record(tmp_path / "absent") is True
    assert warnings_seen == []


def test_a_pipe_planted_as_a_record_is_removed_without_being_opened(tmp_path: Path, warnings_seen: list[str]) -> None:
    record = tmp_path / "step-abc"
    os.mkfifo(record)  # opening it for reading would block until someone writes
    assert heal_result_record(record) is True and not record.exists()
    assert len(warnings_seen) == 1 and "not a regular file" in warnings_seen[0]


def planted_record_under_its_key(tmp_path: Path) -> tuple[FingerprintPolicy, SimpleNamespace, str, Path]:
    """A step context whose result storage holds, under the step's own cache key, a pickle that
    would create ``marker`` if it were ever unpickled: (policy, context, key, marker)."""
    policy, marker = FingerprintPolicy(code="tasks.io"), tmp_path / "marker"
    store = SimpleNamespace(metadata_storage=None, result_storage=LocalFileSystem(basepath=str(tmp_path / "res")))
    ctx = SimpleNamespace(task=SimpleNamespace(fn=tiny_step, name="tiny-step"), result_store=store)
    key = policy.compute_key(ctx, {"x": 1}, {})
    assert key is not None
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / key).write_bytes(pickle_record(marker))
    return policy, ctx, key, marker


def test_a_bad_record_that_cannot_be_deleted_makes_the_step_run_uncached(
    tmp_path: Path, warnings_seen: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy, ctx, key, marker = planted_record_under_its_key(tmp_path)

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    assert policy.compute_key(ctx, {"x": 1}, {}) is None  # Prefect then never reads the file
    assert not marker.exists()
    assert len(warnings_seen) == 1 and key in warnings_seen[0] and "could not be deleted" in warnings_seen[0]


def test_computing_the_key_vets_the_file_prefect_will_read(tmp_path: Path, warnings_seen: list[str]) -> None:
    """The key is the record's file name under the result storage: that file is checked first."""
    policy, ctx, key, marker = planted_record_under_its_key(tmp_path)
    assert policy.compute_key(ctx, {"x": 1}, {}) == key
    assert not (tmp_path / "res" / key).exists() and not marker.exists()
    assert len(warnings_seen) == 1 and key in warnings_seen[0]


def test_a_damaged_remembered_validation_is_deleted_and_validation_runs_again(
    tmp_path: Path, warnings_seen: list[str]
) -> None:
    cache, marker = tmp_path / "out" / "cache", tmp_path / "marker"
    store = cache / "steps" / "validation" / "k1"
    (store / "validation").mkdir(parents=True)
    (store / "report.model.json").write_bytes(pickle.dumps(Planted(marker)))
    assert reuse_validation(cache, "k1", tmp_path / "run", ValidationReport) is None
    assert not store.exists() and not marker.exists() and not (tmp_path / "run").exists()
    assert len(warnings_seen) == 1 and str(store) in warnings_seen[0]


# --- model files -------------------------------------------------------------------------------


def _fitted() -> tuple[dict[str, Any], np.ndarray]:
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(60, 8)), np.arange(60) % 3
    models = {
        "random_forest": fit_random_forest(features, labels, n_estimators=5, max_depth=None, seed=0, n_jobs=1),
        "svm": fit_svm(features, labels, c=10.0, gamma=0.001, max_samples=100, seed=0),
        "svm_scale": fit_svm(features, labels, c=10.0, gamma="scale", max_samples=100, seed=0),
        "logreg": fit_logistic_regression(features, labels, c=1.0, seed=0),
    }
    return models, features


def test_each_model_kind_round_trips_through_skops_with_the_reviewed_trusted_list(tmp_path: Path) -> None:
    import skops.io as sio

    models, features = _fitted()
    for name, model in models.items():
        path = save_model(model, tmp_path / "models" / f"{name}.skops")
        # The reviewed list covers exactly what our model kinds need, nothing more.
        assert set(sio.get_untrusted_types(file=path)) <= set(TRUSTED_SKOPS_TYPES), name
        loaded = load_model(path)
        assert type(loaded) is type(model)
        np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    assert set(sio.get_untrusted_types(file=tmp_path / "models" / "random_forest.skops")) == set(TRUSTED_SKOPS_TYPES)


def test_a_planted_model_file_is_refused_with_its_name(tmp_path: Path) -> None:
    import skops.io as sio

    planted = tmp_path / "pixels_svm.skops"
    sio.dump({"model": os.system}, planted)  # a function skops would call into
    with pytest.raises(UnsafeModelFile, match=r"pixels_svm\.skops.*system"):
        load_model(planted)
    planted.write_bytes(pickle.dumps(Planted(tmp_path / "marker")))
    with pytest.raises(UnsafeModelFile, match=r"pixels_svm\.skops is not a readable skops model"):
        load_model(planted)
    joblib_file = tmp_path / "pixels_svm.joblib"
    joblib_file.write_bytes(pickle.dumps(Planted(tmp_path / "marker")))
    with pytest.raises(UnsafeModelFile, match=r"pixels_svm\.joblib"):
        load_model(joblib_file)
    assert not (tmp_path / "marker").exists()


@pytest.mark.slow
def test_keras_models_load_in_safe_mode_only(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert load_model(save_model(plain, tmp_path / "plain.keras")).count_params() == plain.count_params()
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = save_model(lambda_model, tmp_path / "efficientnet_lite0_finetuned.keras")
    with pytest.raises(UnsafeModelFile, match=r"efficientnet_lite0_finetuned\.keras with Keras safe mode.*Lambda"):
        load_model(path)
    (tmp_path / "garbage.keras").write_bytes(b"not a zip")
    with pytest.raises(UnsafeModelFile, match=r"garbage\.keras"):
        load_model(tmp_path / "garbage.keras")
