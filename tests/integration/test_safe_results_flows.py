"""The parts of test_safe_results.py that need a Prefect server (moved out of tests/unit, which starts none)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.result_records import (
    result_record_problem,
)
from tasks.layout import OutputDir
from tests.unit.test_safe_results import DAMAGED, calls, run_tiny, warnings_seen


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["pickle", "truncated"])
def test_a_planted_result_is_recomputed_not_decoded(
    damage: str, prefect_server: None, tmp_path: Path, warnings_seen: list[str]
) -> None:
    out, marker = tmp_path / "out", tmp_path / "marker"
    out.mkdir()
    first = run_tiny(out)
    records = list(OutputDir(out).prefect_results.glob("tiny-step-*"))
    assert len(records) == 1 and result_record_problem(records[0].read_bytes()) is None
    assert run_tiny(out) == first and calls(out) == 1  # a warm rerun is served from the record

    records[0].write_bytes(DAMAGED[damage](marker))
    warnings_seen.clear()
    assert run_tiny(out) == first
    assert not marker.exists()
    assert calls(out) == 2  # recomputed: a cache miss, not an error
    assert [w for w in warnings_seen if str(records[0]) in w] == warnings_seen and len(warnings_seen) == 1
    assert result_record_problem(records[0].read_bytes()) is None  # rewritten as plain JSON
