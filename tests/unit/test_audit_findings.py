"""The feature audit's findings cache: a warm rerun reads them; a damaged file heals; the key sees the inputs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.audit.findings import Findings, cached_findings, findings_key, findings_path
from tests.helpers import damage_file


def findings() -> Findings:
    issues = pd.DataFrame({"row": [2, 0], "given": [1, 0], "suggested": [0, 1], "score": [0.9, 0.7]})
    return Findings(np.array([1, 0, 1, 0]), np.array([1, 0, 1, 0]), 3, issues)


def test_a_rerun_reads_the_findings_and_a_damaged_file_is_recomputed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = findings_path(tmp_path / "cache", "k")
    calls: list[int] = []

    def compute() -> Findings:
        calls.append(1)
        return findings()

    first = cached_findings(path, 4, compute)
    again = cached_findings(path, 4, compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(again.groups, first.groups)
    pd.testing.assert_frame_equal(again.label_issues, first.label_issues, check_dtype=False)
    assert again.feature_pairs == 3
    damage_file(path, "garbled-middle")
    with caplog.at_level(logging.WARNING):
        healed = cached_findings(path, 4, compute)
    assert len(calls) == 2 and healed.feature_pairs == 3
    assert [r.getMessage() for r in caplog.records if f"Damaged cache file {path}" in r.getMessage()]
    assert cached_findings(path, 5, compute).feature_pairs == 3 and len(calls) == 3  # another table's length


def test_the_key_changes_with_roles_labels_settings_and_features(tmp_path: Path) -> None:
    features = tmp_path / "f.npz"
    features.write_bytes(b"x" * 10)
    table = pd.DataFrame({"filename": ["a", "b"], "role": ["train", "holdout"], "coarse": [0, 1], "path": ["/x", "/y"]})
    key = findings_key(table, features, "{}", "coarse", 0)
    assert key == findings_key(table.assign(path=["/moved/x", "/moved/y"]), features, "{}", "coarse", 0)
    assert key != findings_key(table.assign(role=["train", "train"]), features, "{}", "coarse", 0)
    assert key != findings_key(table.assign(coarse=[1, 1]), features, "{}", "coarse", 0)
    assert key != findings_key(table, features, '{"label_folds": 3}', "coarse", 0)
    assert key != findings_key(table, features, "{}", "coarse", 1)
    features.write_bytes(b"x" * 11)
    assert key != findings_key(table, features, "{}", "coarse", 0)
