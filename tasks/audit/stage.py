"""The audit stage of a full run: after the split and the backbone pass, before training.

It joins validation's hash groups (``samples.csv``'s ``group``) with near duplicates found from
the cached backbone features (crops, colour changes), lists label-issue candidates, and writes
``audit/`` (``RunFolder``): duplicates.csv, label_issues.csv, image_issues.csv, summary.json.

Feature-found groups exist only after the split (the features are keyed by the split table), so
they cannot move images between sides without changing the hold-out every model is scored on.
A careful tool keeps the hold-out as it is and takes the TRAIN members of a feature-found group
that crosses train and hold-out out of training (role ``excluded``); the hold-out stays the same,
and no training image is a near copy of a hold-out image. ``exclude_label_issues`` likewise drops
the top candidates among training images only (at most ``exclude_max_fraction`` of them), never a
hold-out image. ``split.csv`` and ``table.csv`` are rewritten with those roles; the features of
the rewritten table are assembled from the same cached chunks (roles are not in a chunk's key).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.audit.checks import check_groups, group_table
from tasks.audit.findings import Findings, cached_findings, findings_key, findings_path
from tasks.audit.labels import label_issues
from tasks.audit.neighbours import feature_pairs
from tasks.data.columns import LABELLED_SPLITS, ROLE_EXCLUDED, ROLE_HOLDOUT, ROLE_TRAIN, Target
from tasks.data.dataset import image_ok_flags
from tasks.data.groups import connected_groups, merge_groups
from tasks.data.splitting import group_ids, read_table, write_split
from tasks.io import atomic_write_json, atomic_write_text
from tasks.layout import RunFolder
from tasks.logs import get_logger
from tasks.models.embeddings import read_embeddings
from tasks.validation.audit import IMAGE_ISSUE_COLUMNS, duplicate_counts, duplicate_table
from tasks.validation.settings import AuditSettings

LABEL_ISSUE_COLUMNS = ("filename", "split", "given", "suggested", "score")


def crossing_groups(groups: np.ndarray, roles: pd.Series) -> set[int]:
    """Groups with members both in train and in the hold-out."""
    frame = pd.DataFrame({"group": groups, "role": roles.to_numpy()})
    frame = frame[(frame["group"] > 0) & frame["role"].isin([ROLE_TRAIN, ROLE_HOLDOUT])]
    sides = frame.groupby("group")["role"].nunique()
    return set(sides[sides > 1].index.tolist())


def audit_features(
    table: pd.DataFrame, features: np.ndarray, settings: AuditSettings, target: Target, seed: int
) -> Findings:
    """Groups (hash and feature), feature-only groups that cross the hold-out, label issues."""
    ok = image_ok_flags(table)
    rows = np.flatnonzero(ok)
    pairs = feature_pairs(features[rows], settings.feature_min_similarity, settings.feature_neighbours)
    feature_groups = np.zeros(len(table), np.int64)
    feature_groups[rows] = connected_groups(len(rows), rows[pairs] if len(pairs) else pairs)
    hash_groups = group_ids(table).to_numpy()
    groups = merge_groups(hash_groups, feature_groups)
    issues = pd.DataFrame(columns=["row", "given", "suggested", "score"])
    labelled = np.flatnonzero(ok & table["role"].isin([ROLE_TRAIN, ROLE_HOLDOUT]).to_numpy())
    if settings.label_issues and len(labelled):
        found = label_issues(
            features[labelled].reshape(len(labelled), -1),
            table[target].to_numpy()[labelled].astype(int),
            settings.label_folds,
            seed,
            settings.label_max_images,
            settings.label_repeats,
        )
        issues = found.assign(row=labelled[found["row"].to_numpy(dtype=int)])
    return Findings(groups, hash_groups, len(pairs), issues)


def excluded_rows(table: pd.DataFrame, found: Findings, settings: AuditSettings) -> dict[str, list[int]]:
    """Training rows the audit keeps out of training, by reason."""
    roles = table["role"]
    crossing = crossing_groups(found.groups, roles) if settings.exclude_near_duplicates else set()
    near = [int(i) for i in np.flatnonzero(np.isin(found.groups, list(crossing)) & (roles == ROLE_TRAIN).to_numpy())]
    wrong: list[int] = []
    if settings.exclude_label_issues:
        budget = int(settings.exclude_max_fraction * int((roles == ROLE_TRAIN).sum()))
        candidates = [int(r) for r in found.label_issues["row"] if roles.iat[int(r)] == ROLE_TRAIN]
        wrong = [r for r in candidates if r not in set(near)][:budget]
    return {"near_duplicate_of_holdout": near, "label_issue": wrong}


def write_audit(
    table_path: Path,
    embeddings_path: Path,
    run_dir: Path,
    settings: AuditSettings,
    target: Target,
    seed: int,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the feature audit for ``table_path`` and write ``audit/``; rewrite the split with the
    excluded training rows; check the groups (suite ``audit``). Returns the summary (also
    ``audit/summary.json``). With a ``cache_dir``, the findings of the same inputs are read from
    ``<cache>/audit/`` (`tasks.audit.findings`) instead of computed again."""
    started = time.perf_counter()
    run, table = RunFolder(run_dir), read_table(table_path)

    def compute() -> Findings:
        features = read_embeddings(Path(embeddings_path), table)["clean"]
        return audit_features(table, features, settings, target, seed)

    if cache_dir is None:
        found = compute()
    else:
        key = findings_key(table, Path(embeddings_path), settings.model_dump_json(), target, seed)
        found = cached_findings(findings_path(cache_dir, key), len(table), compute)
    exclusions = excluded_rows(table, found, settings)
    table = exclude_from_training(table, exclusions, run, Path(table_path))
    duplicates = duplicate_table(table.loc[:, ["split", "filename", "fine"]], found.groups)
    issues = label_issue_table(table, found.label_issues)
    issue_rows = found.label_issues["row"].to_numpy(dtype=int)
    image_issues = (
        pd.read_csv(run.validation_image_issues)
        if run.validation_image_issues.is_file()
        else pd.DataFrame(columns=list(IMAGE_ISSUE_COLUMNS))
    )
    checks = check_groups(run, group_table(table, found.groups, found.hash_groups, target))
    summary: dict[str, Any] = {
        **duplicate_counts(duplicates),
        "hash_duplicate_groups": int(len(set(found.hash_groups[found.hash_groups > 0].tolist()))),
        "feature_pairs": int(found.feature_pairs),
        "groups_crossing_holdout": len(crossing_groups(found.groups, table["role"])),
        "label_issue_candidates": int(len(issues)),
        "label_issue_candidates_in_train": int((table["role"].to_numpy()[issue_rows] == ROLE_TRAIN).sum()),
        "image_issues": int(len(image_issues)),
        "excluded_from_training": {reason: len(r) for reason, r in exclusions.items()},
        "exclude_label_issues": settings.exclude_label_issues,
        "exclude_near_duplicates": settings.exclude_near_duplicates,
        "labelled_images": int(table["split"].isin(LABELLED_SPLITS).sum()),
        "planted": (Path(str(table["path"].iloc[0])).parents[2] / "planted.json").is_file() if len(table) else False,
        "checks": {o["rule"]: o["status"] for o in checks["expectations"]},
        "seconds": round(time.perf_counter() - started, 2),
    }
    atomic_write_text(run.audit_duplicates, duplicates.to_csv(index=False))
    atomic_write_text(run.audit_label_issues, issues.loc[:, list(LABEL_ISSUE_COLUMNS)].to_csv(index=False))
    atomic_write_text(run.audit_image_issues, image_issues.loc[:, list(IMAGE_ISSUE_COLUMNS)].to_csv(index=False))
    atomic_write_json(run.audit_summary, summary)
    log_summary(summary)
    return summary


