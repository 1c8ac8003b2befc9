"""The data audit on a copy of the tiny sample with planted cases (tasks.data.planting).

The planted-case experiment is also what justifies the duplicate thresholds' defaults
(``AuditSettings``): exact, resized + JPEG q50, 10%-per-side cropped and mirrored copies must pair
from the scan's hashes (a crop through the centre hash: the whole image's hash is 8-28 bits away),
and distinct images of the same class must not pair. ``python -m benchmarks.bench_audit`` measures
the margins on the embedded sample's 2,200 images (the figures quoted in ``AuditSettings``).
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.data.columns import GROUP, ROLE_HOLDOUT, ROLE_TRAIN
from tasks.data.dataset import load_samples
from tasks.data.groups import PerceptualHashes, connected_groups, hash_pairs, merge_groups
from tasks.data.planting import PLANTED_NAME, plant_cases
from tasks.data.sample import SampleSpec, generate_sample
from tasks.data.settings import DataSettings
from tasks.data.splitting import assign_roles
from tasks.layout import RunFolder
from tasks.validation.audit import audit_scan
from tasks.validation.image_scan import read_scan, scan_images
from tasks.validation.settings import AuditSettings
from tests.helpers import damage_file

#: Every planted kind pairs from the hashes (the centre hash catches 10%-per-side crops).
HASH_KINDS = ("exact", "resized_q50", "crop10", "mirror")


def scan_and_audit(data: Path, run_dir: Path, settings: AuditSettings) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Scan every image of ``data`` and run the scan audit; (samples with groups, scan, counts)."""
    samples, _ = load_samples(data)
    run = RunFolder(run_dir)
    run.validation.mkdir(parents=True, exist_ok=True)
    listing = run_dir / "list.csv"
    samples.loc[:, ["split", "filename", "path"]].to_csv(listing, index=False)
    scan_images(listing, run.image_scan, run_dir / "cache", workers=2)
    scan = read_scan(run.image_scan)
    grouped, counts = audit_scan(scan, samples, run, settings)
    return grouped, scan, counts


