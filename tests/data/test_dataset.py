"""Reading a Kaggle-layout data directory: label order, placeholders, path safety, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tasks.data.dataset import DatasetError, check_data_dir, load_samples, read_samples, write_samples
from tasks.data.taxonomy import COARSE_NAMES, FINE_NAMES


def write_csv(data_dir: Path, split: str, text: str) -> Path:
    path = data_dir / "public" / f"{split}.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_class_names_keep_info_json_order_not_alphabetical(tiny_sample: Path) -> None:
    samples, classes = load_samples(tiny_sample)
    assert classes.coarse == COARSE_NAMES
    assert classes.fine == FINE_NAMES
    assert list(classes.coarse) != sorted(classes.coarse)  # the trap the original project fell into
    # A row labelled 4 is a Magnoliopsida (info.json index 4), whatever the alphabet says.
    assert classes.names("coarse")[4] == "Magnoliopsida"
    train_csv = pd.read_csv(tiny_sample / "public" / "train.csv", dtype=str)
    first = samples[(samples["split"] == "train")].iloc[0]
    assert int(first["coarse"]) == int(train_csv.loc[0, "coarse"])
    assert int(first["fine"]) == int(train_csv.loc[0, "fine"])


def test_custom_info_json_order_is_respected(tiny_sample: Path) -> None:
    info = {"coarse": list(reversed(COARSE_NAMES)), "fine": list(FINE_NAMES)}
    (tiny_sample / "public" / "info.json").write_text(json.dumps(info), encoding="utf-8")
    _, classes = load_samples(tiny_sample)
    assert classes.coarse[0] == "Pinopsida"


def test_table_has_absolute_paths_and_test_rows_have_no_labels(tiny_sample: Path) -> None:
    samples, _ = load_samples(tiny_sample)
    assert set(samples["split"]) == {"train", "val", "test"}
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in samples["path"])
    test = samples[samples["split"] == "test"]
    assert len(test) == len(pd.read_csv(tiny_sample / "public" / "test.csv"))
    assert test["coarse"].isna().all() and test["fine"].isna().all()
    labelled = samples[samples["split"] != "test"]
    assert labelled["coarse"].notna().all() and str(labelled["coarse"].dtype) == "Int64"


def test_sample_table_round_trips_through_csv(tiny_sample: Path, tmp_path: Path) -> None:
    samples, _ = load_samples(tiny_sample)
    back = read_samples(write_samples(samples, tmp_path / "samples.csv"))
    pd.testing.assert_frame_equal(back, samples.reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize(
    ("bad_name", "reason"),
    [
        ("../x.jpg", "path separator"),
        ("..", "relative path"),
        ("/etc/passwd", "path separator"),
        ("sub\\x.jpg", "path separator"),
        ("", "empty"),
    ],
)
def test_unsafe_filename_is_rejected_naming_csv_row_and_value(tiny_sample: Path, bad_name: str, reason: str) -> None:
    csv = tiny_sample / "public" / "train.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    lines[3] = ",".join([bad_name] + lines[3].split(",")[1:])  # data row 3
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        load_samples(tiny_sample)
    message = str(err.value)
    assert "train.csv" in message and "row 3" in message and reason in message
    assert repr(bad_name) in message


def test_label_out_of_range_names_the_row(tiny_sample: Path) -> None:
    write_csv(tiny_sample, "val", "filename,fine,coarse\n" + "a" * 40 + ".jpg,3,8\n")
    with pytest.raises(DatasetError, match=r"val\.csv: row 1 \(line 2\): '8' in column 'coarse'"):
        load_samples(tiny_sample)


def test_non_integer_label_is_rejected(tiny_sample: Path) -> None:
    write_csv(tiny_sample, "val", "filename,fine,coarse\n" + "b" * 40 + ".jpg,2.5,0\n")
    with pytest.raises(DatasetError, match="'2.5' in column 'fine' is not an integer"):
        load_samples(tiny_sample)


def test_missing_column_is_named(tiny_sample: Path) -> None:
    write_csv(tiny_sample, "train", "filename,fine\n" + "c" * 40 + ".jpg,2\n")
    with pytest.raises(DatasetError, match="missing column.*coarse"):
        load_samples(tiny_sample)


def test_bom_and_crlf_csv_is_read(tiny_sample: Path) -> None:
    csv = tiny_sample / "public" / "val.csv"
    text = csv.read_text(encoding="utf-8")
    csv.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    samples, _ = load_samples(tiny_sample)
    val = samples[samples["split"] == "val"]
    assert len(val) == len(text.strip().splitlines()) - 1
    assert not val["filename"].str.contains("\r").any()


def test_missing_data_dir_fails_with_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as err:
        check_data_dir(tmp_path / "nope")
    assert "\n" not in str(err.value)


def test_incomplete_layout_names_missing_files(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    with pytest.raises(DatasetError, match="info.json"):
        check_data_dir(tmp_path)
