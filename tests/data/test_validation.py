"""Data validation: a corpus of tiny datasets with exactly one defect each, plus the clean sample.

Each case copies the session's tiny sample (``tiny_sample`` in conftest.py), injects one defect,
runs the real ``validate_dataset`` flow (on the session's test Prefect server) and asserts the
documented outcome: which rule fails with which example, or quarantine plus a warning. Removing
the corresponding check makes the case fail (the assertions name the exact Expectation and the
offending row or file).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.validate import validate_dataset
from tasks.data.dataset import read_samples, unsafe_filename_reason
from tasks.data.taxonomy import FINE_NAMES
from tasks.layout import OutputDir, RunFolder
from tasks.validation.image_scan import read_scan, scan_file, scan_images
from tasks.validation.report import ValidationFailed, ValidationReport
from tasks.validation.settings import ValidationSettings

PUBLIC = "public"

#: Most cases run the flow, on the session's test Prefect server (started once).
pytestmark = pytest.mark.usefixtures("prefect_server")


# --------------------------------------------------------------------------------------------
# Helpers


def read_csv(data: Path, split: str) -> pd.DataFrame:
    return pd.read_csv(data / PUBLIC / f"{split}.csv", dtype=str, keep_default_na=False)


def write_csv(data: Path, split: str, frame: pd.DataFrame) -> None:
    frame.to_csv(data / PUBLIC / f"{split}.csv", index=False)


def image_path(data: Path, split: str, row: int = 0) -> Path:
    return data / PUBLIC / split / read_csv(data, split)["filename"].iloc[row]


def validate(data: Path, tmp_path: Path, **settings: Any) -> ValidationReport:
    """Run the validation flow into a fresh run folder; return the report (failed or not)."""
    output = OutputDir(tmp_path / "out")
    runs = output.runs
    run_dir = runs / f"run-{len(list(runs.glob('*'))) if runs.exists() else 0}"
    try:
        return validate_dataset(data, run_dir, ValidationSettings(**settings), output.image_scan_cache)
    except ValidationFailed as exc:
        assert exc.report is not None and str(exc) == exc.report.failure_message()
        return exc.report


def outcomes(report: ValidationReport) -> list[dict[str, Any]]:
    return json.loads(Path(report.report_path).read_text())["expectations"]


def broken(report: ValidationReport, severity: str | None = None) -> list[dict[str, Any]]:
    return [o for o in outcomes(report) if o["status"] != "passed" and (severity is None or o["severity"] == severity)]


def only_broken(report: ValidationReport, suite: str, expectation: str, column: str | None = None) -> dict:
    """The single broken rule of the report, checked to be the expected one."""
    found = [(o["suite"], o["expectation"], o["column"]) for o in broken(report)]
    assert len(found) == 1, found
    outcome = broken(report)[0]
    assert (outcome["suite"], outcome["expectation"]) == (suite, expectation), found
    if column is not None:
        assert outcome["column"] == column
    return outcome


# --------------------------------------------------------------------------------------------
# Clean data


def test_clean_sample_passes_with_zero_failures(tiny_sample: Path, tmp_path: Path) -> None:
    report = validate(tiny_sample, tmp_path)
    assert report.passed and report.failures == [] and report.warnings == []
    assert broken(report) == []
    assert {s.name for s in report.suites} == {"train_csv", "val_csv", "test_csv", "class_balance", "images"}
    assert report.counts == {"train": 200, "val": 100, "test": 100}
    docs = Path(report.docs_index)
    assert docs.name == "index.html" and "<html" in docs.read_text().lower()
    assert len(list(docs.parent.glob("validations/**/*.html"))) == 5
    summary = Path(report.summary_html).read_text()
    assert summary.count('href="data_docs/validations/') == 5 and "http" not in summary
    samples = read_samples(Path(report.samples_path))
    assert len(samples) == 400 and samples["image_ok"].all()
    assert list(samples.columns) == ["split", "filename", "path", "coarse", "fine", "image_ok", "group"]
    assert report.fallback_prediction["coarse"] == 4  # Magnoliopsida, the largest class
    # A fresh context reading the run's stores still sees the custom Expectations.
    from expectations.context import make_context

    run = RunFolder(report.run_dir)
    context = make_context(run)  # a fresh context
    types = [e.expectation_type for e in context.suites.get("class_balance").expectations]
    assert types.count("expect_column_value_counts_to_be_at_least") == 2
    assert types.count("expect_column_imbalance_ratio_to_be_less_than") == 2
    assert len(types) == 6


# --------------------------------------------------------------------------------------------
# Schema and label defects: critical, the run stops, the message names rule and row


def test_missing_column_fails_the_column_rule(tiny_sample: Path, tmp_path: Path) -> None:
    write_csv(tiny_sample, "train", read_csv(tiny_sample, "train").drop(columns=["fine"]))
    report = validate(tiny_sample, tmp_path)
    assert not report.passed
    columns = [o for o in broken(report) if o["expectation"] == "expect_table_columns_to_match_set"]
    assert [(o["suite"], o["examples"]) for o in columns] == [("train_csv", ["missing column(s): fine"])]
    assert "missing column(s): fine" in report.failure_message()
    # Rules on the absent column are reported as not checkable, never as passed.
    assert all(o["status"] == "error" for o in broken(report) if o["column"] == "fine")
    assert report.samples_path is None and report.scan_path is None  # fail fast: no image scan


@pytest.mark.slow
def test_renamed_column_fails_the_column_rule(tiny_sample: Path, tmp_path: Path) -> None:
    write_csv(tiny_sample, "val", read_csv(tiny_sample, "val").rename(columns={"coarse": "label"}))
    report = validate(tiny_sample, tmp_path)
    columns = [o for o in broken(report) if o["expectation"] == "expect_table_columns_to_match_set"]
    assert [(o["suite"], o["examples"]) for o in columns] == [
        ("val_csv", ["missing column(s): coarse", "unexpected column(s): label"])
    ]
    assert not report.passed


def test_label_out_of_range_names_the_row(tiny_sample: Path, tmp_path: Path) -> None:
    frame = read_csv(tiny_sample, "train")
    frame.loc[2, "coarse"] = "8"  # 8 coarse classes: valid indices are 0..7
    write_csv(tiny_sample, "train", frame)
    report = validate(tiny_sample, tmp_path)
    outcome = only_broken(report, "train_csv", "expect_column_values_to_be_between", "coarse")
    assert outcome["examples"] == [f"row 3 (line 4): filename={frame.loc[2, 'filename']!r}, coarse=8"]
    assert "row 3 (line 4)" in report.failure_message()


@pytest.mark.slow
def test_non_integer_label_names_the_row(tiny_sample: Path, tmp_path: Path) -> None:
    frame = read_csv(tiny_sample, "val")
    frame.loc[4, "fine"] = "2.5"
    write_csv(tiny_sample, "val", frame)
    report = validate(tiny_sample, tmp_path)
    outcome = only_broken(report, "val_csv", "expect_column_values_to_match_regex", "fine")
    assert outcome["examples"] == [f"row 5 (line 6): filename={frame.loc[4, 'filename']!r}, fine='2.5'"]
    assert not report.passed


@pytest.mark.slow
def test_fine_coarse_mismatch_breaks_the_taxonomy(tiny_sample: Path, tmp_path: Path) -> None:
    frame = read_csv(tiny_sample, "train")
    frame.loc[0, "coarse"] = str((int(frame.loc[0, "coarse"]) + 1) % 8)
    write_csv(tiny_sample, "train", frame)
    report = validate(tiny_sample, tmp_path)
    pairs = [o for o in broken(report) if o["expectation"] == "expect_column_pair_values_to_be_equal"]
    # Both consistency rules catch it: the known taxonomy and "one coarse class per family".
    assert {o["column"] for o in pairs} == {"_coarse_in_range,_taxonomy_coarse", "_coarse_in_range,_family_coarse"}
    assert all(o["suite"] == "train_csv" and o["examples"][0].startswith("row 1 (line 2)") for o in pairs)
    assert len(broken(report)) == 2 and not report.passed


@pytest.mark.slow
def test_duplicate_filename_lists_both_rows(tiny_sample: Path, tmp_path: Path) -> None:
    frame = read_csv(tiny_sample, "train")
    frame.loc[1, "filename"] = frame.loc[0, "filename"]
    write_csv(tiny_sample, "train", frame)
    report = validate(tiny_sample, tmp_path)
    outcome = only_broken(report, "train_csv", "expect_column_values_to_be_unique", "filename")
    assert [e.split(":")[0] for e in outcome["examples"]] == ["row 1 (line 2)", "row 2 (line 3)"]


def test_path_traversal_filename_is_rejected(tiny_sample: Path, tmp_path: Path) -> None:
    frame = read_csv(tiny_sample, "train")
    frame.loc[6, "filename"] = "../x.jpg"
    write_csv(tiny_sample, "train", frame)
    report = validate(tiny_sample, tmp_path)
    outcome = only_broken(report, "train_csv", "expect_column_values_to_match_regex", "filename")
    assert outcome["examples"] == ["row 7 (line 8): filename='../x.jpg', (contains a path separator)"]
    assert report.scan_path is None  # the traversal path is never opened


@pytest.mark.slow
def test_empty_csv_fails_the_row_count(tiny_sample: Path, tmp_path: Path) -> None:
    (tiny_sample / PUBLIC / "val.csv").write_text("filename,fine,coarse\n")
    report = validate(tiny_sample, tmp_path)
    critical = broken(report, "critical")
    assert [(o["suite"], o["expectation"], o["observed"]) for o in critical] == [
        ("val_csv", "expect_table_row_count_to_be_between", "0 rows")
    ]
    assert not report.passed


@pytest.mark.slow
def test_bom_and_crlf_csv_is_read_like_any_other(tiny_sample: Path, tmp_path: Path) -> None:
    path = tiny_sample / PUBLIC / "train.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_text().replace("\n", "\r\n").encode())
    report = validate(tiny_sample, tmp_path)
    assert report.passed and broken(report) == []
    samples = read_samples(Path(report.samples_path))
    assert samples.loc[samples["split"] == "train", "filename"].str.fullmatch(r"[0-9a-f]{40}\.jpg").all()


@pytest.mark.slow
def test_test_filename_also_in_train_is_an_overlap(tiny_sample: Path, tmp_path: Path) -> None:
    shared = read_csv(tiny_sample, "train")["filename"].iloc[0]
    test = read_csv(tiny_sample, "test")
    (tiny_sample / PUBLIC / "test" / test.loc[0, "filename"]).rename(tiny_sample / PUBLIC / "test" / shared)
    test.loc[0, "filename"] = shared
    write_csv(tiny_sample, "test", test)
    report = validate(tiny_sample, tmp_path)
    outcome = only_broken(report, "test_csv", "expect_column_values_to_be_null")
    assert outcome["examples"] == [f"row 1 (line 2): filename={shared!r}, also listed in='train'"]
    assert not report.passed


@pytest.mark.slow
def test_unreadable_csv_is_a_failure_not_a_crash(tiny_sample: Path, tmp_path: Path) -> None:
    (tiny_sample / PUBLIC / "test.csv").write_bytes(b"")
    report = validate(tiny_sample, tmp_path)
    assert not report.passed and "test.csv: the file is empty" in report.failures[0]


# --------------------------------------------------------------------------------------------
# Confined reads: an image (or CSV, info.json, split folder) that is a link out of public/ is a
# critical failure found before the scan list is written, so no such file is ever opened


def link_image_to(data: Path, split: str, row: int, target: Path) -> Path:
    """Replace one listed image by a symlink to ``target``; return the link."""
    path = image_path(data, split, row)
    path.unlink()
    path.symlink_to(target)
    return path


def only_outside(report: ValidationReport, suite: str) -> dict[str, Any]:
    outcome = only_broken(report, suite, "expect_column_values_to_be_null", "resolves outside public/ to")
    assert outcome["severity"] == "critical" and not report.passed
    assert report.scan_path is None and report.samples_path is None  # nothing was scanned or loaded
    assert report.quarantined == 0
    return outcome


def test_image_linked_to_a_file_outside_public_fails(tiny_sample: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "photo.jpg"
    elsewhere.parent.mkdir()
    shutil.copyfile(image_path(tiny_sample, "train", 0), elsewhere)
    link = link_image_to(tiny_sample, "train", 3, elsewhere)
    report = validate(tiny_sample, tmp_path)
    outcome = only_outside(report, "train_csv")
    assert outcome["examples"] == [
        f"row 4 (line 5): filename={link.name!r}, resolves outside public/ to={str(elsewhere)!r}"
    ]
    message = report.failure_message()
    assert "train.csv" in message and "row 4 (line 5)" in message and str(elsewhere) in message


@pytest.mark.slow
def test_image_linked_to_etc_passwd_fails(tiny_sample: Path, tmp_path: Path) -> None:
    link = link_image_to(tiny_sample, "test", 0, Path("/etc/passwd"))
    report = validate(tiny_sample, tmp_path)
    outcome = only_outside(report, "test_csv")
    assert outcome["examples"] == [f"row 1 (line 2): filename={link.name!r}, resolves outside public/ to='/etc/passwd'"]
    assert "test.csv" in report.failure_message() and "/etc/passwd" in report.failure_message()


@pytest.mark.slow
def test_split_folder_linked_elsewhere_fails(tiny_sample: Path, tmp_path: Path) -> None:
    moved = tmp_path / "val-elsewhere"
    (tiny_sample / PUBLIC / "val").rename(moved)
    (tiny_sample / PUBLIC / "val").symlink_to(moved, target_is_directory=True)
    report = validate(tiny_sample, tmp_path)
    outcome = only_outside(report, "val_csv")
    assert outcome["unexpected_count"] == 100 and outcome["element_count"] == 100
    first = read_csv(tiny_sample, "val")["filename"].iloc[0]
    assert (
        outcome["examples"][0]
        == f"row 1 (line 2): filename={first!r}, resolves outside public/ to={str(moved / first)!r}"
    )


@pytest.mark.slow
def test_csv_or_info_json_linked_outside_public_fails(tiny_sample: Path, tmp_path: Path) -> None:
    outside = tmp_path / "info-elsewhere.json"
    shutil.copyfile(tiny_sample / PUBLIC / "info.json", outside)
    (tiny_sample / PUBLIC / "info.json").unlink()
    (tiny_sample / PUBLIC / "info.json").symlink_to(outside)
    report = validate(tiny_sample, tmp_path)
    assert not report.passed and report.scan_path is None
    assert len(report.failures) == 1 and "[layout]" in report.failures[0]
    assert "info.json resolves to " + str(outside) in report.failures[0]


@pytest.mark.slow
def test_links_that_stay_inside_public_are_fine(tiny_sample: Path, tmp_path: Path) -> None:
    """A train image linked to a test image, a relative link, and public/ itself a link: all inside."""
    link_image_to(tiny_sample, "train", 3, image_path(tiny_sample, "test", 5))
    link_image_to(tiny_sample, "val", 2, Path("..") / "train" / read_csv(tiny_sample, "train")["filename"].iloc[0])
    real_public = tmp_path / "storage" / "public"
    real_public.parent.mkdir()
    (tiny_sample / PUBLIC).rename(real_public)
    (tiny_sample / PUBLIC).symlink_to(real_public, target_is_directory=True)
    report = validate(tiny_sample, tmp_path)
    assert report.passed and report.failures == [] and broken(report) == []
    assert len(read_samples(Path(report.samples_path))) == 400


# --------------------------------------------------------------------------------------------
# Image defects: quarantine plus a warning (train/val), flag plus fallback (test)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("defect", "expectation", "column", "reason"),
    [
        ("missing", "expect_column_values_to_be_in_set", "exists", "file not found"),
        ("zero-byte", "expect_column_values_to_be_between", "size_bytes", "empty file (0 bytes)"),
        # Pillow says "image file is truncated" or "Truncated File Read", depending on where the cut falls.
        ("truncated", "expect_column_values_to_be_in_set", "decodes", "truncated"),
        ("text", "expect_column_values_to_be_in_set", "decodes", "not an image Pillow can identify"),
    ],
)
def test_bad_training_image_is_quarantined_with_a_warning(
    tiny_sample: Path, tmp_path: Path, defect: str, expectation: str, column: str, reason: str
) -> None:
    path = image_path(tiny_sample, "train", 3)
    damage_image(path, defect)
    report = validate(tiny_sample, tmp_path)
    assert report.passed and report.quarantined == 1 and report.failures == []
    outcome = only_broken(report, "images", expectation, column)
    assert outcome["severity"] == "warning" and outcome["examples"][0].startswith(f"train/{path.name}")
    assert reason.lower() in outcome["examples"][0].lower()
    assert any("Quarantined 1 of 300" in w and path.name in w and reason.lower() in w.lower() for w in report.warnings)
    samples = read_samples(Path(report.samples_path))
    assert path.name not in set(samples["filename"]) and len(samples) == 399
    quarantine = pd.read_csv(report.quarantine_path)
    assert quarantine["filename"].tolist() == [path.name] and reason.lower() in quarantine["reason"].iloc[0].lower()


@pytest.mark.slow
def test_undecodable_test_image_keeps_its_row_with_the_fallback(tiny_sample: Path, tmp_path: Path) -> None:
    path = image_path(tiny_sample, "test", 0)
    damage_image(path, "truncated")
    report = validate(tiny_sample, tmp_path)
    assert report.passed and report.quarantined == 0 and report.flagged_test == 1
    samples = read_samples(Path(report.samples_path))
    row = samples[samples["filename"] == path.name]
    assert len(row) == 1 and not row["image_ok"].iloc[0] and len(samples) == 400
    assert any("fallback prediction" in w and path.name in w for w in report.warnings)


@pytest.mark.slow
def test_too_many_bad_images_fail_validation(tiny_sample: Path, tmp_path: Path) -> None:
    for row in range(4):  # 4 of 300 train+val images = 1.3% > 1%
        damage_image(image_path(tiny_sample, "train", row), "text")
    report = validate(tiny_sample, tmp_path)
    assert not report.passed and report.samples_path is None
    critical = broken(report, "critical")
    assert [(o["suite"], o["column"]) for o in critical] == [("images", "usable")]
    assert "at most 1.00% of train+val images are unusable" in report.failure_message()
    # the same data passes with a looser policy
    assert validate(tiny_sample, tmp_path, max_bad_image_fraction=0.02).passed


def damage_image(path: Path, defect: str) -> None:
    if defect == "missing":
        path.unlink()
    elif defect == "zero-byte":
        path.write_bytes(b"")
    elif defect == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif defect == "text":
        path.write_text("this is not a JPEG\n")
    else:
        raise ValueError(defect)


# --------------------------------------------------------------------------------------------
# Class balance: warnings, the run continues


@pytest.mark.slow
def test_absent_class_is_a_warning(tiny_sample: Path, tmp_path: Path) -> None:
    fine = FINE_NAMES.index("Colubridae")  # the only family of Reptilia
    for split in ("train", "val"):
        frame = read_csv(tiny_sample, split)
        write_csv(tiny_sample, split, frame[frame["fine"] != str(fine)])
    report = validate(tiny_sample, tmp_path)
    assert report.passed and report.failures == []
    counts = [o for o in broken(report) if o["expectation"] == "expect_column_value_counts_to_be_at_least"]
    assert sorted((o["column"], o["examples"][0]) for o in counts) == [
        ("coarse_name", "Reptilia: 0"),
        ("fine_name", "Colubridae: 0"),
    ]
    assert all(o["severity"] == "warning" for o in broken(report))
    assert len(broken(report)) == 2


@pytest.mark.slow
def test_extreme_imbalance_is_a_warning(tiny_sample: Path, tmp_path: Path) -> None:
    frame = read_csv(tiny_sample, "train")
    fine = FINE_NAMES.index("Sciuridae")  # the only family of Mammalia
    source = frame[frame["fine"] == str(fine)].iloc[0]
    extra = []
    for i in range(400):
        name = f"{i:040x}.jpg"
        shutil.copyfile(tiny_sample / PUBLIC / "train" / source["filename"], tiny_sample / PUBLIC / "train" / name)
        extra.append({"filename": name, "fine": source["fine"], "coarse": source["coarse"]})
    write_csv(tiny_sample, "train", pd.concat([frame, pd.DataFrame(extra)], ignore_index=True))
    report = validate(tiny_sample, tmp_path)
    assert report.passed and report.failures == []
    ratios = {
        o["column"]: o for o in broken(report) if o["expectation"] == "expect_column_imbalance_ratio_to_be_less_than"
    }
    assert set(ratios) == {"coarse_name", "fine_name"}
    example = ratios["fine_name"]["examples"][0]
    assert example.startswith("largest Sciuridae: 406, smallest ") and example.endswith(": 6")
    assert ratios["coarse_name"]["observed"] == f"ratio {round(406 / 6, 4)}"
    kl = [o for o in broken(report) if o["expectation"] == "expect_column_kl_divergence_to_be_less_than"]
    assert {o["column"] for o in kl} == {"coarse_name", "fine_name"}  # drift from the known distribution
    assert all(o["severity"] == "warning" for o in broken(report)) and len(broken(report)) == 4


@pytest.mark.slow
def test_previous_reference_compares_with_the_last_validated_run(tiny_sample: Path, tmp_path: Path) -> None:
    first = validate(tiny_sample, tmp_path, reference="previous")
    assert first.passed and "known" in first.reference
    assert any("no earlier validated run" in w for w in first.warnings)
    second = validate(tiny_sample, tmp_path, reference="previous")
    assert second.reference == f"previous run {Path(first.run_dir).name}" and second.warnings == []


# --------------------------------------------------------------------------------------------
# Rules and the image scan itself


@pytest.mark.parametrize(
    "name",
    [
        "a.jpg",
        "0f.jpg",
        "x y.jpg",
        "../x.jpg",
        "..",
        ".",
        "a/b.jpg",
        "a\\b.jpg",
        " a.jpg",
        "a.jpg ",
        "a.jpg\n",
        "a\x00.jpg",
        "..hidden",
        ".hidden",
        "résumé.jpg",
    ],
)
def test_filename_pattern_agrees_with_the_loader(name: str) -> None:
    from expectations.suites import SAFE_FILENAME_REGEX

    assert (re.search(SAFE_FILENAME_REGEX, name) is not None) == (unsafe_filename_reason(name) is None)


def test_scan_detects_each_kind_of_bad_file(tiny_sample: Path) -> None:
    path = image_path(tiny_sample, "train", 0)
    good = scan_file(str(path), path.stat().st_size)
    assert good["decodes"] is True and good["format"] == "JPEG" and good["width"] >= 48
    path.write_bytes(path.read_bytes()[:-200])
    assert scan_file(str(path), path.stat().st_size)["decodes"] is False
    assert scan_file(str(path), 0)["decodes"] is None
    bomb = scan_file(str(image_path(tiny_sample, "train", 1)), 10, max_pixels=100)
    assert bomb["decodes"] is None and bomb["error"].startswith("decompression bomb")


def test_scan_list_never_lists_a_file_outside_public(tiny_sample: Path, tmp_path: Path) -> None:
    """The list the scan opens is written only from checked tables (a second line of defence)."""
    from tasks.data.dataset import OUTSIDE_PUBLIC, DatasetError
    from tasks.validation.tables import write_scan_list

    table = read_csv(tiny_sample, "train").head(3).assign(**{OUTSIDE_PUBLIC: [None, "/etc/passwd", None]})
    with pytest.raises(DatasetError, match=r"train\.csv lists 1 image\(s\) outside .*/etc/passwd"):
        write_scan_list(tiny_sample, {"train": table}, tmp_path / "list.csv")
    assert not (tmp_path / "list.csv").exists()


def test_scan_cache_reuses_unchanged_files_only(tiny_sample: Path, tmp_path: Path) -> None:
    files = sorted((tiny_sample / PUBLIC / "train").iterdir())[:30]
    listing = tmp_path / "list.csv"
    pd.DataFrame({"split": "train", "filename": [f.name for f in files], "path": [str(f) for f in files]}).to_csv(
        listing, index=False
    )
    cold = scan_images(listing, tmp_path / "scan.csv", tmp_path / "cache", workers=2)
    assert (cold.total, cold.scanned, cold.cached) == (30, 30, 0)
    damage_image(files[0], "truncated")  # size and mtime change -> fingerprint changes
    warm = scan_images(listing, tmp_path / "scan.csv", tmp_path / "cache", workers=2)
    assert (warm.scanned, warm.cached, warm.bad) == (1, 29, 1)
    table = read_scan(tmp_path / "scan.csv")
    assert table["filename"].tolist() == [f.name for f in files]  # list order
    assert table.loc[0, "decodes"] is False and table.loc[1:, "decodes"].map(lambda v: v is True).all()


# --------------------------------------------------------------------------------------------
# The flow and its command line


@pytest.mark.slow
def test_validate_command_passes_then_fails_without_touching_the_earlier_run(
    tiny_sample: Path, tmp_path: Path, prefect_server: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.validate import main

    out = tmp_path / "outputs"
    assert main(["--data-dir", str(tiny_sample), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    docs = Path(re.search(r"Data Docs:\s+(\S+)", printed).group(1))
    assert docs.is_file() and docs.parent.parent.name == "validation"
    first_run = docs.parent.parent.parent
    before = {p: p.stat().st_mtime_ns for p in first_run.rglob("*") if p.is_file()}

    frame = read_csv(tiny_sample, "train")
    frame.loc[6, "filename"] = "../x.jpg"
    write_csv(tiny_sample, "train", frame)
    assert main(["--data-dir", str(tiny_sample), "--output-dir", str(out), "--min-class-count", "3"]) == 1
    message = capsys.readouterr().err
    assert "[train_csv]" in message and "'../x.jpg'" in message and "row 7 (line 8)" in message
    assert {p: p.stat().st_mtime_ns for p in first_run.rglob("*") if p.is_file()} == before
    assert len(list((out / "runs").iterdir())) == 2

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
    markdown = [a for a in artifact if a.key == "validation-report"]
    assert markdown and "Data validation FAILED" in markdown[0].data


def test_scan_never_accepts_truncated_images_even_if_the_process_does(
    tiny_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFile

    path = image_path(tiny_sample, "train", 0)
    damage_image(path, "truncated")
    listing = tmp_path / "list.csv"
    pd.DataFrame({"split": ["train"], "filename": [path.name], "path": [str(path)]}).to_csv(listing, index=False)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    summary = scan_images(listing, tmp_path / "scan.csv", tmp_path / "cache", workers=1)
    assert summary.executor == "process" and summary.bad == 1


# --------------------------------------------------------------------------------------------
# Nothing is ever written into the data directory: an output dir inside it is refused


def output_inside(data: Path, tmp_path: Path, how: str) -> tuple[Path, Path]:
    """(data dir as given, output dir as given) with the output inside the data, spelled ``how``."""
    if how == "plainly":
        return data, data / "outputs"
    if how == "through a link to the data":
        (tmp_path / "data-link").symlink_to(data, target_is_directory=True)
        return data, tmp_path / "data-link" / "public" / "outputs"
    if how == "data given through a link":
        (tmp_path / "data-link").symlink_to(data, target_is_directory=True)
        return tmp_path / "data-link", data / "outputs"
    if how == "the data dir itself":
        return data, data
    raise ValueError(how)


HOW = ["plainly", "through a link to the data", "data given through a link", "the data dir itself"]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("how", HOW)
def test_validate_command_refuses_an_output_dir_inside_the_data_dir(
    tiny_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    from flows.validate import main

    data, out = output_inside(tiny_sample, tmp_path, how)
    before = listing(tiny_sample)
    assert main(["--data-dir", str(data), "--output-dir", str(out)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "inside the data directory" in lines[0] and str(out) in lines[0]
    assert listing(tiny_sample) == before  # nothing created


@pytest.mark.parametrize("how", HOW)
def test_full_command_refuses_an_output_dir_inside_the_data_dir(
    tiny_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    import flows.full

    started: list[bool] = []
    monkeypatch.setattr(flows.full, "full_pipeline", lambda *a, **k: started.append(True))
    data, out = output_inside(tiny_sample, tmp_path, how)
    before = listing(tiny_sample)
    with pytest.raises(SystemExit) as exit_:
        flows.full.main(["--data-dir", str(data), "--output-dir", str(out)])
    assert exit_.value.code == 1 and started == []
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "inside the data directory" in lines[0]
    assert listing(tiny_sample) == before


def test_ui_triggered_run_refuses_an_output_dir_inside_the_data_dir(
    tiny_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow itself checks (a deployment's parameters never pass through main())."""
    import flows.full
    from flows.params import PipelineParams
    from tasks.data.dataset import DatasetError
    from tasks.data.settings import DataSettings

    def work(*_: Any, **__: Any) -> Any:
        raise AssertionError("the flow started work inside the data directory")

    monkeypatch.setattr(flows.full, "validate_or_reuse", work)
    data, out = output_inside(tiny_sample, tmp_path, "through a link to the data")
    before = listing(tiny_sample)
    with pytest.raises(DatasetError, match="inside the data directory"):
        flows.full.full_pipeline(PipelineParams(data=DataSettings(data_dir=data, output_dir=out)))
    assert listing(tiny_sample) == before


def test_validation_stage_refuses_a_run_folder_inside_the_data_dir(tiny_sample: Path) -> None:
    """The validation stage checks too, for every flow that runs it (the standalone validate flow)."""
    from tasks.data.dataset import DatasetError
    from tasks.validation.stages import validate_csvs

    run = RunFolder(tiny_sample / "public" / "runs" / "x")
    with pytest.raises(DatasetError, match="inside the data directory"):
        validate_csvs(tiny_sample, run.validation, ValidationSettings())
    assert not run.validation.exists()
