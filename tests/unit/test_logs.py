"""File names from the data or from prediction inputs reach the console escaped: a newline cannot
forge a log line, an escape sequence cannot repaint the terminal."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

# Imported at collection: importing Prefect for the first time inside a test reconfigures logging and
# drops the handler caplog installed for that test.
from flows.failures import input_failure
from flows.predict import format_summary
from flows.validate import format_report
from tasks.logs import printable, printable_lines
from tasks.predict.inputs import InputError
from tasks.predict.output import PredictionSummary
from tasks.validation.gx_results import describe_outcome
from tasks.validation.report import ValidationFailed, ValidationReport
from tasks.validation.stages import _file_examples

#: A file name a dataset or a folder of photos may hold (POSIX allows both).
NASTY = "bad\nname\x1b[31m.jpg"
ESCAPED = "bad\\nname\\x1b[31m.jpg"


def test_printable_escapes_control_characters_like_repr_without_quotes() -> None:
    assert printable(NASTY) == ESCAPED
    assert printable("tab\there\r\x00\x7f") == "tab\\there\\r\\x00\\x7f"
    assert printable("Blüte 日本 'quoted' \\ plain.jpg") == "Blüte 日本 'quoted' \\ plain.jpg"  # kept as is
    assert printable_lines(f"first\n  - {printable(NASTY)}") == f"first\n  - {ESCAPED}"
    assert printable_lines("a\x1bb\nc") == "a\\x1bb\nc"


def test_an_input_error_naming_such_a_file_is_logged_escaped(caplog: pytest.LogCaptureFixture) -> None:

    with caplog.at_level(logging.ERROR):
        state = input_failure(InputError(f"/photos/{NASTY} cannot be read"))
    (record,) = caplog.records
    assert ESCAPED in record.getMessage() and "\x1b" not in record.getMessage() and "\n" not in record.getMessage()
    assert ESCAPED in str(state.message)


def test_a_validation_failure_keeps_one_rule_a_line(caplog: pytest.LogCaptureFixture) -> None:

    with caplog.at_level(logging.ERROR):
        input_failure(
            ValidationFailed(f"Data validation failed: 1 rule(s) broken\n  - [images] decodes: e.g. {ESCAPED}\x1b")
        )
    (record,) = caplog.records
    assert record.getMessage().endswith(f"broken\n  - [images] decodes: e.g. {ESCAPED}\\x1b")


def test_quarantine_and_validation_examples_are_escaped() -> None:

    bad = pd.DataFrame({"split": ["train"], "filename": [NASTY], "reason": ["not an image"]})
    assert _file_examples(bad, 5) == [f"train/{ESCAPED}: not an image"]
    outcome = {
        "suite": "images",
        "rule": "every image decodes",
        "status": "failed",
        "examples": [f"test/{NASTY}: truncated"],
        "unexpected_count": 1,
        "element_count": 10,
    }
    assert describe_outcome(outcome).endswith(f"e.g. test/{ESCAPED}: truncated")


def test_the_predict_summary_and_the_validate_report_print_names_escaped() -> None:

    summary = PredictionSummary(
        source="champion",
        folder="/out/model",
        model="m",
        run="r",
        prediction_dir="/out",
        predictions_path="/out/predictions.csv",
        inputs="images",
        images=2,
        unreadable=1,
        class_counts={"Insecta": 1},
        class_names=["Insecta"],
        gallery="/out/gallery.png",
        unreadable_examples=[f"{NASTY}: not an image Pillow can identify"],
    )
    text = format_summary(summary)
    assert f"not used:   {ESCAPED}: not an image" in text and "\x1b" not in text
    report = ValidationReport.model_construct(
        counts={"train": 1}, warnings=[f"Quarantined 1 of 2 images: train/{NASTY}: empty"], docs_index="d"
    )
    report = report.model_copy(update={"summary_html": "s", "report_path": "r", "samples_path": "p"})
    printed = format_report(report)
    assert f"train/{ESCAPED}: empty" in printed and "\x1b" not in printed