@pytest.fixture(scope="module")
def planted(tiny_sample_master: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A copy of the tiny sample with 12 originals x 4 copy kinds and 5% of train labels switched."""
    data = Path(shutil.copytree(tiny_sample_master, tmp_path_factory.mktemp("planted") / "data"))
    return data, plant_cases(data, n_originals=12, switched_share=0.05, seed=3)


@pytest.fixture(scope="module")
def audited(planted: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict]:
    data, _ = planted
    grouped, _, counts = scan_and_audit(data, tmp_path_factory.mktemp("run"), AuditSettings())
    return grouped, counts


def pair_recall(grouped: pd.DataFrame, pairs: list[dict], kinds: tuple[str, ...]) -> float:
    group_of = dict(zip(grouped["filename"], grouped[GROUP].fillna(0).astype(int)))
    wanted = [p for p in pairs if p["kind"] in kinds]
    found = [p for p in wanted if group_of[p["original"]] > 0 and group_of[p["original"]] == group_of[p["copy"]]]
    return len(found) / len(wanted)


def false_pair_rate(grouped: pd.DataFrame, pairs: list[dict]) -> tuple[int, int]:
    """(pairs grouped together that were not planted together, distinct same-class labelled pairs)."""
    family = {p["copy"]: p["original"] for p in pairs} | {p["original"]: p["original"] for p in pairs}
    labelled = grouped[grouped["split"] != "test"]
    wrong = total = 0
    for _, members in labelled.groupby("coarse"):
        rows = list(zip(members["filename"], members[GROUP].fillna(0).astype(int)))
        for (a, ga), (b, gb) in itertools.combinations(rows, 2):
            if family.get(a, a) == family.get(b, b):
                continue  # a planted pair (or the same original)
            total += 1
            wrong += int(ga > 0 and ga == gb)
    return wrong, total


def test_hash_duplicates_find_planted_copies_and_no_distinct_images(planted, audited) -> None:
    _, record = planted
    grouped, counts = audited
    assert pair_recall(grouped, record["pairs"], HASH_KINDS) >= 0.95
    wrong, total = false_pair_rate(grouped, record["pairs"])
    assert total > 5000 and wrong / total < 0.01
    assert counts["duplicate_groups"] >= 12
    assert counts["test_train_groups"] >= 1  # copies were planted into test


def test_duplicates_csv_lists_members_without_test_labels(planted, audited, tmp_path: Path) -> None:
    grouped, _ = audited
    members = grouped[grouped[GROUP].notna()]
    assert (members.groupby(GROUP).size() >= 2).all()


def test_grouped_split_keeps_every_group_on_one_side(audited) -> None:
    grouped, _ = audited
    table = assign_roles(grouped, "coarse", 0.3, seed=5)
    labelled = table[table["role"].isin([ROLE_TRAIN, ROLE_HOLDOUT])]
    sides = labelled.dropna(subset=[GROUP]).groupby(GROUP)["role"].nunique()
    assert (sides == 1).all()
    assert 0.2 < (labelled["role"] == ROLE_HOLDOUT).mean() < 0.4


def test_split_without_groups_is_the_ungrouped_split(audited) -> None:
    grouped, _ = audited
    plain = assign_roles(grouped.drop(columns=[GROUP]), "coarse", 0.3, seed=5)
    empty = assign_roles(grouped.assign(**{GROUP: pd.NA}), "coarse", 0.3, seed=5)
    pd.testing.assert_series_equal(plain["role"], empty["role"])


def test_unreadable_image_is_skipped_with_the_scans_reason(tiny_sample: Path, tmp_path: Path) -> None:
    broken = next((tiny_sample / "public" / "train").iterdir())
    damage_file(broken, "garbled")
    grouped, scan, counts = scan_and_audit(tiny_sample, tmp_path / "run", AuditSettings())
    row = scan[scan["filename"] == broken.name].iloc[0]
    assert row["decodes"] is False and "not an image" in row["error"]
    assert counts["skipped_unreadable"] == 1
    assert pd.isna(grouped.loc[grouped["filename"] == broken.name, GROUP]).all()


def test_groups_are_connected_components_and_merge() -> None:
    ids = connected_groups(6, np.array([[0, 2], [2, 4], [1, 5]]))
    assert ids.tolist() == [1, 2, 1, 0, 1, 2]
    assert merge_groups(ids, np.array([0, 0, 0, 3, 3, 0])).tolist() == [1, 2, 1, 1, 1, 2]
    # Four hashes 16 or 32 bits apart from each other and from zero.
    a, b, c, d, zero = "ffff000000000000", "0000ffff00000000", "00000000ffff0000", "000000000000ffff", "0" * 16
    first = (a, b, c, d)

    def pairs(second: tuple[str, str, str, str]) -> list[list[int]]:
        return hash_pairs([None, None], PerceptualHashes(*zip(first, second)), 2).tolist()

    assert pairs((zero, a, zero, zero)) == [[0, 1]]  # 0's image is 1's mirror image: a mirrored copy
    assert pairs((d, zero, zero, zero)) == [[0, 1]]  # 1's image is 0's mirrored centre: cropped and mirrored
    assert pairs((zero, zero, a, zero)) == [[0, 1]]  # 0's image is 1's centre: 0 is 1 cropped
    assert pairs((zero, zero, zero, zero)) == []


@pytest.fixture(scope="module")
def planted_sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The embedded sample at its default size (36 labelled images per family, as a first run
    generates it; one test image per family, which the label audit does not read) with 12
    originals x 4 copy kinds across train, val and test, and 5% of train labels switched."""
    spec = SampleSpec(
        per_family=DataSettings().sample_per_family, test_per_family=1, planted_originals=12, planted_label_share=0.05
    )
    data = generate_sample(tmp_path_factory.mktemp("planted-sample") / "data", spec)
    return data, json.loads((data / PLANTED_NAME).read_text())


@pytest.mark.slow
def test_feature_audit_on_the_planted_sample(planted_sample, tmp_path: Path) -> None:
    """The issue's figures on the sample a first run uses: planted copies grouped, switched labels
    among the top label-issue candidates, and no group spanning train and hold-out after the split.
    The label figure over six other switch draws on the same images: 0.77 mean, 0.07 sd, 0.68 the
    lowest (docs/audit.md); the 6-images-per-family tiny sample cannot reach it (too few to learn from)."""
    from tasks.audit.stage import write_audit
    from tasks.models.embeddings import EmbeddingSpec, compute_embeddings
    from tasks.models.settings import TransferSettings

    data, record = planted_sample
    run = RunFolder(tmp_path / "run")
    grouped, _, _ = scan_and_audit(data, run.root, AuditSettings())
    assert pair_recall(grouped, record["pairs"], HASH_KINDS) >= 0.95
    assign_roles(grouped, "coarse", 0.2, seed=5).to_csv(run.table, index=False)
    embeddings = compute_embeddings(run.table, EmbeddingSpec.of(TransferSettings(), 0), tmp_path / "cache")
    settings = AuditSettings(exclude_label_issues=True)
    summary = write_audit(run.table, embeddings, run.root, settings, "coarse", 0, tmp_path / "cache")
    assert summary["groups_crossing_holdout"] == 0
    duplicates = pd.read_csv(run.audit_duplicates, dtype={"filename": str})
    assert list(duplicates.columns) == ["group", "filename", "split", "label"]
    final = pd.read_csv(run.split, dtype=str)
    assert set(final["role"]) <= {"train", "holdout", "test", "excluded"}
    issues = pd.read_csv(run.audit_label_issues, dtype={"filename": str})
    assert list(issues.columns) == ["filename", "split", "given", "suggested", "score"]
    assert issues["score"].is_monotonic_decreasing
    switched = {s["filename"] for s in record["switched"]}
    found = switched & set(issues["filename"].head(2 * len(switched)))
    assert len(found) / len(switched) >= 0.70, f"{len(found)} of {len(switched)} switched labels in the top"
    assert summary["excluded_from_training"]["label_issue"] > 0


def test_the_run_report_carries_the_audit_section_and_gallery(tmp_path: Path) -> None:
    """A run that audited its data shows the counts, the checks and the gallery in its report."""
    import json

    from tasks.results.report import build_run_report
    from tests.helpers import write_fake_run

    run = RunFolder(write_fake_run(tmp_path / "runs" / "r1", tmp_path / "data", images=False))
    run.audit.mkdir(parents=True)
    summary = {
        "duplicate_groups": 3,
        "duplicate_images": 7,
        "conflicting_label_groups": 1,
        "test_train_groups": 2,
        "groups_crossing_holdout": 0,
        "label_issue_candidates": 9,
        "image_issues": 0,
        "excluded_from_training": {"near_duplicate_of_holdout": 0, "label_issue": 0},
        "planted": True,
        "checks": {"no duplicate group ... spans train and hold-out": "passed"},
    }
    run.audit_summary.write_text(json.dumps(summary))
    from PIL import Image

    Image.new("RGB", (8, 8)).save(run.audit_gallery)
    report = build_run_report(run.root, {})
    assert "## Data audit" in report and "| label-issue candidates | 9 |" in report
    assert "planted duplicates" in report and "passed: no duplicate group" in report
    assert "![Data audit gallery](data:image/png;base64," in report


def test_the_audit_checks_fail_only_on_a_hash_group_across_the_holdout(tmp_path: Path) -> None:
    """Suite ``audit``: a feature group across the hold-out, conflicting labels or a test copy are
    warnings; a hash group across it (which the grouped split prevents) stops the run."""
    from tasks.audit.checks import DuplicateAcrossHoldout, check_groups, group_table

    run = RunFolder(tmp_path / "run")
    run.validation.mkdir(parents=True)
    table = pd.DataFrame(
        {
            "split": ["train", "val", "train", "test", "train", "val"],
            "role": ["train", "holdout", "train", "test", "train", "train"],
            "coarse": [1, 1, 2, 0, 3, 4],
        }
    )
    feature_groups = np.array([1, 1, 2, 2, 3, 3])  # 1 crosses the hold-out, 2 joins test, 3 conflicts
    summary = check_groups(run, group_table(table, feature_groups, np.zeros(6, np.int64), "coarse"))
    statuses = [o["status"] for o in summary["expectations"]]
    assert summary["failed_critical"] == 0 and statuses == ["passed", "failed", "failed", "failed"]
    with pytest.raises(DuplicateAcrossHoldout, match=r"group\(s\) \[1\]"):
        check_groups(run, group_table(table, feature_groups, np.array([1, 1, 0, 0, 0, 0]), "coarse"))
