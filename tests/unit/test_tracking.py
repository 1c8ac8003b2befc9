"""MLflow tracking (tasks.tracking) on fake run folders, into a temporary embedded SQLite store:
what a tracked run holds, the champion and challenger aliases, reconciliation with champion/, and
that a broken store is one warning, never an error. The tracked full flow: tests/integration/test_predict.py."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flows.params import PipelineParams
from tasks.layout import OutputDir, RunFolder
from tasks.models.inference import load_published
from tasks.models.persistence import save_model
from tasks.models.recipe import PixelInputs, write_recipe
from tasks.tracking.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS, registered_name
from tasks.tracking.session import TrackingSession
from tasks.tracking.settings import TrackingSettings
from tasks.tracking.store import resolve_uri
from tests.helpers import BEST, COARSE, OTHER, write_fake_run

OFF_WARNING = "MLflow tracking is off for the rest of this run"
PARAMS = PipelineParams().model_dump(mode="json")


@pytest.fixture(autouse=True)
def no_env_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


def fake_run(output: Path, name: str, data: Path) -> Path:
    """A fake run folder whose two models are real (tiny) scikit-learn models saved with skops, with recipes."""
    from sklearn.linear_model import LogisticRegression

    run_dir = write_fake_run(output / "runs" / name, data)
    run = RunFolder(run_dir)
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 16)), np.arange(32) % len(COARSE)
    for model in (BEST, OTHER):
        path = save_model(LogisticRegression(max_iter=50).fit(x, y), run.model_file(model, ".skops"))
        write_recipe(run.root, model, path, "coarse", range(len(COARSE)), PixelInputs(size=4, grayscale=True))
    return run_dir


def crown(output: Path, run_dir: Path, model: str = BEST) -> None:
    """champion/ as a promotion leaves it (only what the reconciliation reads, plus the model files)."""
    champion = OutputDir(output).champion
    champion.models.mkdir(parents=True, exist_ok=True)
    for path in RunFolder(run_dir).models.glob(f"{model}.*"):
        (champion.models / path.name).write_bytes(path.read_bytes())
    champion.metrics.write_bytes(RunFolder(run_dir).metrics.read_bytes())
    record = {"run": run_dir.name, "model": model, "target": "coarse", "promotion_id": "abc"}
    champion.champion_record.write_text(json.dumps(record))


def client_of(output: Path) -> Any:
    from mlflow import MlflowClient

    uri = resolve_uri(TrackingSettings(), output)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_a_tracked_run_holds_the_run_folders_scores_settings_files_and_models(tmp_path: Path) -> None:
    output = (tmp_path / "out").resolve()
    run_dir = fake_run(output, "20260101-000000-aaaaaa", tmp_path / "data")
    session = TrackingSession(TrackingSettings(), output)
    assert session.start() == []
    crown(output, run_dir)  # the gate promoted it
    tracked = session.finish(run_dir, PARAMS, {"promote": True, "reason": "no champion yet"}, {"data_source": "sample"})
    assert tracked is not None and not session.failed
    assert tracked.url and tracked.url.startswith("http://127.0.0.1:5000/#/experiments/")

    client = client_of(output)
    run = client.get_run(tracked.run_id)
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    metrics = json.loads(RunFolder(run_dir).metrics.read_text())
    for model, scores in metrics["models"].items():
        for key in ("accuracy", "macro_f1", "weighted_f1"):
            assert run.data.metrics[f"holdout.{model}.{key}"] == pytest.approx(scores[key], abs=1e-12)
    for row in metrics["models"][metrics["best_model"]]["per_class"]:
        assert run.data.metrics[f"best.f1.{row['name']}"] == pytest.approx(row["f1"])
    assert [m.step for m in client.get_metric_history(tracked.run_id, "transfer.stage2.loss")] == [1, 2, 3]
    sections = {name.split(".")[0] for name in run.data.params}
    assert sections == set(PipelineParams.model_fields)
    assert run.data.params["transfer.stage2_epochs"] == str(PipelineParams().transfer.stage2_epochs)
    assert run.data.tags["data_source"] == "sample"

    artifacts = {a.path for a in client.list_artifacts(tracked.run_id)}
    assert {"metrics.json", "split.csv", "submission.csv", "training_history.json", "models"} <= artifacts
    models = {Path(a.path).name for a in client.list_artifacts(tracked.run_id, "models")}
    assert models == {f"{m}{s}" for m in (BEST, OTHER) for s in (".skops", ".inputs.json")}  # never the .joblib

    name = registered_name("coarse")
    version = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    assert version.run_id == tracked.run_id and str(version.version) == tracked.version
    assert version.tags["reason"] == "no champion yet" and version.tags["decision"] == "promoted"

    folder = Path(client.download_artifacts(tracked.run_id, "", str(tmp_path / "download")))
    for model in (BEST, OTHER):  # through the project's safe loader (skops with the reviewed types)
        published = load_published(folder, model)
        assert published.class_names == COARSE and hasattr(published.model, "predict")


def test_the_gate_moves_the_aliases_and_a_run_start_puts_champion_where_champion_folder_says(tmp_path: Path) -> None:
    output = (tmp_path / "out").resolve()
    first = fake_run(output, "20260101-000000-aaaaaa", tmp_path / "data")
    second = fake_run(output, "20260102-000000-bbbbbb", tmp_path / "data")
    crown(output, first)
    session = TrackingSession(TrackingSettings(), output)
    one = session.finish(first, PARAMS, {"promote": True, "reason": "no champion yet"}, {})
    two = session.finish(second, PARAMS, {"promote": False, "reason": "does not beat the champion"}, {})
    assert one and two and not session.failed
    client, name = client_of(output), registered_name("coarse")
    assert str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version) == one.version
    refused = client.get_model_version_by_alias(name, CHALLENGER_ALIAS)
    assert str(refused.version) == two.version and refused.tags["decision"] == "kept"

    client.set_registered_model_alias(name, CHAMPION_ALIAS, two.version)  # drifted (a hand edit, a crash)
    assert TrackingSession(TrackingSettings(), output).start()
    assert str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version) == one.version

    third = fake_run(output, "20260103-000000-cccccc", tmp_path / "data")
    crown(output, third, OTHER)  # promoted while tracking was off: registered from champion/'s files
    assert TrackingSession(TrackingSettings(), output).start()
    crowned = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    assert crowned.tags["run_folder"] == third.name and crowned.tags["model"] == OTHER
    assert {Path(a.path).name for a in client.list_artifacts(crowned.run_id, "models")} == {
        f"{OTHER}.skops",
        f"{OTHER}.inputs.json",
    }

    for path in sorted(OutputDir(output).champion.root.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    OutputDir(output).champion.root.rmdir()
    TrackingSession(TrackingSettings(), output).start()  # no champion: no alias
    assert CHAMPION_ALIAS not in client.get_registered_model(name).aliases


def broken_store_warnings(output: Path, run_dir: Path, settings: TrackingSettings, caplog: Any) -> list[str]:
    session = TrackingSession(settings, output)
    with caplog.at_level(logging.WARNING):
        session.start()
        assert session.finish(run_dir, PARAMS, {"promote": True, "reason": "x"}, {}) is None
    assert session.failed
    return [r.getMessage() for r in caplog.records if OFF_WARNING in r.getMessage()]


def test_an_unreachable_server_is_one_warning_and_costs_no_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = (tmp_path / "out").resolve()
    run_dir = write_fake_run(output / "runs" / "r1", tmp_path / "data")
    started = time.monotonic()
    warnings = broken_store_warnings(
        output, run_dir, TrackingSettings(uri="http://127.0.0.1:9", request_timeout_s=2), caplog
    )
    assert len(warnings) == 1 and "http://127.0.0.1:9" in warnings[0], warnings
    assert time.monotonic() - started < 30


def test_a_damaged_database_is_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    output = (tmp_path / "out").resolve()
    run_dir = write_fake_run(output / "runs" / "r1", tmp_path / "data")
    (output / "mlflow.db").write_bytes(b"this is not an SQLite database" * 100)
    assert len(broken_store_warnings(output, run_dir, TrackingSettings(), caplog)) == 1


def test_tracking_off_touches_nothing(tmp_path: Path) -> None:
    output = (tmp_path / "out").resolve()
    session = TrackingSession(TrackingSettings(enabled=False), output)
    assert session.start() == [] and session.finish(output, PARAMS, {}, {}) is None
    assert not output.exists()


def test_the_uri_is_the_option_then_the_environment_then_the_embedded_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_uri(TrackingSettings(), tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team:5000")
    assert resolve_uri(TrackingSettings(), tmp_path) == "http://team:5000"
    assert resolve_uri(TrackingSettings(uri="http://other:5000"), tmp_path) == "http://other:5000"


def test_the_command_line_turns_tracking_off_or_names_a_server() -> None:
    from flows.cli import parse_model

    def parse(*argv: str) -> TrackingSettings:
        return parse_model(PipelineParams, list(argv), description="", prog="flows.full").tracking

    assert parse().enabled is True and parse("--no-tracking.enabled").enabled is False
    assert parse("--tracking.enabled", "false").enabled is False
    assert parse("--tracking.uri", "http://team:5000").uri == "http://team:5000"


def record_in_child(output: str, uri: str, run_dir: str, promote: bool, ready: Any) -> None:
    """One pipeline run's tracking, in its own process, started when every process is ready."""
    import os

    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    import mlflow  # noqa: F401  imported before the barrier, so both start recording at the same moment

    session = TrackingSession(TrackingSettings(uri=uri), Path(output))
    ready.wait(120)
    session.start()
    tracked = session.finish(Path(run_dir), PARAMS, {"promote": promote, "reason": "x"}, {})
    raise SystemExit(0 if tracked is not None and not session.failed else 3)


