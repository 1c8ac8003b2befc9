"""Batch prediction with the champion and the exported-model check before promotion, on one tiny
champion trained once for the module."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.data.dataset import image_ok_flags
from tasks.data.settings import DataSettings
from tasks.data.splitting import read_table
from tasks.layout import OutputDir, RunFolder
from tasks.models.predictions import read_predictions
from tasks.models.transfer.stage2 import Publication


def publish_fine_tuned(name: str, stage1_score: float, stage2_rows: list[dict[str, float]]) -> Publication:
    """Stand-in for `tasks.models.transfer.stage2.stage2_decision`: the fine-tuned model is always published,
    so the module's run has a model of every input kind (one epoch at 32 px rarely beats stage 1)."""
    return Publication(f"{name}_finetuned", "published for the test")


@pytest.fixture(scope="module")
def trained(prefect_server: None, tiny_sample_master: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One full run on a private copy of the tiny sample: its champion, run folder and summary."""
    from flows.full import full_pipeline
    from flows.params import PipelineParams
    from tasks.data.settings import SplitSettings
    from tasks.models.settings import BaselineSettings, TransferSettings
    from tasks.models.transfer import train as transfer_train

    root = tmp_path_factory.mktemp("predict")
    data = Path(shutil.copytree(tiny_sample_master, root / "data"))
    params = PipelineParams(
        data=DataSettings(data_dir=data, output_dir=root / "out"),
        split=SplitSettings(seed=3),
        baselines=BaselineSettings(rf_n_estimators=20, embedding_models=["logreg"]),
        transfer=TransferSettings(image_size=32, stage2_epochs=1),
    )
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer_train, "stage2_decision", publish_fine_tuned)
        summary = full_pipeline(params)
    print(f"training the module's champion took {time.monotonic() - started:.1f} s")
    assert summary.champion_decision.promote is True
    return {"data": data, "output": (root / "out").resolve(), "run": Path(summary.run_dir), "summary": summary}


def recorded(run_dir: Path, model: str) -> pd.DataFrame:
    """A model's recorded hold-out and test predictions with each image's path and ok flag."""
    table = read_table(RunFolder(run_dir).table)
    table = table.assign(ok=image_ok_flags(table)).loc[:, ["split", "filename", "path", "ok"]]
    return read_predictions(RunFolder(run_dir).predictions_of(model)).merge(table, on=["split", "filename"])


@pytest.mark.slow
def test_predict_flow_reproduces_the_champion_runs_test_predictions(trained: dict[str, Any]) -> None:
    from flows.predict import PredictParams, predict
    from tasks.predict.output import read_prediction_csv

    champion = json.loads(OutputDir(trained["output"]).champion.champion_record.read_text())
    assert champion["export_check"]["status"] == "passed"  # the gate reloaded it before promoting it
    output = DataSettings(output_dir=trained["output"])
    summary = predict(PredictParams(images=trained["data"] / "public" / "test.csv", data=output))

    frame = read_prediction_csv(Path(summary.predictions_path))
    test_csv = pd.read_csv(trained["data"] / "public" / "test.csv", dtype=str)
    assert frame["filename"].tolist() == test_csv["filename"].tolist()
    names = champion["class_names"]
    assert list(frame.columns) == [
        "filename",
        "class_index",
        "class_name",
        *[f"prob_{n}" for n in names],
        "image_ok",
        "problem",
        "path",
    ]
    expected = recorded(trained["run"], champion["model"])
    expected = expected[expected["role"] == "test"].set_index("filename")
    usable = frame[frame["image_ok"]]
    assert len(usable) == int(expected["ok"].sum()) > 0
    assert usable["class_index"].astype(int).tolist() == expected.loc[usable["filename"], "pred"].tolist()
    assert usable["class_name"].tolist() == [names[i] for i in usable["class_index"].astype(int)]
    probabilities = usable[[f"prob_{n}" for n in names]].to_numpy()
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-4
    assert summary.source == "champion" and summary.run == trained["run"].name
    folder = Path(summary.prediction_dir)
    assert folder.parent == OutputDir(trained["output"]).predictions and (folder / "gallery.png").stat().st_size > 0


@pytest.mark.slow
def test_every_saved_model_reproduces_its_recorded_predictions(trained: dict[str, Any]) -> None:
    from tasks.models.inference import load_published, model_inputs, run_model

    metrics = json.loads(RunFolder(trained["run"]).metrics.read_text())
    assert set(metrics["models"]) == {
        "pixels_random_forest",  # skops on pixels, predict_proba
        "pixels_svm",  # skops on pixels, no predict_proba: one-hot
        "efficientnet_lite0_logreg",  # skops on backbone features
        "efficientnet_lite0_head",  # Keras on backbone features
        "efficientnet_lite0_finetuned",  # Keras on images
    }
    computed: dict[str, Any] = {}  # one backbone pass for the models that share its features
    for model in metrics["models"]:
        rows = recorded(trained["run"], model)
        published = load_published(trained["run"], model)
        key = published.recipe.inputs.model_dump_json(exclude={"predict_batch_size"})
        if key not in computed:
            computed[key] = model_inputs(published.recipe, rows["path"].tolist(), rows["ok"].to_numpy())
        predicted = run_model(published, computed[key])
        wrong = int((predicted.classes != rows["pred"].to_numpy()).sum())
        assert wrong == 0, f"{model}: {wrong} of {len(rows)} predictions differ from the recorded ones"
        assert predicted.probabilities.shape == (len(rows), len(metrics["class_names"]))
    assert len(computed) == 3  # pixels, embeddings, images


@pytest.mark.slow
def test_the_run_is_in_mlflow_and_its_registered_champion_predicts(trained: dict[str, Any], tmp_path: Path) -> None:
    """Issue 30: the module's run recorded itself (tracking is on by default) in the embedded store."""
    from mlflow import MlflowClient

    from flows.params import PipelineParams
    from flows.predict import PredictParams, predict
    from tasks.models.inference import load_published
    from tasks.predict.output import read_prediction_csv

    uri = f"sqlite:///{trained['output']}/mlflow.db"
    client, run_dir = MlflowClient(tracking_uri=uri, registry_uri=uri), trained["run"]
    experiment = client.get_experiment_by_name("living-things").experiment_id
    (run,) = client.search_runs([experiment], filter_string=f"attributes.run_name = '{run_dir.name}'")
    metrics = json.loads(RunFolder(run_dir).metrics.read_text())
    for model, scores in metrics["models"].items():
        assert run.data.metrics[f"holdout.{model}.macro_f1"] == pytest.approx(scores["macro_f1"], abs=1e-12)
    assert {name.split(".")[0] for name in run.data.params} == set(PipelineParams.model_fields)
    assert {"prefect.flow_run_id", "data_fingerprint", "data_source"} <= set(run.data.tags)
    champion = client.get_model_version_by_alias("living-things-coarse", "champion")
    assert champion.run_id == run.info.run_id and champion.tags["model"] == metrics["best_model"]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as prefect:  # the flow run links to its MLflow run
        links = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["mlflow-run"])))
    assert any(run.info.run_id in str(link.data) for link in links), [link.data for link in links]

    folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "logged")))
    assert sorted(p.suffix for p in (folder / "models").iterdir() if not p.name.endswith(".inputs.json")) == sorted(
        [".keras"] * 2 + [".skops"] * 3
    )
    for model in metrics["models"]:  # every logged model, through the project's safe loaders
        assert load_published(folder, model).recipe.model == model

    output = DataSettings(output_dir=trained["output"])
    images = trained["data"] / "public" / "test.csv"
    summary = predict(PredictParams(images=images, model="models:/living-things-coarse@champion", data=output))
    frame = read_prediction_csv(Path(summary.predictions_path))
    expected = recorded(run_dir, metrics["best_model"]).set_index("filename")
    usable = frame[frame["image_ok"]]
    assert len(usable) > 0 and summary.run == run_dir.name and summary.model == metrics["best_model"]
    assert usable["class_index"].astype(int).tolist() == expected.loc[usable["filename"], "pred"].tolist()


