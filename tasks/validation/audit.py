"""The part of the data audit that needs no backbone features: hash duplicates and image issues.

Both come from what the image scan already recorded for every decoded file (content hash,
perceptual hashes as is and mirrored, brightness, contrast, size), so they cost no extra decode.
A file the scan could not read has no hashes: it is skipped here, and the scan's reason for it
stays in ``quarantine.csv`` (the audit never opens a file itself, so it never crashes on one).

Outputs (``RunFolder``): ``validation/duplicates.csv`` (group,filename,split,label: one row per
member of a group of two or more; ``label`` is the fine label, empty for test images, whose CSV
labels are placeholders), ``validation/image_issues.csv`` (filename,issue,score) and
``validation/audit.json`` (counts). The group ids go into ``samples.csv`` (column ``group``) for
the split, which keeps each group on one side of the hold-out (tasks.data.splitting).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tasks.data.columns import GROUP, LABELLED_SPLITS
from tasks.data.groups import PerceptualHashes, connected_groups, hash_pairs
from tasks.io import atomic_write_json, atomic_write_text
from tasks.layout import RunFolder
from tasks.validation.image_contents import HASH_KEYS
from tasks.validation.settings import AuditSettings

DUPLICATE_COLUMNS = ("group", "filename", "split", "label")
IMAGE_ISSUE_COLUMNS = ("filename", "issue", "score")
#: Image issues, in the order they are checked.
IMAGE_ISSUES = ("near_constant", "dark", "bright", "small", "elongated")


def image_issues(scan: pd.DataFrame, settings: AuditSettings) -> pd.DataFrame:
    """One row per (image, issue) of the decoded images: the issue and the measure that raised it
    (contrast, brightness, short side or aspect ratio)."""
    ok = scan[scan["decodes"].eq(True) & scan["brightness"].notna()]
    width, height = ok["width"].astype(float), ok["height"].astype(float)
    short, long = np.minimum(width, height), np.maximum(width, height)
    checks = {
        "near_constant": (ok["contrast"] < settings.min_contrast, ok["contrast"]),
        "dark": (ok["brightness"] < settings.dark_below, ok["brightness"]),
        "bright": (ok["brightness"] > settings.bright_above, ok["brightness"]),
        "small": (short < settings.small_below, short),
        "elongated": (long / short.clip(lower=1) > settings.max_aspect_ratio, long / short.clip(lower=1)),
    }
    frames = [
        pd.DataFrame({"filename": ok.loc[hit, "filename"], "issue": name, "score": score[hit].round(3)})
        for name, (hit, score) in checks.items()
        if hit.any()
    ]
    if not frames:
        return pd.DataFrame(columns=list(IMAGE_ISSUE_COLUMNS))
    return pd.concat(frames, ignore_index=True).loc[:, list(IMAGE_ISSUE_COLUMNS)]


def hash_groups(scan: pd.DataFrame, settings: AuditSettings) -> np.ndarray:
    """A duplicate group id per scan row (0: none) from its hashes; undecoded rows get none."""
    usable = scan["decodes"].eq(True).to_numpy() & scan["phash"].notna().to_numpy()
    rows = np.flatnonzero(usable)
    part = scan.iloc[rows]
    hashes = PerceptualHashes(*(part[column].tolist() for column in HASH_KEYS))
    pairs = hash_pairs(part["content_hash"].tolist(), hashes, settings.phash_max_distance)
    groups = np.zeros(len(scan), dtype=np.int64)
    groups[rows] = connected_groups(len(rows), pairs)
    return groups


def duplicate_table(frame: pd.DataFrame, groups: np.ndarray) -> pd.DataFrame:
    """duplicates.csv's rows: every member of a group of two or more (``frame``: split, filename, fine)."""
    members = frame.assign(group=groups)
    members = members[members["group"] > 0]
    label = members["fine"].astype("Int64").astype("string")
    label = label.where(members["split"].isin(LABELLED_SPLITS), None)  # test labels are placeholders
    table = members.assign(label=label).loc[:, list(DUPLICATE_COLUMNS)]
    return table.sort_values(["group", "split", "filename"], kind="stable").reset_index(drop=True)


