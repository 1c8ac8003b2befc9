"""The champion/challenger gate (TFX's "blessing"): a new model replaces the published one only
if it is better on the same hold-out and no class gets much worse.

Layout under the output directory::

    champion/            the current champion: champion.json, metrics.json, submission.csv,
                         split.csv and the best model's file(s) under models/
    registry.jsonl       one JSON line per decision (promoted or kept, and why; `tasks.results.registry`)
    .champion.lock       serialises concurrent promotions (POSIX)

The rules are in `tasks.results.gate`.

Promotion is crash-consistent (`tasks.results.promotion`, which has the table of crash points and
recovery rules): the new champion is built in ``.champion-<id>/``, an intent record is written,
then the folders are swapped and the registry line appended; `reconcile_champion`, which every run
calls first, finishes or undoes whatever a crash interrupted.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.confine import check_confined
from tasks.io import atomic_write_json, copy_file, fingerprint_files, fingerprint_text
from tasks.layout import OutputDir, RunFolder
from tasks.logs import get_logger
from tasks.models.drift_reference import verify_drift_reference
from tasks.results.export_check import ExportCheckFailed, check_exported_model
from tasks.results.gate import Decision
from tasks.results.promotion import ChampionError, Promotion, champion_lock, read_json, recover_champion
from tasks.results.registry import append_registry, registry_entry
from tasks.results.rescore import decide_on_shared_images
from tasks.results.settings import GateSettings
from tasks.results.submission import SubmissionError, publish_submission


def fingerprint_split(run_dir: Path) -> str:
    """Hash of the run's split.csv: equal hashes mean the very same hold-out images."""
    path = RunFolder(run_dir).split
    if not path.is_file():
        raise ChampionError(f"{path} not found: the gate needs the run's hold-out assignment")
    return fingerprint_files([path])


def fingerprint_run_data(run_dir: Path) -> str:
    """A data fingerprint from the run's own files, for callers that have none from validation.

    Hashes what defines the labelled data (split, filename, labels; not the absolute paths, which
    differ between machines) plus the class names, so relabelled data changes the fingerprint.
    """
    run = RunFolder(run_dir)
    source = run.samples if run.samples.is_file() else run.table
    if not source.is_file():
        raise ChampionError(f"neither {run.samples} nor {run.table} exists: cannot fingerprint the data")
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    columns = [c for c in ("split", "filename", "coarse", "fine") if c in frame.columns]
    classes = run.classes.read_text(encoding="utf-8") if run.classes.is_file() else ""
    return fingerprint_text(frame.loc[:, columns].to_csv(index=False), classes)


def describe_run(run_dir: Path, data_fingerprint: str | None = None) -> dict[str, Any]:
    """The challenger record: the run's best model, its hold-out scores and what they were measured on."""
    run_dir = Path(run_dir).resolve()
    metrics = read_json(RunFolder(run_dir).metrics)
    best = metrics["best_model"]
    scores = metrics["models"][best]
    return {
        "run": run_dir.name,
        "run_dir": str(run_dir),
        "model": best,
        "target": metrics["target"],
        "class_names": list(metrics["class_names"]),
        "holdout_size": int(metrics["holdout_size"]),
        "metrics": {
            "macro_f1": float(scores["macro_f1"]),
            "accuracy": float(scores["accuracy"]),
            "weighted_f1": float(scores["weighted_f1"]),
            "per_class_f1": {row["name"]: float(row["f1"]) for row in scores["per_class"]},
        },
        "split_fingerprint": fingerprint_split(run_dir),
        "data_fingerprint": data_fingerprint or fingerprint_run_data(run_dir),
    }


def read_champion(output_dir: Path) -> dict[str, Any] | None:
    """The current champion's record, or None when there is none yet."""
    champion = OutputDir(output_dir).champion
    folder, record_path = champion.root, check_confined(champion.champion_record)
    if not folder.exists():
        return None
    if not record_path.is_file():
        raise ChampionError(
            f"{folder} exists but has no {record_path.name}; it was not written by this pipeline. "
            f"Move it away (or delete it) to start a new champion."
        )
    return read_json(record_path)