@pytest.mark.slow
def test_an_unreadable_image_is_reported_not_fatal(trained: dict[str, Any], tmp_path: Path) -> None:
    from flows.predict import PredictParams, predict
    from tasks.predict.output import read_prediction_csv

    images = tmp_path / "new photos"
    images.mkdir()
    for source in sorted((trained["data"] / "public" / "test").iterdir())[:3]:
        shutil.copy(source, images / source.name)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (images / "notes.txt").write_text("not an image: ignored")
    summary = predict(
        PredictParams(images=images, model=trained["run"].name, data=DataSettings(output_dir=trained["output"]))
    )
    frame = read_prediction_csv(Path(summary.predictions_path))
    assert frame["filename"].tolist() == sorted(
        ["broken.jpg", *(p.name for p in images.glob("*.jpg") if p.name != "broken.jpg")]
    )
    broken = frame.set_index("filename").loc["broken.jpg"]
    assert not broken["image_ok"] and broken["problem"] and pd.isna(broken["class_index"])
    assert frame.loc[frame["filename"] != "broken.jpg", "image_ok"].all()
    assert summary.unreadable == 1 and summary.source == "run"


def test_no_champion_or_no_such_run_fails_with_one_sentence(
    tiny_sample_master: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.predict import main

    images = tiny_sample_master / "public" / "test"
    for model, expected in (("champion", "there is no champion"), ("20990101-nope", "no run '20990101-nope'")):
        with pytest.raises(SystemExit) as exit_info:
            main(["--images", str(images), "--model", model, "--output-dir", str(tmp_path / "empty")])
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert exit_info.value.code == 1 and len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "empty").exists()  # nothing was written, no server was started


