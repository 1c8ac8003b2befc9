"""What a batch prediction reads: the images argument (a folder or a CSV) and a model's inputs recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.layout import RunFolder
from tasks.models.recipe import PixelInputs, RecipeError, read_recipe, write_recipe
from tasks.predict.inputs import InputError, list_images
from tasks.results.export_check import evenly_spaced


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_a_folder_gives_its_image_files_sorted(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "c.jpeg", ".hidden.jpg", "notes.txt"):
        touch(tmp_path / name)
    (tmp_path / "sub.jpg").mkdir()  # a folder, not a file
    listed = list_images(tmp_path)
    assert listed["filename"].tolist() == ["a.png", "b.JPG", "c.jpeg"]
    assert listed["path"].tolist() == [str(tmp_path / n) for n in ("a.png", "b.JPG", "c.jpeg")]


def test_a_csv_names_files_beside_it_absolute_or_in_the_kaggle_folder(tmp_path: Path) -> None:
    public = tmp_path / "public"
    beside = touch(public / "beside.jpg")
    kaggle = touch(public / "test" / "k.jpg")
    absolute = touch(tmp_path / "elsewhere" / "abs.jpg")
    csv = public / "test.csv"
    csv.write_text(f"filename,coarse\nbeside.jpg,0\nk.jpg,0\n{absolute},0\nmissing.jpg,0\n")
    listed = list_images(csv)
    assert listed["filename"].tolist() == ["beside.jpg", "k.jpg", str(absolute), "missing.jpg"]
    # A missing file keeps its row (the image scan reports it); it is looked for beside the CSV.
    assert listed["path"].tolist() == [str(beside), str(kaggle), str(absolute), str(public / "missing.jpg")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name\na.jpg\n", "no 'filename' column"),
        ("filename,x\na.jpg,1\n\n  ,2\n", "empty filename on line\\(s\\) 4"),
        ("filename\n", "lists no files"),
    ],
)
def test_a_bad_csv_is_an_error_naming_it(tmp_path: Path, content: str, message: str) -> None:
    csv = tmp_path / "images.csv"
    csv.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        list_images(csv)
    assert str(csv) in str(error.value)


def test_neither_folder_nor_csv(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(InputError, match="neither a folder"):
        list_images(touch(tmp_path / "x.jpg"))
    with pytest.raises(InputError, match="no image files"):
        list_images(touch(tmp_path / "empty" / "a.txt").parent)


def test_a_recipe_round_trips_and_refuses_to_point_outside_models(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    model_file = touch(run.model_file("pixels_svm", ".skops"))
    write_recipe(run.root, "pixels_svm", model_file, "coarse", [0, 2, 5], PixelInputs(size=48, grayscale=True))
    recipe = read_recipe(run.root, "pixels_svm")
    assert recipe.model_file == "pixels_svm.skops" and recipe.output_classes == [0, 2, 5]
    assert recipe.inputs == PixelInputs(size=48, grayscale=True)
    data = json.loads(run.model_inputs("pixels_svm").read_text())
    run.model_inputs("pixels_svm").write_text(json.dumps({**data, "model_file": "../../evil.skops"}))
    with pytest.raises(RecipeError, match="plain file name"):
        read_recipe(run.root, "pixels_svm")
    with pytest.raises(RecipeError, match="no inputs recipe"):
        read_recipe(run.root, "pixels_random_forest")


def test_the_check_subset_is_evenly_spaced_and_deterministic() -> None:
    assert evenly_spaced(5, 256).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced(1000, 5).tolist() == [0, 250, 500, 749, 999]
    assert evenly_spaced(10, 0).tolist() == []
