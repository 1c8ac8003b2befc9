"""Cross-run cache keys and validation reuse: same inputs hit, any change misses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flows.caching import (
    adopt_outputs,
    fingerprint_inputs,
    module_source_hash,
    remember_validation,
    reuse_validation,
    step_dir,
    validation_key,
)
from tasks.layout import new_run_dir
from tasks.validation import ValidationReport, ValidationSettings, run_validation


def test_keys_follow_file_contents_not_paths(tmp_path: Path) -> None:
    a, b = tmp_path / "run1" / "table.csv", tmp_path / "run2" / "table.csv"
    for path in (a, b):
        path.parent.mkdir()
        path.write_text("split,filename\ntrain,x.jpg\n")
    assert fingerprint_inputs({"table": a, "size": 48}) == fingerprint_inputs({"table": b, "size": 48})
    assert fingerprint_inputs({"table": a, "size": 48}) != fingerprint_inputs({"table": a, "size": 64})
    b.write_text("split,filename\ntrain,y.jpg\n")
    assert fingerprint_inputs({"table": a}) != fingerprint_inputs({"table": b})
    assert fingerprint_inputs({"table": a, "run_dir": "r1"}, ignore=("run_dir",)) == fingerprint_inputs(
        {"table": a, "run_dir": "r2"}, ignore=("run_dir",)
    )
    assert step_dir(tmp_path, "s", ("tasks.io",), x=1) == step_dir(tmp_path, "s", ("tasks.io",), x=1)
    assert step_dir(tmp_path, "s", ("tasks.io",), x=1) != step_dir(tmp_path, "s", ("tasks.data.sample",), x=1)


def test_source_hash_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from flows.caching import module_source_hash, VALIDATION_MODULES; "
        "from flows.full import TRANSFER_MODULES; module_source_hash(VALIDATION_MODULES + TRANSFER_MODULES); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'great_expectations') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert module_source_hash(("tasks.io",)) != module_source_hash(("tasks.data.sample",))


def test_validation_is_reused_only_for_identical_data(tiny_sample: Path, tmp_path: Path) -> None:
    settings = ValidationSettings()
    cache = tmp_path / "cache"
    first_run = new_run_dir(tmp_path / "out")
    key = validation_key(tiny_sample, settings)
    report = run_validation(tiny_sample, first_run, settings, cache)
    remember_validation(report, cache, key)

    second_run = new_run_dir(tmp_path / "out")
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
    assert validation_key(tiny_sample, settings.model_copy(update={"min_class_count": 1})) != validation_key(tiny_sample, settings)
    assert validation_key(tiny_sample, settings.model_copy(update={"reference": "previous"})) is None


def test_adopted_outputs_are_copies_except_models(tmp_path: Path) -> None:
    source = tmp_path / "step"
    (source / "predictions").mkdir(parents=True)
    (source / "models").mkdir()
    (source / "predictions" / "m.csv").write_text("filename,pred\n")
    (source / "models" / "m.joblib").write_bytes(b"model")
    run = tmp_path / "run"
    adopt_outputs(source, run)
    assert (run / "predictions" / "m.csv").read_text() == "filename,pred\n"
    assert not (run / "predictions" / "m.csv").samefile(source / "predictions" / "m.csv")
    assert (run / "models" / "m.joblib").read_bytes() == b"model"