def duplicate_counts(duplicates: pd.DataFrame) -> dict[str, int]:
    """Groups, their images, groups whose labelled members disagree, groups joining test and labelled images."""
    if duplicates.empty:
        return {"duplicate_groups": 0, "duplicate_images": 0, "conflicting_label_groups": 0, "test_train_groups": 0}
    by_group = duplicates.groupby("group")
    labels = duplicates.dropna(subset=["label"]).groupby("group")["label"].nunique()
    has_test = by_group["split"].agg(lambda s: (s == "test").any())
    has_labelled = by_group["split"].agg(lambda s: s.isin(LABELLED_SPLITS).any())
    return {
        "duplicate_groups": int(by_group.ngroups),
        "duplicate_images": int(len(duplicates)),
        "conflicting_label_groups": int((labels > 1).sum()),
        "test_train_groups": int((has_test & has_labelled).sum()),
    }


def audit_scan(
    scan: pd.DataFrame, samples: pd.DataFrame, run: RunFolder, settings: AuditSettings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Hash duplicates and image issues of the validated ``samples`` (split, filename, fine...):
    writes the validation folder's audit files, returns ``samples`` with its ``group`` column and
    the counts."""
    keys = ["split", "filename"]
    merged = samples.loc[:, [*keys, "fine"]].merge(
        scan.drop_duplicates(keys).drop(columns=["fine"], errors="ignore"), on=keys, how="left"
    )
    groups = hash_groups(merged, settings)
    duplicates = duplicate_table(merged, groups)
    issues = image_issues(merged, settings)
    atomic_write_text(run.validation_duplicates, duplicates.to_csv(index=False))
    atomic_write_text(run.validation_image_issues, issues.to_csv(index=False))
    n = max(len(samples), 1)
    counts: dict[str, Any] = {
        **duplicate_counts(duplicates),
        "images": int(len(samples)),
        "skipped_unreadable": int((~merged["decodes"].eq(True)).sum()),
        "image_issues": {name: int((issues["issue"] == name).sum()) for name in IMAGE_ISSUES},
        "images_with_issues": int(issues["filename"].nunique()),
    }
    counts["image_issue_fraction"] = round(counts["images_with_issues"] / n, 6)
    atomic_write_json(run.validation_audit, counts)
    return samples.assign(**{GROUP: pd.array(np.where(groups > 0, groups, pd.NA), dtype="Int64")}), counts


def audit_messages(counts: dict[str, Any], settings: AuditSettings) -> tuple[list[str], list[str]]:
    """(failures, warnings) of the scan audit for the validation report."""
    failures, warnings = [], []
    if counts.get("duplicate_groups"):
        warnings.append(
            f"[audit] {counts['duplicate_groups']} duplicate group(s) of {counts['duplicate_images']} images "
            "(exact or perceptual-hash copies); each is kept on one side of the hold-out"
        )
    if counts.get("conflicting_label_groups"):
        warnings.append(f"[audit] {counts['conflicting_label_groups']} duplicate group(s) carry different labels")
    if counts.get("test_train_groups"):
        warnings.append(
            f"[audit] {counts['test_train_groups']} test image group(s) duplicate labelled images "
            "(listed; they are not given the training label)"
        )
    share = counts.get("image_issue_fraction", 0.0)
    if counts.get("images_with_issues"):
        detail = ", ".join(f"{k} {v}" for k, v in counts["image_issues"].items() if v)
        message = f"[audit] {counts['images_with_issues']} image(s) ({share:.1%}) with image issues: {detail}"
        if share > settings.max_image_issue_fraction:
            failures.append(
                f"{message}; more than --audit.max-image-issue-fraction {settings.max_image_issue_fraction}"
            )
        else:
            warnings.append(message)
    return failures, warnings
