"""The parts of test_caching.py that need a Prefect server (moved out of tests/unit, which starts none)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flows.validate import validate_dataset
from flows.validation_reuse import remember_validation, reuse_validation, validation_key
from tasks.layout import OutputDir
from tasks.validation.report import ValidationReport
from tasks.validation.settings import ValidationSettings


def test_validation_is_reused_only_for_identical_data(tiny_sample: Path, tmp_path: Path, prefect_server: None) -> None:
    settings = ValidationSettings()
    cache = tmp_path / "cache"
    first_run = OutputDir(tmp_path / "out").new_run().root
    key = validation_key(tiny_sample, settings)
    report = validate_dataset(tiny_sample, first_run, settings, OutputDir(tmp_path).image_scan_cache)
    remember_validation(report, cache, key)

    second_run = OutputDir(tmp_path / "out").new_run().root
    reused = reuse_validation(cache, validation_key(tiny_sample, settings), second_run, ValidationReport)
    assert isinstance(reused, ValidationReport) and reused.passed
    assert reused.samples_path == str(second_run / "validation" / "samples.csv")
    assert Path(reused.samples_path).read_bytes() == Path(str(report.samples_path)).read_bytes()
    assert str(first_run) not in json.dumps(reused.model_dump())
    assert Path(str(reused.docs_index)).is_file()

    # Any change to what validation looks at gives another key: an image, a CSV, a setting.
    image = next((tiny_sample / "public" / "train").iterdir())
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    assert validation_key(tiny_sample, settings) != key
    assert validation_key(tiny_sample, settings.model_copy(update={"min_class_count": 1})) != validation_key(
        tiny_sample, settings
    )
    assert validation_key(tiny_sample, settings.model_copy(update={"reference": "previous"})) is None
