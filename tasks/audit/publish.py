"""What a person sees of the audit: a gallery of the largest duplicate groups and the top
label-issue candidates (thumbnails, given and suggested labels), and a Prefect markdown artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.layout import RunFolder


def _thumb(path: str, size: int = 96) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.thumbnail((size, size))
            return image.convert("RGB")
    except OSError:  # never fail the run on an image: an empty cell instead
        return None


def write_gallery(run_dir: Path, classes: list[str], groups: int = 4, candidates: int = 8) -> Path | None:
    """``audit/gallery.png``: one row per largest duplicate group, then the top label-issue candidates."""
    import matplotlib.pyplot as plt

    run = RunFolder(run_dir)
    table = pd.read_csv(run.table, dtype={"filename": str, "path": str})
    path_of = dict(zip(table["filename"], table["path"]))
    duplicates = pd.read_csv(run.audit_duplicates, dtype={"filename": str})
    issues = pd.read_csv(run.audit_label_issues, dtype={"filename": str}).head(candidates)
    largest = duplicates.groupby("group").size().sort_values(ascending=False, kind="stable").head(groups).index
    rows = [duplicates[duplicates["group"] == g].head(candidates) for g in largest]
    if not rows and issues.empty:
        return None
    n_rows, n_cols = len(rows) + (1 if not issues.empty else 0), candidates
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.9 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")

    def name(label: Any) -> str:
        return classes[int(label)] if pd.notna(label) and 0 <= int(label) < len(classes) else "?"

    for r, members in enumerate(rows):
        for c, member in enumerate(members.itertuples(index=False)):
            image = _thumb(path_of.get(member.filename, ""))
            if image is not None:
                axes[r, c].imshow(image)
            axes[r, c].set_title(f"group {member.group}\n{member.split}", fontsize=7)
    if not issues.empty:
        for c, issue in enumerate(issues.itertuples(index=False)):
            image = _thumb(path_of.get(issue.filename, ""))
            if image is not None:
                axes[-1, c].imshow(image)
            axes[-1, c].set_title(f"given {name(issue.given)}\nsuggested {name(issue.suggested)}", fontsize=7)
    figure.suptitle("Audit: largest duplicate groups (rows) and top label-issue candidates (last row)", fontsize=9)
    figure.tight_layout()
    run.audit_gallery.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(run.audit_gallery, dpi=90)
    plt.close(figure)
    return run.audit_gallery


def audit_markdown(run_dir: Path) -> str:
    """The audit's section (markdown): counts, what was excluded from training, where the files are."""
    run = RunFolder(run_dir)
    summary = json.loads(run.audit_summary.read_text(encoding="utf-8"))
    excluded = summary["excluded_from_training"]
    lines = [
        "## Data audit",
        "",
        "| check | count |",
        "|---|---|",
        f"| duplicate groups (hash + features) | {summary['duplicate_groups']} ({summary['duplicate_images']} images) |",
        f"| groups whose members carry different labels (warning) | {summary['conflicting_label_groups']} |",
        f"| groups joining test and labelled images (warning) | {summary['test_train_groups']} |",
        f"| groups crossing train and hold-out (hash groups: must be 0; feature groups: warning) | "
        f"{summary['groups_crossing_holdout']} |",
        f"| label-issue candidates | {summary['label_issue_candidates']} |",
        f"| image issues | {summary['image_issues']} |",
        f"| excluded from training: near copies of hold-out images | {excluded['near_duplicate_of_holdout']} |",
        f"| excluded from training: label-issue candidates | {excluded['label_issue']} |",
        "",
        f"Files: `{run.audit}` (duplicates.csv, label_issues.csv, image_issues.csv, summary.json, gallery.png).",
    ]
    checks = summary.get("checks") or {}
    if checks:
        lines += ["", "Great Expectations (suite `audit`):", ""]
        lines += [f"- {status}: {rule}" for rule, status in checks.items()]
    if summary.get("planted"):
        lines.append(
            "The embedded sample has planted duplicates and switched labels (`planted.json` beside `public/`): "
            "this section shows them being found."
        )
    return "\n".join(lines)


def publish_audit_artifact(run_dir: Path) -> None:
    """The ``data-audit`` markdown artifact (skipped outside a Prefect run)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import get_run_context

    try:
        get_run_context()
    except Exception:
        return
    create_markdown_artifact(key="data-audit", markdown=audit_markdown(run_dir), description="Data audit")
