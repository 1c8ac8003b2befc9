"""Drift: the statistics (no false alarms on the same distribution, a shift is found), the
reference file (round trip, damage reported, never code-executing) and the check's decisions."""

from __future__ import annotations

import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.data.splitting import assign_roles
from tasks.drift import check as drift_check
from tasks.drift.rendering import drift_headline, render_drift_markdown
from tasks.drift.statistics import embedding_drift, label_drift
from tasks.io import atomic_write_json
from tasks.layout import OutputDir, RunFolder
from tasks.models.drift_reference import (
    BACKBONE_FEATURE_WIDTHS,
    REFERENCE_ROWS,
    DamagedReference,
    read_drift_reference,
    verify_drift_reference,
    write_drift_reference,
)
from tasks.models.embeddings import EmbeddingSpec
from tasks.validation.report import ValidationReport
from tasks.validation.settings import ValidationSettings
from tests.helpers import build_samples, passed_report

SPEC = EmbeddingSpec("efficientnet_lite0", "imagenet", 32, True, 0, 64, 3)
WIDTH = 64  # of the statistics tests' synthetic features
#: The width of SPEC's backbone features: a reference file must have it.
FEATURE_WIDTH = BACKBONE_FEATURE_WIDTHS[SPEC.backbone]


def relu_features(rng: np.random.Generator, basis: np.ndarray, rows: int, shift: float = 0.0) -> np.ndarray:
    """Correlated, skewed float16 "backbone features" (ReLU-like, as real ones are); ``shift``
    moves the first four latent dimensions by that many standard deviations."""
    latent = rng.normal(size=(rows, WIDTH))
    latent[:, :4] += shift
    return np.maximum(latent @ basis, 0).astype(np.float16)


# --- statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_the_same_distribution_is_not_flagged(seed: int) -> None:
    basis = np.random.default_rng(100).normal(size=(WIDTH, WIDTH)) * 0.2  # one "backbone" for both samples
    rng = np.random.default_rng(seed)
    drift = embedding_drift(relu_features(rng, basis, 1000), relu_features(rng, basis, 256), alpha=0.01)
    assert not drift.significant and drift.drifted_dimensions == 0
    assert drift.dimensions == WIDTH and drift.min_adjusted_p > 0.01


@pytest.mark.parametrize("seed", range(3))
def test_a_shift_of_a_few_latent_factors_is_flagged(seed: int) -> None:
    basis = np.random.default_rng(100).normal(size=(WIDTH, WIDTH)) * 0.2
    rng = np.random.default_rng(seed)
    reference = relu_features(rng, basis, 1000)
    drift = embedding_drift(reference, relu_features(rng, basis, 256, shift=1.0), alpha=0.01)
    assert drift.significant and drift.drifted_dimensions >= 4
    assert drift.min_adjusted_p < 1e-4 and 0 < drift.drifted_fraction < 1


def test_features_of_other_widths_are_not_compared() -> None:
    with pytest.raises(ValueError, match="cannot be compared"):
        embedding_drift(np.zeros((10, 4)), np.zeros((10, 5)), 0.01)


def test_label_distribution() -> None:
    reference = np.array([300, 200, 100, 50])
    same = label_drift("coarse", reference, np.array([150, 100, 50, 25]), 0.01)
    assert not same.significant and same.total_variation == pytest.approx(0.0)
    moved = label_drift("coarse", reference, np.array([100, 100, 100, 100]), 0.01)
    assert moved.significant and moved.total_variation > 0.2
    new_class = label_drift("coarse", reference, np.array([300, 200, 100, 50, 40]), 0.01)
    assert new_class.new_classes == [4] and new_class.significant


# --- the reference file ----------------------------------------------------------------------


def run_with_features(
    tmp_path: Path, feature_shape: tuple[int, ...] = (FEATURE_WIDTH,)
) -> tuple[Path, Path, np.ndarray]:
    """A run folder's table.csv and a cached-features file of the layout tasks.models.embeddings writes."""
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    table = assign_roles(build_samples(tmp_path / "data"), "coarse", 0.25, seed=0)
    table.to_csv(run.table, index=False)
    train_rows = np.flatnonzero((table["role"] == "train").to_numpy())
    clean = np.random.default_rng(0).random((len(table), *feature_shape)).astype(np.float16)
    embeddings = tmp_path / "features.npz"
    np.savez(
        embeddings, clean=clean, views=np.zeros((0, len(train_rows), *feature_shape), np.float16), train_rows=train_rows
    )
    return run.table, embeddings, clean[train_rows]