@pytest.mark.slow
def test_two_processes_recording_into_one_store_at_once_both_land(tmp_path: Path) -> None:
    """Two output dirs whose runs share one SQLite store (``MLFLOW_TRACKING_URI`` set for a team,
    say) and record at the same moment: both runs, both versions, no failure (runs on ONE output
    dir already take turns on its lock)."""
    import multiprocessing

    uri = f"sqlite:///{tmp_path.resolve()}/shared.db"
    outputs = [(tmp_path / name).resolve() for name in ("a", "b")]
    runs = [fake_run(out, f"2026010{i + 1}-000000-aaaaaa", tmp_path / "data") for i, out in enumerate(outputs)]
    context = multiprocessing.get_context("spawn")  # never fork a process that holds SQLite handles
    ready = context.Barrier(2)
    children = [
        context.Process(target=record_in_child, args=(str(out), uri, str(run), i == 0, ready))
        for i, (out, run) in enumerate(zip(outputs, runs))
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [child.exitcode for child in children] == [0, 0]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.search_runs([client.get_experiment_by_name(TrackingSettings().experiment).experiment_id])
    assert sorted(r.info.run_name for r in found) == sorted(r.name for r in runs)
    assert all(r.info.status == "FINISHED" and r.data.metrics for r in found)
    versions = client.search_model_versions(f"name='{registered_name('coarse')}'")
    assert sorted(v.tags["run_folder"] for v in versions) == sorted(r.name for r in runs)
    assert not (Path.cwd() / "mlruns").exists()  # artifacts beside the database, never in the working directory
    assert (tmp_path / "mlartifacts").is_dir()
