"""The parts of test_report.py that need a Prefect server (moved out of tests/unit, which starts none)."""

from __future__ import annotations

import json

from tasks.progress import PROGRESS_KEY, ProgressReporter
from tasks.results.report import (
    COMPARISON_KEY,
    PER_CLASS_KEY,
    REPORT_KEY,
    publish_run_artifacts,
)
from tests.helpers import COARSE
from tests.unit.test_report import read_artifacts, run_with_plots


def test_run_artifacts_are_published_and_readable(prefect_server: None, run_with_plots) -> None:
    from prefect import flow

    run, plots = run_with_plots

    @flow(name="report-test")
    def publish() -> dict[str, str]:
        progress = ProgressReporter(description="test epochs")
        sent = [progress.update(epoch, 5) for epoch in range(1, 6)]
        assert sent[-1] == 100.0
        ids = publish_run_artifacts(
            run,
            plots,
            {
                "decision": {"promote": False, "reason": "macro-F1 0.80 does not beat 0.85"},
                "data_docs": "/somewhere/data_docs/index.html",
            },
        )
        return {**ids, PROGRESS_KEY: str(progress.artifact_id)}

    ids = publish()
    assert set(ids) == {REPORT_KEY, PER_CLASS_KEY, COMPARISON_KEY, PROGRESS_KEY}
    artifacts = read_artifacts(list(ids.values()))

    report = artifacts[REPORT_KEY]
    assert report.type == "markdown"
    assert report.data.count("data:image/png;base64,") == len(plots) == 6
    assert "macro-F1 0.80 does not beat 0.85" in report.data and "/somewhere/data_docs/index.html" in report.data
    assert str(run.resolve()) in report.data and "submission.csv" in report.data

    per_class = json.loads(artifacts[PER_CLASS_KEY].data)
    assert [row["class"] for row in per_class] == COARSE
    assert {"precision", "recall", "f1", "support"} <= set(per_class[0])
    assert sum(row["support"] for row in per_class) == json.loads((run / "metrics.json").read_text())["holdout_size"]

    comparison = json.loads(artifacts[COMPARISON_KEY].data)
    assert [row["model"] for row in comparison][:2] == ["efficientnet_lite0_finetuned", "pixels_random_forest"]
    assert comparison[-1]["model"] == "(majority-class reference)"
    # The UI prints a float's every digit: the tables carry them rounded, as the report shows them.
    scores = [v for row in per_class + comparison for k, v in row.items() if isinstance(v, float)]
    assert scores and all(v == round(v, 3) for v in scores)

    assert artifacts[PROGRESS_KEY].type == "progress" and float(artifacts[PROGRESS_KEY].data) == 100.0