def test_reference_round_trip(tmp_path: Path) -> None:
    table, embeddings, train_features = run_with_features(tmp_path)
    path = write_drift_reference(table, embeddings, SPEC)
    assert path == RunFolder(table.parent).drift_reference
    reference = read_drift_reference(path)
    assert reference.spec == SPEC
    assert len(train_features) <= REFERENCE_ROWS
    np.testing.assert_array_equal(reference.features, train_features)  # every train row, in order
    assert reference.label_counts["coarse"].sum() == len(train_features)
    train = pd.read_csv(table).query("role == 'train'")
    assert reference.label_counts["coarse"].tolist() == train["coarse"].value_counts().sort_index().tolist()


def test_a_feature_map_is_averaged_over_its_spatial_axes(tmp_path: Path) -> None:
    table, embeddings, train_features = run_with_features(tmp_path, (2, 2, FEATURE_WIDTH))
    reference = read_drift_reference(write_drift_reference(table, embeddings, SPEC))
    expected = train_features.astype(np.float32).mean(axis=(1, 2)).astype(np.float16)
    np.testing.assert_array_equal(reference.features, expected)


class Planted:
    """Unpickling this would create a file: proof that reading a reference runs no code."""

    marker: Path

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def damage(path: Path, how: str, tmp_path: Path) -> Path | None:
    """Damage a good reference file one way; returns a marker file that must never appear."""
    arrays = dict(np.load(path, allow_pickle=False))
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif how == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif how == "nan":
        arrays["features"] = arrays["features"].copy()
        arrays["features"][0, 0] = np.nan
        np.savez(path, **arrays)
    elif how == "wrong-dtype":
        np.savez(path, **{**arrays, "features": arrays["features"].astype(np.float64)})
    elif how == "bad-spec":
        np.savez(path, **{**arrays, "spec": np.array(json.dumps({"backbone": 1}))})
    elif how == "pickled":
        planted = Planted()
        Planted.marker = tmp_path / "code-ran"
        spec = np.empty((), dtype=object)
        spec[()] = planted
        with open(path, "wb") as handle:
            np.savez(handle, **{**arrays, "spec": spec})
        assert pickle.dumps(planted)  # the file really holds a pickle
        return Planted.marker
    return None


@pytest.mark.parametrize("how", ["truncated", "garbage", "nan", "wrong-dtype", "bad-spec", "pickled"])
def test_a_damaged_reference_is_named_and_runs_no_code(tmp_path: Path, how: str) -> None:
    table, embeddings, _ = run_with_features(tmp_path)
    path = write_drift_reference(table, embeddings, SPEC)
    marker = damage(path, how, tmp_path)
    with pytest.raises(DamagedReference) as caught:
        read_drift_reference(path)
    assert str(path) in str(caught.value)
    if how == "pickled":  # the planted object would have left its marker had it been unpickled
        assert marker is not None and not marker.exists()
    else:
        assert marker is None


def test_the_feature_widths_are_the_backbones(tmp_path: Path) -> None:
    """The Keras-free table the reference is checked against says what the backbones build."""
    from tasks.models.backbones import BACKBONES

    assert BACKBONE_FEATURE_WIDTHS == {name: spec.feature_dim for name, spec in BACKBONES.items()}


@pytest.mark.parametrize(
    ("backbone", "width", "fault"),
    [
        ("efficientnet_lite0", 64, "features are 64 wide, but efficientnet_lite0 features are 1280 wide"),
        ("resnet_9000", 1280, "backbone 'resnet_9000', which is not known here"),
    ],
    ids=["wrong-width", "unknown-backbone"],
)
def test_a_reference_of_the_wrong_width_or_an_unknown_backbone_is_damaged(
    tmp_path: Path, backbone: str, width: int, fault: str
) -> None:
    table, embeddings, _ = run_with_features(tmp_path)
    path = write_drift_reference(table, embeddings, SPEC)
    arrays = dict(np.load(path, allow_pickle=False))
    spec = {**json.loads(str(arrays["spec"])), "backbone": backbone}
    features = np.random.default_rng(0).random((len(arrays["features"]), width)).astype(np.float16)
    np.savez(path, **{**arrays, "features": features, "spec": np.array(json.dumps(spec))})
    with pytest.raises(DamagedReference) as caught:
        read_drift_reference(path)
    assert str(path) in str(caught.value) and fault in str(caught.value)


