"""A cache folder whose every file was replaced by a malicious pickle runs no code on the next
warm rerun, and the rerun still publishes a valid submission (every damaged entry is recomputed).
Prefect result records are replaced by records that name the pickle serializer (what Prefect
would decode a bare pickle with is the serializer the file names); every other file by the pickle."""

from __future__ import annotations

import base64
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.full import RunSummary, full_pipeline
from flows.params import PipelineParams
from tasks.data.settings import DataSettings, SplitSettings
from tasks.layout import OutputDir
from tasks.models.settings import BaselineSettings, TransferSettings
from tasks.results.settings import GateSettings


class Planted:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def planted_record(payload: bytes) -> bytes:
    """A Prefect result record naming the pickle serializer: Prefect would unpickle ``payload``."""
    serializer = {"type": "pickle", "picklelib": "pickle", "picklelib_version": None}
    record = {"metadata": {"serializer": serializer}, "result": base64.encodebytes(payload).decode()}
    return json.dumps(record).encode()


def assert_valid_submission(summary: RunSummary, data_dir: Path) -> None:
    submission = pd.read_csv(summary.submission_path, dtype={"filename": str})
    test_csv = pd.read_csv(data_dir / "public" / "test.csv", dtype=str)
    assert list(submission.columns) == ["filename", "coarse"]
    assert submission["filename"].tolist() == test_csv["filename"].tolist()
    assert submission["coarse"].between(0, 7).all()


@pytest.mark.slow
def test_a_cache_full_of_planted_pickles_runs_no_code(prefect_server: None, tiny_sample: Path, tmp_path: Path) -> None:
    out, marker = tmp_path / "out", tmp_path / "marker"
    params = PipelineParams(
        gate=GateSettings(
            export_check_rows=0
        ),  # the caches are the subject; tests/integration/test_predict checks the gate
        data=DataSettings(data_dir=tiny_sample, output_dir=out),
        split=SplitSettings(seed=3),
        baselines=BaselineSettings(rf_n_estimators=20, embedding_models=["logreg"]),
        transfer=TransferSettings(image_size=32, stage1_epochs=3, stage2_epochs=1, weights="random"),
    )
    assert_valid_submission(full_pipeline(params), tiny_sample)

    cache = OutputDir(out).cache
    files = sorted(p for p in cache.rglob("*") if p.is_file() and not p.is_symlink())
    names = [str(p.relative_to(cache)) for p in files]
    print("\n".join(names))
    # Every kind of cached file is there to be planted over.
    assert any(n.startswith("prefect-results/") for n in names), names
    assert any(n.endswith(".skops") for n in names), names
    assert any(n.endswith((".npy", ".npz")) for n in names), names
    assert any(n.endswith(".h5") for n in names), names
    assert any(n.startswith("steps/validation/") for n in names), names
    payload = pickle.dumps(Planted(marker))
    results = OutputDir(out).prefect_results
    for path in files:
        path.write_bytes(planted_record(payload) if path.parent == results else payload)

    summary = full_pipeline(params)
    assert not marker.exists(), "a planted cache file was unpickled"
    assert_valid_submission(summary, tiny_sample)