def copy_run(trained: dict[str, Any], name: str) -> Path:
    """A candidate run: a copy of the trained run under another name."""
    return Path(shutil.copytree(trained["run"], trained["run"].parent / name))


@pytest.mark.slow
def test_a_damaged_model_file_is_refused_by_the_gate(trained: dict[str, Any]) -> None:
    from tasks.results.champion import promote_run
    from tasks.results.registry import read_registry
    from tasks.results.settings import GateSettings

    output = OutputDir(trained["output"])
    before = {
        p.relative_to(output.champion.root): p.read_bytes() for p in output.champion.root.rglob("*") if p.is_file()
    }
    candidate = copy_run(trained, "20990101-000000-damage")
    best = json.loads(RunFolder(candidate).metrics.read_text())["best_model"]
    [model_file] = [p for p in RunFolder(candidate).models.glob(f"{best}.*") if not p.name.endswith(".inputs.json")]
    model_file.unlink()  # a hard link to the trained run's file: write a new, truncated one
    model_file.write_bytes((trained["run"] / "models" / model_file.name).read_bytes()[:2000])

    decision = promote_run(candidate, output.root, settings=GateSettings(force_promote=True))
    assert decision.promote is False and "exported-model check failed" in decision.reason
    assert model_file.name in decision.reason  # the reason names the file that does not load
    after = {
        p.relative_to(output.champion.root): p.read_bytes() for p in output.champion.root.rglob("*") if p.is_file()
    }
    assert after == before
    last = read_registry(output.root)[-1]
    assert last["decision"] == "kept" and last["run"] == candidate.name and "exported-model check" in last["reason"]
    assert not list(output.root.glob(".champion-*"))  # the staging folder was removed


