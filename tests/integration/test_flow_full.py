"""The end-to-end flow on a tiny generated dataset, and the command line's failure modes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from flows.full import full_pipeline
from flows.params import PipelineParams
from tasks.data.dataset import DatasetError
from tasks.data.settings import DataSettings, SplitSettings
from tasks.models.settings import BaselineSettings, TransferSettings
from tests.helpers import REPO


@pytest.mark.slow
def test_full_flow_publishes_a_valid_submission_and_beats_majority(
    prefect_server: None, tiny_sample: Path, tmp_path: Path
) -> None:
    params = PipelineParams(
        data=DataSettings(data_dir=tiny_sample, output_dir=tmp_path / "out"),
        split=SplitSettings(seed=3),
        baselines=BaselineSettings(rf_n_estimators=100, embedding_models=["logreg"]),
        transfer=TransferSettings(image_size=64, stage1_epochs=30, stage2_epochs=1),
    )
    summary = full_pipeline(params)

    run_dir = Path(summary.run_dir)
    assert run_dir.parent == (tmp_path / "out" / "runs").resolve()
    submission = pd.read_csv(run_dir / "submission.csv", dtype={"filename": str})
    test_csv = pd.read_csv(tiny_sample / "public" / "test.csv", dtype=str)
    assert list(submission.columns) == ["filename", "coarse"]
    assert submission["filename"].tolist() == test_csv["filename"].tolist()
    assert submission["coarse"].between(0, 7).all()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    published = json.loads((run_dir / "training_history.json").read_text())["published"]
    # Stage 2's model is scored (and published) only when it beat stage 1 on the validation slice.
    assert set(metrics["models"]) == {
        "pixels_random_forest",
        "pixels_svm",
        "efficientnet_lite0_logreg",
        "efficientnet_lite0_head",
        published,
    }
    print({name: round(m["macro_f1"], 3) for name, m in metrics["models"].items()})
    best = metrics["models"][metrics["best_model"]]
    assert best["macro_f1"] > metrics["majority_reference"]["macro_f1"]
    assert len(best["per_class"]) == 8 and best["n"] == metrics["holdout_size"]
    # The hold-out never overlaps the training rows.
    split = pd.read_csv(run_dir / "split.csv", dtype=str)
    assert set(split.loc[split.role == "train", "filename"]).isdisjoint(split.loc[split.role == "holdout", "filename"])
    # Published: plots, the champion (first run), a registry line.
    assert {p.name for p in (run_dir / "plots").glob("*.png")} >= {
        "class_distribution.png",
        "training_curves.png",
        "confusion_matrix.png",
        "per_class_f1.png",
        "model_comparison.png",
        "misclassified.png",
    }
    assert summary.champion_decision.promote is True
    champion = tmp_path / "out" / "champion"
    assert (champion / "submission.csv").read_bytes() == (run_dir / "submission.csv").read_bytes()

    # A deliberately worse configuration on the same hold-out does not replace the champion.
    worse = params.model_copy(
        update={
            "transfer": TransferSettings(enabled=False),
            "baselines": BaselineSettings(
                embedding_models=[], pixel_models=["random_forest"], rf_n_estimators=2, rf_max_depth=2
            ),
        }
    )
    second = full_pipeline(worse)
    assert second.champion_decision.promote is False
    assert "macro-F1" in second.champion_decision.reason
    assert (champion / "submission.csv").read_bytes() == (run_dir / "submission.csv").read_bytes()
    registry = [json.loads(line) for line in (tmp_path / "out" / "registry.jsonl").read_text().splitlines()]
    assert [r["decision"] for r in registry] == ["promoted", "kept"]
    assert registry[1]["run"] == Path(second.run_dir).name and registry[1]["reason"]


@pytest.mark.slow
def test_full_flow_fine_target(prefect_server: None, tiny_sample: Path, tmp_path: Path) -> None:
    params = PipelineParams(
        data=DataSettings(data_dir=tiny_sample, output_dir=tmp_path / "out"),
        split=SplitSettings(target="fine", holdout_fraction=0.34),
        baselines=BaselineSettings(pixel_models=["random_forest"], rf_n_estimators=50, embedding_models=[]),
        transfer=TransferSettings(enabled=False),
    )
    summary = full_pipeline(params)
    submission = pd.read_csv(Path(summary.run_dir) / "submission.csv")
    assert list(submission.columns) == ["filename", "fine"]
    assert submission["fine"].between(0, 49).all()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.full", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.mark.slow
def test_cli_missing_data_dir_fails_fast_with_one_sentence(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli("--data-dir", str(tmp_path / "nonexistent"), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "does not exist" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing was started or written


def test_ui_run_with_a_missing_data_dir_fails_with_its_reason_and_no_traceback(
    prefect_server: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a UI-triggered run does: the state message carries the reason, logged once without a traceback."""
    missing = tmp_path / "nonexistent"
    params = PipelineParams(data=DataSettings(data_dir=missing, output_dir=tmp_path / "out"))
    with caplog.at_level("INFO"):
        state = full_pipeline(params, return_state=True)
    assert state.is_failed()
    assert str(missing) in (state.message or "") and "does not exist" in (state.message or "")
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert [r for r in caplog.records if r.levelname == "ERROR" and str(missing) in r.getMessage()]
    with pytest.raises(DatasetError, match="does not exist"):  # a caller of the flow function still gets the error
        full_pipeline(params)


@pytest.mark.slow
def test_cli_rejects_bad_values_with_usage_error(tmp_path: Path) -> None:
    result = run_cli("--holdout-fraction", "1.5", "--output-dir", str(tmp_path))
    assert result.returncode == 2 and "--holdout-fraction" in result.stderr
    result = run_cli("--target", "species")
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.mark.slow
def test_cli_help_lists_every_parameter() -> None:
    from flows.cli import leaf_fields

    result = run_cli("--help")
    assert result.returncode == 0
    for dest, _ in leaf_fields(PipelineParams):
        section, name = dest.split(".")
        assert f"--{section}.{name.replace('_', '-')}" in result.stdout


def test_cli_sets_nested_validation_settings() -> None:
    from flows.cli import parse_model

    params = parse_model(PipelineParams, ["--max-bad-image-fraction", "0.2", "--seed", "3"], "d", "p")
    assert params.validation.max_bad_image_fraction == 0.2 and params.split.seed == 3
    assert params.validation.min_class_count == PipelineParams().validation.min_class_count
