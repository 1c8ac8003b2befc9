"""The drift check of the standalone validate flow: today's data against the champion's.

After validation passed, and only when the output directory has a champion:

1. data fingerprint: `tasks.data.dataset.data_fingerprint` of the data dir vs the champion
   record's ``data_fingerprint`` (info.json and the three CSVs);
2. label distribution: the validated train+val rows vs the champion's training rows
   (`tasks.drift.statistics.label_drift`, for the champion's target);
3. embeddings: backbone features of a seeded subsample of at most ``drift_images`` labelled
   images, computed with the champion's recipe exactly as training computes them, vs the
   reference's (`tasks.drift.statistics.embedding_drift`).

The outcome goes to ``<run>/validation/drift.json`` and the ``data-drift`` artifact; when the
fingerprint changed or a test is significant, the `living-things.data.changed` event is emitted
(tasks.drift.events) and the retrain deployment's trigger starts a retrain. Nothing here fails a
validation that passed: a missing or damaged reference, or a backbone that cannot be built, is
reported (one warning naming the cause) and that part of the check is skipped. A reference of an
unknown backbone or of the wrong feature width counts as damaged (tasks.models.drift_reference). Model
files that champion.json lists but that are gone are one warning too (``champion_missing_files``).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.cache_files import describe
from tasks.data.columns import LABELLED_SPLITS
from tasks.data.dataset import data_fingerprint, image_ok_flags, read_samples
from tasks.drift.events import DATA_CHANGED_EVENT, data_changed_resource, emit_data_changed
from tasks.drift.rendering import drift_headline, publish_drift_artifact
from tasks.drift.statistics import embedding_drift, label_drift
from tasks.io import atomic_write_json
from tasks.layout import OutputDir, RunFolder
from tasks.logs import get_logger
from tasks.models.drift_reference import (
    DamagedReference,
    DriftReference,
    backbone_features,
    label_counts,
    read_drift_reference,
    seeded_subsample,
)
from tasks.predict.source import missing_champion_files
from tasks.results.champion import read_champion
from tasks.results.promotion import ChampionError
from tasks.results.registry import read_registry
from tasks.validation.report import ValidationReport
from tasks.validation.settings import ValidationSettings


def read_champion_record(output: OutputDir, notes: list[str]) -> dict[str, Any] | None:
    """The champion's record, or None (with a note) when there is none or it cannot be read."""
    try:
        record = read_champion(output.root)
    except ChampionError as err:
        warn(notes, f"Champion unreadable, data not compared with it: {err}")
        return None
    if record is None:
        notes.append(f"No champion under {output.root} yet: nothing to compare the data with.")
    return record


def read_reference(path: Path, notes: list[str]) -> DriftReference | None:
    """The champion's drift reference, or None (with a note) when it is missing or damaged."""
    if not path.is_file():
        notes.append(
            f"The champion has no drift reference ({path}): its run computed no backbone features or "
            "predates drift checks; labels and embeddings not compared."
        )
        return None
    try:
        return read_drift_reference(path)
    except DamagedReference as err:
        warn(notes, f"Drift check skipped for labels and embeddings: {err}")
        return None


def warn_missing_files(output: OutputDir, champion: dict[str, Any], notes: list[str]) -> list[str]:
    """The files champion.json lists that are gone (one warning naming them), else nothing: the
    data can still be compared, but a prediction with that champion would fail, and the validate
    run is where a scheduled check would notice first."""
    missing = missing_champion_files(output.champion.root, champion)
    if missing:
        warn(
            notes,
            f"The champion in {output.champion.root} is missing {', '.join(missing)} (listed in "
            f"{output.champion.champion_record.name}): predicting with it fails until a run is promoted again.",
        )
    return missing


def warn(notes: list[str], message: str) -> None:
    """A note of the report that is also one warning in the run's log."""
    get_logger().warning("%s", message)
    notes.append(message)


def labelled_rows(samples: pd.DataFrame) -> pd.DataFrame:
    return samples[samples["split"].isin(LABELLED_SPLITS)].reset_index(drop=True)


def current_features(labelled: pd.DataFrame, reference: DriftReference, limit: int) -> np.ndarray:
    """Features of a seeded subsample (the reference's seed) of the labelled images that decode."""
    rows = seeded_subsample(np.flatnonzero(image_ok_flags(labelled)), limit, reference.spec.seed)
    paths = labelled["path"].iloc[rows].astype(str).tolist()
    return backbone_features(reference.spec, paths, np.ones(len(paths), bool))


def compare_embeddings(
    labelled: pd.DataFrame, reference: DriftReference, settings: ValidationSettings, notes: list[str]
) -> dict[str, Any] | None:
    """The embedding test's figures, or None (with a note) when it was skipped or failed."""
    if settings.drift_images == 0:
        notes.append("Embedding drift not checked (drift_images is 0).")
        return None
    try:
        current = current_features(labelled, reference, settings.drift_images)
        return embedding_drift(reference.features, current, settings.drift_alpha).to_dict()
    except Exception as err:  # advisory: a backbone or image problem must not fail a validation that passed
        warn(notes, f"Embedding drift not checked: {describe(err)}")
        return None