@pytest.mark.slow
def test_the_check_catches_a_model_that_does_not_load_or_predicts_differently(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    import zipfile

    from tasks.results.export_check import ExportCheckFailed, check_exported_model, check_rows, main

    candidate = copy_run(trained, "20990101-000000-tampered")
    model = "pixels_random_forest"  # no TensorFlow in the child: cheap
    original = RunFolder(candidate).model_file(model, ".skops")
    saved = original.read_bytes()
    original.unlink()
    with zipfile.ZipFile(original, "w") as archive:  # a sound zip file that is no skops model
        archive.writestr("schema.json", "{}")
    # The child's side, in this process: the load error goes back to the parent, which records it.
    check_rows(candidate, model, 4).to_csv(tmp_path / "rows.csv", index=False)
    assert main([str(candidate), model, str(tmp_path / "rows.csv"), str(tmp_path / "out.json")]) == 1
    assert "UnsafeModelFile" in json.loads((tmp_path / "out.json").read_text())["error"]

    original.write_bytes(saved)
    path = RunFolder(candidate).predictions_of(model)
    frame = pd.read_csv(path, dtype={"filename": str})
    first = frame.index[frame["role"] == "holdout"][0]
    frame.loc[first, "pred"] = (frame.loc[first, "pred"] + 1) % 8
    frame.to_csv(path, index=False)
    with pytest.raises(ExportCheckFailed, match=r"predicts 1 of \d+ hold-out images differently") as failure:
        check_exported_model(candidate, candidate, model, 256, 120)  # a fresh process, for real
    assert frame.loc[first, "filename"] in str(failure.value)


@pytest.mark.slow
def test_a_retrain_on_changed_data_is_judged_on_images_both_models_can_be_scored_on(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """New data changes the fingerprint and the hold-out, so the champion's recorded scores are not
    comparable; its saved model is scored on the new hold-out's images it never trained on, as the
    challenger is, and the gate decides on those figures (instead of refusing every such retrain)."""
    from flows.full import full_pipeline
    from flows.params import PipelineParams
    from tasks.data.settings import SplitSettings
    from tasks.models.settings import BaselineSettings, TransferSettings
    from tasks.results.champion import read_champion
    from tasks.results.evaluation import evaluate_predictions
    from tasks.results.rescore import decide_on_shared_images
    from tasks.results.settings import GateSettings

    output = Path(shutil.copytree(trained["output"], tmp_path / "out"))  # the module's champion stays as it is
    data = Path(shutil.copytree(trained["data"], tmp_path / "data"))
    train_csv = data / "public" / "train.csv"
    rows = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    rows.iloc[: int(len(rows) * 0.85)].to_csv(train_csv, index=False)  # the data changed: 15% of train dropped
    champion_before = read_champion(output)
    params = PipelineParams(
        data=DataSettings(data_dir=data, output_dir=output),
        split=SplitSettings(seed=3),
        baselines=BaselineSettings(pixel_models=["random_forest"], embedding_models=[], rf_n_estimators=20),
        transfer=TransferSettings(enabled=False),
    )
    summary = full_pipeline(params)
    reason = summary.champion_decision.reason

    run = RunFolder(Path(summary.run_dir))
    table = read_table(run.table)
    holdout = table[table["role"] == "holdout"]
    champion_split = pd.read_csv(RunFolder(trained["run"]).split, dtype=str)  # what the champion trained on
    trained_on = set(champion_split.loc[champion_split["role"] == "train", "filename"])
    unseen = holdout[~holdout["filename"].isin(trained_on)]
    assert 0 < len(unseen) < len(holdout)  # some of the new hold-out images trained the champion: left out
    assert f"scored on the {len(unseen)} hold-out images of this run that the champion never trained on" in reason
    mine = (
        read_predictions(run.predictions_of(summary.evaluation.best_model))
        .set_index("filename")
        .loc[unseen["filename"]]
    )
    expected = evaluate_predictions(unseen["coarse"].astype(int), mine["pred"], champion_before["class_names"])
    assert f"{expected['macro_f1']:.4f}" in reason

    # Without re-scoring, the gate refuses to compare, as before.
    from tasks.results.champion import describe_run

    refused = decide_on_shared_images(
        describe_run(run.root), champion_before, GateSettings(rescore_champion=False), OutputDir(output).champion.root
    )
    assert not refused.promote and "not compared" in refused.reason


@pytest.mark.parametrize("damage", ["model-deleted", "registry-garbled"])
def test_a_champion_broken_after_the_check_ends_the_flow_with_one_message(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """The check before any work passed, then the champion broke (the snapshot under the lock finds
    it): the flow ends Failed with the one sentence naming champion/ or the registry line; only the
    take-model task's own failure carries a traceback, not the flow's too (it was four, with the
    snapshot copy's path)."""
    import logging

    from flows.predict import PredictParams, predict
    from tasks.predict import source
    from tasks.predict.source import PredictionError
    from tasks.results.champion import promote_run
    from tests.helpers import BEST, write_fake_run

    output = tmp_path / "out"
    assert promote_run(write_fake_run(output / "runs" / "run-1", tmp_path / "data", images=False), output).promote
    images = tmp_path / "photos"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"\xff\xd8\xff")
    champion = OutputDir(output).champion
    monkeypatch.setattr(source, "check_champion", lambda output_dir: None)  # it broke after the check
    if damage == "model-deleted":
        (champion.models / f"{BEST}.keras").unlink()
        expected = f"the champion in {champion.root} cannot predict: models/{BEST}.keras missing"
    else:
        registry = OutputDir(output).registry
        registry.write_text("{garbled\n" + registry.read_text(), encoding="utf-8")
        expected = f"{registry} line 1 is not JSON"

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("prefect").addHandler(handler)
    try:
        state = predict(PredictParams(images=images, data=DataSettings(output_dir=output)), return_state=True)
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    assert state.is_failed() and expected in str(state.message)
    with pytest.raises(PredictionError, match="champion|registry"):
        state.result()
    tracebacks = [r for r in records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    assert tracebacks[0].name == "prefect.task_runs" and getattr(tracebacks[0], "task_run_name", "").startswith(
        "take-model"
    )
