"""The images a batch prediction classifies: a folder or a CSV, validated the way training validates.

- A folder: its image files (by extension, not recursive, hidden files skipped), sorted by name.
- A CSV: a ``filename`` column; each name is absolute or relative to the CSV's folder. A Kaggle
  split CSV works as it is: a name not found next to the CSV is looked up in the folder named
  like the CSV (``public/test.csv`` -> ``public/test/<filename>``).

Every file then goes through training's image scan (`tasks.validation.image_scan.scan_images`,
with its per-file cache under ``<output-dir>/cache/image_scan``) and training's usability rules
(`tasks.validation.tables.prepare_image_table`: missing, empty, undecodable, too small, too many
pixels). An unusable file is reported with its reason in the output, never fatal; a bad CSV (no
``filename`` column, an empty name) is an error naming the file and row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.io import atomic_write_text
from tasks.layout import PredictionFolder
from tasks.validation.image_scan import read_scan, scan_images
from tasks.validation.settings import ValidationSettings
from tasks.validation.tables import prepare_image_table

#: What a folder's image files end with (case-insensitive); other files are ignored.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
#: Columns of the validated input list (``inputs.csv``).
INPUT_COLUMNS = ["filename", "path", "image_ok", "problem"]
#: The scan list's split value for prediction inputs (not a labelled split).
PREDICT_SPLIT = "predict"


class InputError(ValueError):
    """The images argument cannot be read as a folder of images or a CSV of file names; says why."""


def list_folder(folder: Path) -> pd.DataFrame:
    """The image files of a folder, sorted by name: filename, path."""
    names = sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not names:
        raise InputError(f"{folder} holds no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return pd.DataFrame({"filename": names, "path": [str(folder / n) for n in names]})


def resolve_listed(csv_path: Path, name: str) -> Path:
    """Where a CSV's file name points: absolute, next to the CSV, else in the folder named like it."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return path
    beside, kaggle = csv_path.parent / path, csv_path.parent / csv_path.stem / path
    return kaggle if not beside.exists() and kaggle.exists() else beside


def list_csv(csv_path: Path) -> pd.DataFrame:
    """The files a CSV names in its ``filename`` column, in row order: filename, path."""
    try:  # blank lines kept, so that the row index gives the line number (the header is line 1)
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{csv_path} cannot be read as a CSV: {exc}") from exc
    if "filename" not in frame.columns:
        raise InputError(f"{csv_path} has no 'filename' column (its columns: {', '.join(frame.columns) or 'none'})")
    frame = frame[frame.apply(lambda row: "".join(row).strip() != "", axis=1)] if len(frame) else frame
    names = frame["filename"].str.strip()
    empty = names.index[names == ""].tolist()
    if empty:
        raise InputError(f"{csv_path}: empty filename on line(s) {', '.join(str(i + 2) for i in empty[:5])}")
    if names.empty:
        raise InputError(f"{csv_path} lists no files")
    return pd.DataFrame({"filename": names, "path": [str(resolve_listed(csv_path, n)) for n in names]})


def list_images(source: Path) -> pd.DataFrame:
    """The files to classify (filename, path), from a folder or a CSV (module docstring)."""
    source = Path(source).expanduser()
    if source.is_dir():
        return list_folder(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return list_csv(source.resolve())
    if not source.exists():
        raise InputError(f"{source} does not exist (give a folder of images or a CSV with a filename column)")
    raise InputError(f"{source} is neither a folder of images nor a .csv file")


@dataclass(frozen=True)
class CheckedInputs:
    """The validated input list (``inputs.csv``), how many images it has, how many cannot be used
    and a few of those with their reason."""

    inputs_path: str
    images: int
    unreadable: int
    unreadable_examples: list[str]


def validate_inputs(
    source: Path, prediction_dir: Path, scan_cache: Path, settings: ValidationSettings = ValidationSettings()
) -> CheckedInputs:
    """List and scan the input images; write ``inputs.csv`` (filename, path, image_ok, problem) into
    the prediction folder and return its path with the counts and a few unusable examples."""
    folder = PredictionFolder(prediction_dir)
    files = list_images(source)
    atomic_write_text(
        folder.scan_list, files.assign(split=PREDICT_SPLIT).loc[:, ["split", "filename", "path"]].to_csv(index=False)
    )
    scan_images(
        folder.scan_list,
        folder.image_scan,
        Path(scan_cache),
        workers=settings.scan_workers,
        max_pixels=settings.max_image_pixels,
    )
    reasons = prepare_image_table(read_scan(folder.image_scan), settings)["reason"]
    files["problem"] = reasons.where(reasons.notna(), "").astype(str).to_numpy()
    files["image_ok"] = files["problem"] == ""
    atomic_write_text(folder.inputs, files.loc[:, INPUT_COLUMNS].to_csv(index=False))
    bad = files[~files["image_ok"]]
    examples = [f"{r.filename}: {r.problem}" for r in bad.head(5).itertuples(index=False)]
    return CheckedInputs(str(folder.inputs), len(files), len(bad), examples)


def read_inputs(path: Path) -> pd.DataFrame:
    """A validated input list written by `validate_inputs`."""
    frame = pd.read_csv(path, dtype={"filename": str, "path": str, "problem": str}, keep_default_na=False)
    frame["image_ok"] = frame["image_ok"].astype(str).str.lower().eq("true")
    return frame