def label_issue_table(table: pd.DataFrame, issues: pd.DataFrame) -> pd.DataFrame:
    """label_issues.csv's rows (filename, split, given, suggested, score), most likely wrong label first."""
    rows = issues["row"].to_numpy(dtype=int)
    return pd.DataFrame(
        {
            "filename": table["filename"].to_numpy()[rows],
            "split": table["split"].to_numpy()[rows],
            "given": issues["given"].to_numpy(dtype=int),
            "suggested": issues["suggested"].to_numpy(dtype=int),
            "score": issues["score"].to_numpy(dtype=float),
        }
    ).sort_values("score", ascending=False, kind="stable")


def exclude_from_training(
    table: pd.DataFrame, exclusions: dict[str, list[int]], run: RunFolder, table_path: Path
) -> pd.DataFrame:
    """``table`` with the excluded training rows' role ``excluded``; ``split.csv`` and the table
    file rewritten when there are any (the hold-out never changes)."""
    drop = sorted({r for rows in exclusions.values() for r in rows})
    if not drop:
        return table
    table = table.assign(role=table["role"].astype("string"))
    table.loc[drop, "role"] = ROLE_EXCLUDED
    write_split(table, run.split)
    atomic_write_text(table_path, table.to_csv(index=False))
    return table


def log_summary(summary: dict[str, Any]) -> None:
    get_logger(__name__).info(
        "Audit: %d duplicate group(s) (%d crossing the hold-out), %d label-issue candidate(s), "
        "%d image issue(s); excluded from training: %s (%.1f s)",
        summary["duplicate_groups"],
        summary["groups_crossing_holdout"],
        summary["label_issue_candidates"],
        summary["image_issues"],
        summary["excluded_from_training"],
        summary["seconds"],
    )