def compare_with_champion(
    summary: dict[str, Any],
    champion: dict[str, Any],
    output: OutputDir,
    report: ValidationReport,
    settings: ValidationSettings,
) -> None:
    """Fill ``summary`` with the three comparisons (module docstring)."""
    notes: list[str] = summary["notes"]
    theirs = champion.get("data_fingerprint")
    summary["champion"] = {key: champion.get(key) for key in ("run", "model", "target", "timestamp")}
    summary["champion_missing_files"] = warn_missing_files(output, champion, notes)
    summary["champion_data_fingerprint"] = theirs
    summary["fingerprint_changed"] = bool(theirs) and theirs != summary["data_fingerprint"]
    reference = read_reference(output.champion.drift_reference, notes)
    if reference is None or not report.samples_path:
        return
    summary["spec"] = asdict(reference.spec)
    labelled = labelled_rows(read_samples(Path(report.samples_path)))
    target = str(champion.get("target") or "coarse")
    if target in reference.label_counts:
        counts = label_counts(labelled[target], len(reference.label_counts[target]))
        summary["labels"] = label_drift(target, reference.label_counts[target], counts, settings.drift_alpha).to_dict()
    summary["embeddings"] = compare_embeddings(labelled, reference, settings, notes)


def change_reasons(summary: dict[str, Any]) -> list[str]:
    """Why the data count as changed (empty: they do not)."""
    reasons = []
    if summary.get("fingerprint_changed"):
        reasons.append("the data fingerprint differs from the champion's")
    labels, embeddings = summary.get("labels"), summary.get("embeddings")
    if labels and labels["significant"]:
        reasons.append(f"the {labels['target']} label distribution drifted (chi-square p {labels['p_value']:.3g})")
    if embeddings and embeddings["significant"]:
        reasons.append(
            f"backbone features drifted ({embeddings['drifted_dimensions']} of {embeddings['dimensions']} "
            f"dimensions, smallest adjusted p {embeddings['min_adjusted_p']:.3g})"
        )
    return reasons


def event_payload(summary: dict[str, Any]) -> dict[str, Any]:
    """What the event carries: both directories, both fingerprints and the drift figures."""
    keys = ("data_dir", "output_dir", "validation_run", "data_fingerprint", "champion_data_fingerprint", "reasons")
    return {
        **{key: summary[key] for key in keys},
        "champion_run": (summary["champion"] or {}).get("run"),
        "labels": summary["labels"],
        "embeddings": summary["embeddings"],
    }


def judged_on(output: OutputDir, fingerprint: str) -> dict[str, Any] | None:
    """The newest registry decision on a run trained on data of this fingerprint, if any."""
    try:
        entries = read_registry(output.root)
    except Exception as exc:  # a damaged registry is reported by the next training run; do not hide a change
        get_logger().warning("Could not read %s (%s): treating the data as not yet trained on", output.registry, exc)
        return None
    judged = [
        entry for entry in entries if entry.get("data_fingerprint") == fingerprint and not entry.get("reconciled")
    ]
    return judged[-1] if judged else None


def check_drift(report: ValidationReport, output_dir: Path, settings: ValidationSettings) -> dict[str, Any]:
    """Compare the data ``report`` validated with the champion of ``output_dir``; write the
    report, publish the artifact and emit the event when the data changed (module docstring)."""
    output, run = OutputDir(output_dir), RunFolder(Path(report.run_dir))
    data_dir = Path(report.data_dir)
    summary: dict[str, Any] = {
        "data_dir": str(data_dir),
        "output_dir": str(output.root),
        "validation_run": run.root.name,
        "champion": None,
        "data_fingerprint": data_fingerprint(data_dir),
        "champion_data_fingerprint": None,
        "champion_missing_files": [],
        "fingerprint_changed": None,
        "spec": None,
        "labels": None,
        "embeddings": None,
        "notes": [],
        "report_path": str(run.drift_report),
    }
    champion = read_champion_record(output, summary["notes"])
    if champion is not None:
        compare_with_champion(summary, champion, output, report, settings)
    summary["reasons"] = change_reasons(summary)
    summary["data_changed"] = bool(summary["reasons"])
    summary["event"] = {"name": DATA_CHANGED_EVENT, "emitted": False}
    judged = judged_on(output, summary["data_fingerprint"]) if summary["data_changed"] else None
    if judged is not None:
        # A retrain on this very data was already gated: triggering another would retrain daily
        # for as long as the champion stays better (or the gate cannot compare the two).
        summary["event"]["skipped"] = (
            f"run {judged['run']} already trained on this data and was {judged['decision']} "
            f"({str(judged.get('reason', ''))[:300]})"
        )
        summary["notes"].append(f"No retraining triggered: {summary['event']['skipped']}")
    elif summary["data_changed"]:
        summary["event"] = {
            "name": DATA_CHANGED_EVENT,
            "resource": data_changed_resource(output.root, data_dir),
            "emitted": emit_data_changed(output.root, data_dir, event_payload(summary)),
        }
    atomic_write_json(run.drift_report, summary)
    publish_drift_artifact(summary)
    get_logger().info("%s Report: %s", drift_headline(summary), run.drift_report)
    return summary
