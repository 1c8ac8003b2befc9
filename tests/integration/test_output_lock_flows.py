"""The parts of test_output_lock.py that need a Prefect server (moved out of tests/unit, which starts none)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from tasks.layout import OutputDir
from tasks.lock import OutputDirBusy, output_dir_lock
from tests.unit.test_output_lock import holder


@pytest.mark.slow
def test_the_flows_take_the_lock_themselves(
    prefect_server: None, tiny_sample: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A UI or scheduled run calls the flow, not main(): full_pipeline with wait off fails naming
    the holder; validate waits for it (one log line) and then runs; the record names the flow run."""
    from prefect import flow

    from flows.full import full_pipeline
    from flows.params import PipelineParams, RuntimeSettings
    from flows.validate import ValidateParams, validate
    from tasks.data.settings import DataSettings

    out = tmp_path / "out"
    data = DataSettings(data_dir=tiny_sample, output_dir=out)
    params = ValidateParams(data=data)
    with holder(out) as process:
        with pytest.raises(OutputDirBusy, match=f"pid {process.pid} on host"):
            full_pipeline(PipelineParams(data=data, runtime=RuntimeSettings(wait=False)))
        assert not OutputDir(out).runs.exists()  # it stopped before writing anything

        outcome: dict[str, object] = {}
        thread = threading.Thread(target=lambda: outcome.update(report=validate(params)))
        prefect_logger = logging.getLogger("prefect")
        prefect_logger.addHandler(caplog.handler)
        try:
            thread.start()
            deadline = time.monotonic() + 60
            while "Waiting for the output directory" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            prefect_logger.removeHandler(caplog.handler)
        assert f"Waiting for the output directory {OutputDir(out).root}: it is in use by pid {process.pid}" in (
            caplog.text
        )
        assert thread.is_alive() and not OutputDir(out).runs.exists()
    thread.join(timeout=180)
    assert getattr(outcome.get("report"), "passed", False) is True
    assert OutputDir(out).lock.read_text() == ""

    @flow(name="lock-record-probe")
    def probe() -> dict[str, str]:
        with output_dir_lock(out, wait=False):
            return json.loads(OutputDir(out).lock.read_text())

    record = probe()
    assert record["flow"] == "lock-record-probe" and record["flow_run"] and record["flow_run_id"]
