"""The report says what it measured: data source and size, key settings, the published stage."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.data.splitting import read_table
from tasks.layout import RunFolder
from tasks.results.provenance import SYNTHETIC_CAVEAT, provenance_lines, run_provenance
from tasks.results.report import build_run_report
from tests.helpers import write_fake_run


def test_report_states_source_size_settings_and_the_synthetic_caveat(tmp_path: Path) -> None:
    run = RunFolder(write_fake_run(tmp_path / "run", tmp_path / "data"))
    table = read_table(run.table)
    history = json.loads(run.training_history.read_text())
    run.training_history.write_text(
        json.dumps({**history, "published": "m_head", "reason": "fine-tuning did not help"})
    )
    settings = {"target": "coarse", "seed": 7, "backbone": "efficientnet_lite0 at 224 px"}
    record = run_provenance(table, run, tmp_path / "data", True, settings)
    counts = table["role"].value_counts()
    assert record["images"] == {role: int(counts.get(role, 0)) for role in ("train", "holdout", "test")}
    text = "\n".join(provenance_lines(record))
    assert "embedded synthetic sample" in text and SYNTHETIC_CAVEAT in text
    assert f"{record['images']['holdout']:,} hold-out" in text and "seed 7" in text
    assert "published: m_head (fine-tuning did not help)" in text
    markdown = build_run_report(run.root, {}, {"provenance": record})
    assert "## What was measured" in markdown and "say nothing about accuracy on real photos" in markdown


def test_a_real_data_dir_gets_no_synthetic_caveat(tmp_path: Path) -> None:
    run = RunFolder(write_fake_run(tmp_path / "run", tmp_path / "data"))
    record = run_provenance(read_table(run.table), run, tmp_path / "data", False, {"seed": 1})
    text = "\n".join(provenance_lines(record))
    assert "data directory" in text and "caveat" not in record and "real photos" not in text