def model_files(run_dir: Path, model: str) -> list[Path]:
    """The saved file(s) of the named model under ``<run>/models/``, if any.

    Baselines save ``<features>_<kind>.skops``, the transfer step ``<backbone>_head.keras`` and
    ``<backbone>_finetuned.keras``; each next to its inputs recipe ``<model>.inputs.json``
    (`tasks.models.recipe`), which travels with it. A model without files (a run of an older
    version) is recorded, not an error.
    """
    folder = RunFolder(run_dir).models
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.split(".", 1)[0] == model)


def expected_test_filenames(run_dir: Path) -> list[str]:
    """The test.csv filenames in their order, from the run's table (or samples) file."""
    run = RunFolder(run_dir)
    if run.table.is_file():
        table = pd.read_csv(run.table, dtype=str, keep_default_na=False)
        return table.loc[table["role"] == "test", "filename"].tolist()
    if run.samples.is_file():
        samples = pd.read_csv(run.samples, dtype=str, keep_default_na=False)
        return samples.loc[samples["split"] == "test", "filename"].tolist()
    raise ChampionError(f"neither {run.table} nor {run.samples} exists: cannot check the submission")


def build_champion(run_dir: Path, staging: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Fill ``staging`` with the run's champion files; the submission is checked as it is published."""
    run, built = RunFolder(run_dir), RunFolder(staging)
    check_confined(staging).mkdir(parents=True, exist_ok=False)
    copy_file(run.metrics, built.metrics)
    copy_file(run.split, built.split)
    if verify_drift_reference(run.drift_reference):  # checked: a damaged one is left out, with a warning
        copy_file(run.drift_reference, built.drift_reference)
    if run.predictions_of(record["model"]).is_file():  # the gate's paired bootstrap reads them (rescore)
        copy_file(run.predictions_of(record["model"]), built.predictions_of(record["model"]))
    submission_path = run.submission
    if not submission_path.is_file():
        raise ChampionError(f"{submission_path} not found: a champion needs the run's submission")
    frame = pd.read_csv(submission_path, dtype={"filename": str})
    publish_submission(
        frame,
        built.submission,
        expected_test_filenames(run_dir),
        record["target"],
        len(record["class_names"]),
    )
    files = model_files(run_dir, record["model"])
    if files:
        built.models.mkdir()
        for path in files:
            copy_file(path, built.models / path.name)
    record = {
        **record,
        "model_files": [(built.models / p.name).relative_to(staging).as_posix() for p in files],
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(built.champion_record, record)
    return record


def build_and_check(run_dir: Path, staging: Path, record: dict[str, Any], settings: GateSettings) -> dict[str, Any]:
    """`build_champion`, then the exported-model check on the STAGED files (a fresh process must reload
    them and reproduce the run's hold-out predictions, `tasks.results.export_check`), before anything
    is swapped in; its outcome is added to the staged champion.json. Raises `ExportCheckFailed`."""
    built = build_champion(run_dir, staging, record)
    outcome = check_exported_model(
        run_dir, staging, built["model"], settings.export_check_rows, settings.export_check_timeout_s
    )
    get_logger().info("Exported-model check of %s: %s", built["model"], outcome)
    built = {**built, "export_check": outcome}
    atomic_write_json(RunFolder(staging).champion_record, built)
    return built


def record_decision(run_dir: Path, output_dir: Path, challenger: Mapping[str, Any], decision: Decision) -> Decision:
    """Write a decision not to promote into the run folder and the registry, and log it."""
    atomic_write_json(RunFolder(run_dir).champion_decision, decision.to_dict())
    append_registry(output_dir, registry_entry(challenger, decision, False))
    get_logger().warning(
        "Run %s not promoted; its files stay in %s. Reason: %s",
        challenger["run"],
        challenger["run_dir"],
        decision.reason,
    )
    return decision


def promote_run(
    run_dir: Path,
    output_dir: Path,
    data_fingerprint: str | None = None,
    settings: GateSettings = GateSettings(),
) -> Decision:
    """Gate the run's best model against the champion; promote it (crash-consistently) if it wins.

    ``data_fingerprint``: from the validation step if it ran; otherwise computed from the run's
    samples. ``settings.force_promote``: promote whatever the gate says (the reason keeps what it would have said).
    Every decision is appended to ``registry.jsonl`` and written to ``<run>/champion_decision.json``.
    A submission that fails its checks stops the promotion with `SubmissionError` (the old champion
    and its submission are untouched) and is recorded as kept. A model whose staged files do not
    reload in a fresh process and reproduce the run's hold-out predictions (`build_and_check`) is not
    promoted either (forced or not); the returned decision and the registry line say why.
    """
    run_dir = Path(run_dir).resolve()
    output = OutputDir(output_dir)
    with champion_lock(output_dir):
        for action in recover_champion(output_dir):
            get_logger().warning("Champion recovery: %s", action)
        challenger = describe_run(run_dir, data_fingerprint)
        champion = read_champion(output_dir)
        decision = gate_decision(challenger, champion, settings, output.champion.root)
        if not decision.promote:
            kept = replace(decision, champion_dir=str(output.champion.root) if champion is not None else None)
            return record_decision(run_dir, output_dir, challenger, kept)
        return carry_out_promotion(
            run_dir,
            output,
            challenger,
            replace(decision, champion_dir=str(output.champion.root)),
            settings,
            champion is not None,
        )


def gate_decision(
    challenger: Mapping[str, Any], champion: Mapping[str, Any] | None, settings: GateSettings, champion_dir: Path
) -> Decision:
    """The gate's verdict (the champion re-scored on the challenger's hold-out when the data
    differ: `tasks.results.rescore`), overruled by ``--force-promote`` with the reason kept."""
    decision = decide_on_shared_images(challenger, champion, settings, champion_dir)
    if settings.force_promote and not decision.promote:
        return Decision(
            True,
            f"forced (--force-promote); the gate said: {decision.reason}",
            run=decision.run,
            champion_before=decision.champion_before,
            forced=True,
        )
    return decision


def carry_out_promotion(
    run_dir: Path,
    output: OutputDir,
    challenger: Mapping[str, Any],
    promoted: Decision,
    settings: GateSettings,
    had_champion: bool,
) -> Decision:
    """Build, check and swap in the new champion (`tasks.results.promotion.Promotion`). A submission
    that fails its checks is recorded as kept and raised; a model that fails the exported-model
    check is recorded and returned as not promoted (the staging folder is gone, the champion untouched)."""
    promotion_id = secrets.token_hex(6)
    entry = registry_entry(challenger, promoted, True, promotion_id)
    promotion = Promotion(
        output, promotion_id, challenger["run"], run_dir, promoted.champion_before, entry, promoted.to_dict()
    )
    record = {**challenger, "forced": promoted.forced, "promotion_id": promotion_id}
    refused = Decision(False, "", run=promoted.run, champion_before=promoted.champion_before)
    try:
        promotion.build(lambda staging: build_and_check(run_dir, staging, record, settings))
    except SubmissionError as exc:
        record_decision(run_dir, output.root, challenger, replace(refused, reason=f"promotion refused: {exc}"))
        raise
    except ExportCheckFailed as exc:
        reason = f"not promoted: the exported-model check failed: {exc}."
        champion_dir = str(output.champion.root) if had_champion else None
        return record_decision(
            run_dir, output.root, challenger, replace(refused, reason=reason, champion_dir=champion_dir)
        )
    promotion.carry_out()
    get_logger().info("Run %s promoted to champion (%s): %s", challenger["run"], output.champion.root, promoted.reason)
    return promoted