def test_verify_says_whether_a_reference_may_be_copied(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table, embeddings, _ = run_with_features(tmp_path)
    path = write_drift_reference(table, embeddings, SPEC)
    with caplog.at_level(logging.WARNING):
        assert verify_drift_reference(path) is True
        assert verify_drift_reference(tmp_path / "none.npz") is False  # no features, no reference: silent
        assert caplog.records == []
        path.write_bytes(path.read_bytes()[:300])  # truncated
        assert verify_drift_reference(path) is False
    (warning,) = caplog.records
    assert str(path) in warning.getMessage() and "no drift reference" in warning.getMessage()


@pytest.mark.parametrize("damaged", [False, True])
def test_a_truncated_reference_is_not_promoted_with_the_champion(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damaged: bool
) -> None:
    """The promotion goes on (the drift check is advisory, the model is sound) without the bad file,
    which would otherwise only be found by the next validate run; a sound one travels with it."""
    from tasks.results.champion import promote_run
    from tests.helpers import write_fake_run

    table, embeddings, _ = run_with_features(tmp_path)
    good = write_drift_reference(table, embeddings, SPEC)
    output = tmp_path / "out"
    run = RunFolder(write_fake_run(output / "runs" / "run-1", tmp_path / "data", images=False))
    run.drift_reference.write_bytes(good.read_bytes()[: 300 if damaged else None])
    with caplog.at_level(logging.WARNING):
        decision = promote_run(run.root, output, data_fingerprint="data-v1")
    assert decision.promote
    copied = OutputDir(output).champion.drift_reference
    assert copied.is_file() is not damaged
    warned = [r.getMessage() for r in caplog.records if str(run.drift_reference) in r.getMessage()]
    assert len(warned) == int(damaged)


# --- the check -------------------------------------------------------------------------------


def validated(tmp_path: Path, run_name: str = "validation-run") -> ValidationReport:
    """A passed validation of a small data dir (public files and samples.csv, no images needed)."""
    data = tmp_path / "data"
    (data / "public").mkdir(parents=True, exist_ok=True)
    for name in ("info.json", "train.csv", "val.csv", "test.csv"):
        (data / "public" / name).write_text(name, encoding="utf-8")
    run = RunFolder(tmp_path / "out" / "runs" / run_name)
    run.validation.mkdir(parents=True)
    samples = build_samples(data).drop(columns="role").assign(image_ok=True)
    samples.to_csv(run.samples, index=False)
    return passed_report(data, run.root)


def give_champion(tmp_path: Path, fingerprint: str) -> Path:
    """A champion folder with a drift reference written by the training code path."""
    table, embeddings, _ = run_with_features(tmp_path)
    champion = OutputDir(tmp_path / "out").champion
    champion.root.mkdir(parents=True)
    champion.drift_reference.write_bytes(write_drift_reference(table, embeddings, SPEC).read_bytes())
    atomic_write_json(
        champion.champion_record, {"run": "r1", "model": "m", "target": "coarse", "data_fingerprint": fingerprint}
    )
    return champion.drift_reference


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The events the check emits, captured instead of sent."""
    events: list[dict[str, Any]] = []

    def emit(output_dir: Path, data_dir: Path, payload: dict[str, Any]) -> bool:
        events.append(payload)
        return True

    monkeypatch.setattr(drift_check, "emit_data_changed", emit)
    return events


def test_no_champion_no_comparison_no_event(tmp_path: Path, sent: list[dict[str, Any]]) -> None:
    report = validated(tmp_path)
    summary = drift_check.check_drift(report, tmp_path / "out", ValidationSettings())
    assert summary["champion"] is None and not summary["data_changed"] and sent == []
    assert "No champion" in summary["notes"][0]
    assert json.loads(RunFolder(Path(report.run_dir)).drift_report.read_text())["champion"] is None


def test_a_changed_fingerprint_emits_the_event(tmp_path: Path, sent: list[dict[str, Any]]) -> None:
    report = validated(tmp_path)
    give_champion(tmp_path, fingerprint="0123456789abcdef")
    summary = drift_check.check_drift(report, tmp_path / "out", ValidationSettings(drift_images=0))
    assert summary["fingerprint_changed"] and summary["event"]["emitted"]
    (payload,) = sent
    assert payload["champion_data_fingerprint"] == "0123456789abcdef"
    assert payload["data_fingerprint"] == summary["data_fingerprint"] != "0123456789abcdef"
    assert payload["data_dir"] == report.data_dir and payload["labels"]["target"] == "coarse"


def test_data_a_retrain_was_already_gated_on_trigger_no_second_retrain(
    tmp_path: Path, sent: list[dict[str, Any]]
) -> None:
    """After a data change, the retrain it triggered is judged once; the next daily validation of the
    same data must not start another retrain (the champion stayed better, or could not be compared)."""
    from tasks.results.registry import append_registry

    report = validated(tmp_path)
    give_champion(tmp_path, fingerprint="0123456789abcdef")
    settings = ValidationSettings(drift_images=0)
    first = drift_check.check_drift(report, tmp_path / "out", settings)
    assert first["event"]["emitted"] and len(sent) == 1
    append_registry(
        tmp_path / "out",
        {
            "run": "r2",
            "decision": "kept",
            "reason": "does not beat the champion",
            "data_fingerprint": first["data_fingerprint"],
        },
    )
    again = drift_check.check_drift(validated(tmp_path, run_name="next-day"), tmp_path / "out", settings)
    assert again["data_changed"] and not again["event"]["emitted"] and len(sent) == 1
    assert "run r2 already trained on this data and was kept" in again["event"]["skipped"]
    assert "No retrain triggered: run r2" in render_drift_markdown(again) and "no event: run r2" in drift_headline(
        again
    )


def test_drifted_features_emit_the_event_and_unchanged_data_do_not(
    tmp_path: Path, sent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.data.dataset import data_fingerprint

    report = validated(tmp_path)
    reference_path = give_champion(tmp_path, fingerprint=data_fingerprint(Path(report.data_dir)))
    reference = read_drift_reference(reference_path).features
    rows: list[int] = []

    def same(spec: EmbeddingSpec, paths: list[str], ok: np.ndarray) -> np.ndarray:
        rows.append(len(paths))
        return reference[: len(paths)]

    monkeypatch.setattr(drift_check, "backbone_features", same)
    settings = ValidationSettings(drift_images=20)
    unchanged = drift_check.check_drift(report, tmp_path / "out", settings)
    assert rows == [20]  # the subsample, not every image
    assert not unchanged["data_changed"] and sent == [] and not unchanged["embeddings"]["significant"]

    monkeypatch.setattr(drift_check, "backbone_features", lambda spec, paths, ok: reference[: len(paths)] + 5)
    drifted = drift_check.check_drift(validated(tmp_path, "second-run"), tmp_path / "out", settings)
    assert drifted["embeddings"]["significant"] and drifted["event"]["emitted"]
    assert not drifted["fingerprint_changed"] and len(sent) == 1
    assert "backbone features drifted" in sent[0]["reasons"][0]
    markdown = render_drift_markdown(drifted)  # the data-drift artifact
    assert "| backbone features | drift |" in markdown and "Event `living-things.data.changed` emitted" in markdown
    assert not re.search(r"\d\.\d{5,}", markdown), markdown  # rounded figures


def test_a_damaged_champion_reference_skips_the_check_with_a_warning(
    tmp_path: Path, sent: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    from tasks.data.dataset import data_fingerprint

    report = validated(tmp_path)
    reference = give_champion(tmp_path, fingerprint=data_fingerprint(Path(report.data_dir)))
    reference.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        summary = drift_check.check_drift(report, tmp_path / "out", ValidationSettings())
    assert summary["labels"] is None and summary["embeddings"] is None and not summary["data_changed"]
    assert any(str(reference) in record.getMessage() for record in caplog.records)
    assert str(reference) in summary["notes"][0]


def test_a_champion_model_file_that_is_gone_is_a_warning(
    tmp_path: Path, sent: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    report = validated(tmp_path)
    give_champion(tmp_path, fingerprint="0123456789abcdef")
    champion = OutputDir(tmp_path / "out").champion
    record = json.loads(champion.champion_record.read_text())
    files = ["models/m.inputs.json", "models/m.skops"]
    atomic_write_json(champion.champion_record, {**record, "model_files": files})
    champion.models.mkdir()
    champion.metrics.write_text("{}")
    (champion.root / files[0]).write_text("{}")  # models/m.skops was deleted
    with caplog.at_level(logging.WARNING):
        summary = drift_check.check_drift(report, tmp_path / "out", ValidationSettings(drift_images=0))
    assert summary["champion_missing_files"] == ["models/m.skops"]
    [warning] = [r.getMessage() for r in caplog.records if "models/m.skops" in r.getMessage()]
    assert str(champion.root) in warning and "predicting with it fails" in warning
    assert warning in summary["notes"]

    (champion.root / files[1]).write_bytes(b"model")
    again = drift_check.check_drift(validated(tmp_path, "next"), tmp_path / "out", ValidationSettings(drift_images=0))
    assert again["champion_missing_files"] == [] and not any("missing" in note for note in again["notes"])
