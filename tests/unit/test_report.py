"""Prefect artifacts: a report with embedded plots and two tables under stable keys; no-ops outside runs."""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from PIL import Image

from tasks.progress import ProgressReporter, check_artifact_key
from tasks.results.plots import make_run_plots
from tasks.results.report import (
    build_run_report,
    encode_png,
    publish_run_artifacts,
)
from tests.helpers import write_fake_run


@pytest.fixture(scope="module")
def run_with_plots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("report")
    run = write_fake_run(root / "runs" / "20260101-000000-abcdef", root / "data")
    return run, make_run_plots(run)


def read_artifacts(ids: list[str]) -> dict[str, Any]:
    """The stored artifacts with these ids, by key, read back through the Prefect client."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[UUID(i) for i in ids])))
    return {artifact.key: artifact for artifact in found}


def test_outside_a_run_everything_is_a_quiet_no_op(run_with_plots) -> None:
    run, plots = run_with_plots
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Prefect warns when artifacts are created outside a run
        assert publish_run_artifacts(run, plots) == {}
        reporter = ProgressReporter()
        assert reporter.update(1, 2) is None and reporter.finish() is None
        assert reporter.artifact_id is None


def test_report_embeds_every_plot_as_a_decodable_png(run_with_plots) -> None:
    run, plots = run_with_plots
    markdown = build_run_report(run, plots, {"decision": {"promote": True, "reason": "no champion yet"}})
    assert "**Best model:** `efficientnet_lite0_finetuned`" in markdown
    assert "promoted to champion: no champion yet" in markdown
    assert "| 1 | efficientnet_lite0_finetuned |" in markdown
    assert "Data Docs: not built" in markdown
    images = [part.split(")", 1)[0] for part in markdown.split("data:image/png;base64,")[1:]]
    assert len(images) == len(plots)
    for encoded in images:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            assert image.format == "PNG" and image.width > 200


def test_large_plots_are_shrunk_for_embedding_only(tmp_path: Path) -> None:
    noisy = np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    path = tmp_path / "noisy.png"
    Image.fromarray(noisy).save(path)
    before = path.read_bytes()
    assert len(before) > 1_000_000
    encoded = encode_png(path, max_bytes=300_000)
    assert len(base64.b64decode(encoded)) <= 300_000
    assert path.read_bytes() == before  # the run folder keeps the full-quality file


@pytest.mark.parametrize("key", ["Run-Report", "run_report", "run report", "-run", ""])
def test_bad_artifact_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="lowercase"):
        check_artifact_key(key)


def test_each_training_stage_has_its_own_progress_artifact() -> None:
    """Stage 2's bar must not share a key with stage 1's (the UI showed a stale "stage 1 done")."""
    from tasks.models.training import progress_reporter

    keys = {progress_reporter(stage).key for stage in (1, 2)}
    assert len(keys) == 2 and all(check_artifact_key(key) == key for key in keys)
