"""Reading a Kaggle-layout data directory: label order, placeholders, path safety, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tasks.data.dataset import (
    DatasetError,
    check_data_dir,
    check_output_outside,
    data_fingerprint,
    load_samples,
    read_samples,
    write_samples,
)
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


# --------------------------------------------------------------------------------------------
# Confined reads: nothing outside public/ is read, whatever symlinks say


def relink(path: Path, target: Path) -> Path:
    path.unlink()
    path.symlink_to(target)
    return path


def train_image(data_dir: Path, row: int) -> Path:
    name = pd.read_csv(data_dir / "public" / "train.csv", dtype=str)["filename"].iloc[row]
    return data_dir / "public" / "train" / name


@pytest.mark.parametrize("target", ["elsewhere", "/etc/passwd"])
def test_an_image_linked_outside_public_is_refused_naming_csv_row_and_target(
    tiny_sample: Path, tmp_path: Path, target: str
) -> None:
    if target == "elsewhere":
        outside = tmp_path / "elsewhere.jpg"
        outside.write_bytes(train_image(tiny_sample, 0).read_bytes())
    else:
        outside = Path(target)
    link = relink(train_image(tiny_sample, 2), outside)
    with pytest.raises(DatasetError) as err:
        load_samples(tiny_sample)
    message = str(err.value)
    assert "train.csv: row 3 (line 4)" in message and repr(link.name) in message
    assert f"resolves to {str(outside)!r}" in message and "outside" in message


def test_a_split_folder_linked_elsewhere_is_refused(tiny_sample: Path, tmp_path: Path) -> None:
    (tiny_sample / "public" / "test").rename(tmp_path / "test-elsewhere")
    (tiny_sample / "public" / "test").symlink_to(tmp_path / "test-elsewhere", target_is_directory=True)
    with pytest.raises(DatasetError, match=r"test\.csv: row 1 \(line 2\).*test-elsewhere.*and 95 more"):
        load_samples(tiny_sample)


def test_links_inside_public_and_a_linked_public_folder_are_read(tiny_sample: Path, tmp_path: Path) -> None:
    relink(train_image(tiny_sample, 1), Path("..") / "train" / train_image(tiny_sample, 0).name)
    (tiny_sample / "public").rename(tmp_path / "big-disk-public")
    (tiny_sample / "public").symlink_to(tmp_path / "big-disk-public", target_is_directory=True)
    samples, _ = load_samples(tiny_sample)
    assert len(samples) == 400
    assert all(Path(p).is_relative_to(tiny_sample.resolve() / "public") for p in samples["path"])


@pytest.mark.parametrize("name", ["info.json", "train.csv", "test.csv"])
def test_info_json_and_csvs_linked_outside_public_are_refused(tiny_sample: Path, tmp_path: Path, name: str) -> None:
    outside = tmp_path / f"copy-{name}"
    outside.write_bytes((tiny_sample / "public" / name).read_bytes())
    relink(tiny_sample / "public" / name, outside)
    with pytest.raises(DatasetError) as err:
        check_data_dir(tiny_sample)
    message = str(err.value)
    assert name in message and f"resolves to {outside}" in message and "\n" not in message
    with pytest.raises(DatasetError, match="outside"):
        load_samples(tiny_sample)
    with pytest.raises(DatasetError, match="outside"):
        data_fingerprint(tiny_sample)


def test_output_dir_inside_the_data_dir_is_refused_either_way_round(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "public").mkdir(parents=True)
    (tmp_path / "to-data").symlink_to(data, target_is_directory=True)
    (tmp_path / "to-outputs").symlink_to(data / "public", target_is_directory=True)
    for output in (data, data / "outputs", tmp_path / "to-data" / "x", tmp_path / "to-outputs" / "runs"):
        with pytest.raises(DatasetError, match="inside the data directory"):
            check_output_outside(data, output)
    with pytest.raises(DatasetError, match="inside the data directory"):
        check_output_outside(tmp_path / "to-data", data / "outputs")
    for output in (tmp_path / "outputs", tmp_path / "data-outputs", tmp_path):
        check_output_outside(data, output)  # beside or above the data: fine
    assert not (data / "outputs").exists()
