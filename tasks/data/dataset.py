"""Read a Kaggle-layout data directory into one typed table of samples.

Layout (docs/dataset.md)::

    <data-dir>/public/info.json              {"coarse": [...], "fine": [...]}
    <data-dir>/public/{train,val,test}.csv   filename,fine,coarse
    <data-dir>/public/{train,val,test}/<filename>

The table has one row per image: ``split`` (train/val/test), ``filename``, ``path`` (absolute),
``coarse`` and ``fine`` (nullable integers; always missing for test rows, whose CSV labels are
placeholders and are never read). Label index i means ``info.json[target][i]``: class names keep
the file's order and are never sorted.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data.columns import LABELLED_SPLITS, SAMPLE_COLUMNS, SPLITS, TARGETS, Target  # noqa: F401 (re-exported)
from tasks.io import atomic_write_json, atomic_write_text, fingerprint_files
from tasks.layout import RunFolder

#: The Kaggle layout's own names (dataset facts, not this pipeline's run layout).
PUBLIC_DIR = "public"
INFO_FILE = "info.json"
#: How many offending rows an error message lists before it says "and N more".
MAX_EXAMPLES = 5
#: Derived column of the validated CSV tables: where a listed image really is (symlinks followed)
#: when that is outside ``public/``, else null (``expectations.suites`` requires it to be null).
OUTSIDE_PUBLIC = "_outside_public"


class DatasetError(ValueError):
    """The data directory does not match the Kaggle layout; the message says where and how."""


@dataclass(frozen=True)
class ClassInfo:
    """Class names in info.json order: index i of a label means ``names(target)[i]``."""

    coarse: tuple[str, ...]
    fine: tuple[str, ...]

    def names(self, target: Target) -> tuple[str, ...]:
        """Class names for one target, in label-index order."""
        return self.coarse if target == "coarse" else self.fine

    def to_json(self) -> dict[str, list[str]]:
        return {"coarse": list(self.coarse), "fine": list(self.fine)}


def split_csv_name(split: str) -> str:
    """``train.csv``, ``val.csv`` or ``test.csv``: one split's label file inside ``public/``."""
    return f"{split}.csv"


#: What a ``public/`` folder must hold besides the image folders: info.json and the three CSVs.
PUBLIC_FILES: tuple[str, ...] = (INFO_FILE, *(split_csv_name(s) for s in SPLITS))


def public_dir(data_dir: Path) -> Path:
    """The ``public/`` folder of a Kaggle-layout data directory."""
    return Path(data_dir).expanduser().resolve() / PUBLIC_DIR


# --------------------------------------------------------------------------------------------
# Confinement: the pipeline reads only files that really are inside public/ (symlinks followed)


def real_path(path: Path | str) -> Path:
    """``path`` with every symlink followed (``os.path.realpath``: never raises, even on a loop)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def is_inside(path: Path | str, folder: Path | str) -> bool:
    """True when ``path`` is ``folder`` or lies below it, both with their symlinks followed."""
    return real_path(path).is_relative_to(real_path(folder))


def public_file(data_dir: Path, name: str) -> Path:
    """``<data-dir>/public/<name>`` (info.json or a CSV), refused when it is a link that leads
    outside ``public/``. A missing file is returned as is (`check_data_dir` names it)."""
    public = public_dir(data_dir)
    path = public / name
    if os.path.lexists(path) and not is_inside(path, public):
        raise DatasetError(
            f"{path} resolves to {real_path(path)}, outside {real_path(public)}: the pipeline reads only "
            f"files inside the data directory's {PUBLIC_DIR}/ folder (a symlink must not lead out of it)."
        )
    return path


def outside_public(folder: Path, public: Path, names: Iterable[object]) -> list[str | None]:
    """For each file name listed for ``folder`` (``public/<split>``): where the file really is
    (symlinks followed) when that is outside ``public``, else None.

    One ``lstat`` per file: only symlinks (or every file, when the split folder itself leads out
    of ``public``) are resolved. Names that are not plain file names give None: the filename rule
    rejects them, and they are never joined to a folder.
    """
    top = real_path(public)
    folder_inside = real_path(folder).is_relative_to(top)
    base = os.fspath(folder)
    found: list[str | None] = []
    for name in names:
        if unsafe_filename_reason(name) is not None:
            found.append(None)
            continue
        path = os.path.join(base, str(name))  # strings, not Paths: this runs once per image
        if folder_inside:
            try:
                is_link = stat.S_ISLNK(os.lstat(path).st_mode)
            except (OSError, ValueError):  # missing: the image scan reports it, nothing is opened
                is_link = False
            if not is_link:
                found.append(None)
                continue
        real = real_path(path)
        found.append(None if real.is_relative_to(top) else str(real))
    return found


def check_output_outside(data_dir: Path, output_dir: Path) -> None:
    """Refuse an output directory inside the data directory (symlinks of either followed): the
    pipeline never writes into the data directory. Neither folder needs to exist yet."""
    if is_inside(output_dir, data_dir):
        raise DatasetError(
            f"Output directory {output_dir} is inside the data directory {data_dir} (resolved: "
            f"{real_path(output_dir)} in {real_path(data_dir)}); nothing is ever written into the data "
            f"directory: choose an output directory outside it."
        )


def split_csv(data_dir: Path, split: str) -> Path:
    """``<data-dir>/public/<split>.csv`` (confined to ``public/``: see `public_file`)."""
    return public_file(data_dir, split_csv_name(split))


def public_files(data_dir: Path) -> list[Path]:
    """info.json and the three CSVs of a data directory, in `PUBLIC_FILES` order (confined)."""
    return [public_file(data_dir, name) for name in PUBLIC_FILES]


def check_data_dir(data_dir: Path) -> Path:
    """Fail fast, in one sentence, when the data directory is not a Kaggle layout (or its
    info.json or a CSV is a link out of ``public/``)."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"Data directory {root} does not exist or is not a folder; expected a Kaggle layout "
            f"with {root / PUBLIC_DIR / INFO_FILE} and train/val/test CSVs and image folders."
        )
    missing = [str(p) for p in public_files(root) if not p.is_file()]
    if missing:
        raise DatasetError(f"Data directory {root} is not a Kaggle layout: missing {', '.join(missing)}.")
    return root.resolve()


def read_class_info(data_dir: Path) -> ClassInfo:
    """Read class names from ``public/info.json``, keeping the file's order."""
    path = public_file(data_dir, INFO_FILE)
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read class names as JSON ({exc}).") from exc
    names: dict[str, tuple[str, ...]] = {}
    for key in TARGETS:
        value = info.get(key) if isinstance(info, dict) else None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise DatasetError(f'{path}: expected "{key}" to be a non-empty list of class names.')
        if len(set(value)) != len(value):
            raise DatasetError(f'{path}: "{key}" lists a class name more than once.')
        names[key] = tuple(value)
    return ClassInfo(coarse=names["coarse"], fine=names["fine"])


def unsafe_filename_reason(name: object) -> str | None:
    """Why a CSV filename is not a plain file name inside its split folder, or None if it is.

    A filename is joined to ``public/<split>/``; separators, ``..`` or an absolute path would
    let a CSV point anywhere on disk.
    """
    if not isinstance(name, str) or name.strip() == "":
        return "is empty"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name in (".", "..") or name.startswith(".."):
        return "is a relative path component ('..')"
    if "\x00" in name:
        return "contains a NUL byte"
    if name != name.strip():
        return "has leading or trailing whitespace"
    return None


def _describe_rows(csv_path: Path, rows: list[tuple[int, object, str]]) -> str:
    """Format offending rows as 'row N (line N+1): value ... reason', a few at most."""
    shown = [f"row {r} (line {r + 1}): {v!r} {why}" for r, v, why in rows[:MAX_EXAMPLES]]
    more = f"; and {len(rows) - MAX_EXAMPLES} more" if len(rows) > MAX_EXAMPLES else ""
    return f"{csv_path}: " + "; ".join(shown) + more


def check_filenames(frame: pd.DataFrame, csv_path: Path) -> None:
    """Reject filenames that are not plain file names, naming the CSV, the row and the value."""
    bad = [
        (i + 1, value, f"is not a plain file name: it {reason}")
        for i, value in enumerate(frame["filename"].tolist())
        if (reason := unsafe_filename_reason(value)) is not None
    ]
    if bad:
        raise DatasetError(_describe_rows(csv_path, bad))


def check_confined(frame: pd.DataFrame, folder: Path, public: Path, csv_path: Path) -> None:
    """Reject rows whose image is a link out of ``public/``, naming the CSV, the row and the target."""
    bad = [
        (i + 1, name, f"resolves to {target!r}, outside {real_path(public)}")
        for i, (name, target) in enumerate(
            zip(frame["filename"].tolist(), outside_public(folder, public, frame["filename"]))
        )
        if target is not None
    ]
    if bad:
        raise DatasetError(_describe_rows(csv_path, bad))


def parse_labels(frame: pd.DataFrame, column: str, n_classes: int, csv_path: Path) -> pd.Series:
    """Integer labels in ``0..n_classes-1``; anything else is an error naming the rows."""
    raw = frame[column]
    numeric = pd.to_numeric(raw, errors="coerce")
    is_int = numeric.notna() & (numeric == numeric.round())
    in_range = is_int & (numeric >= 0) & (numeric < n_classes)
    bad = [
        (i + 1, raw.iloc[i], f"in column {column!r} is not an integer in 0..{n_classes - 1}")
        for i in (~in_range).to_numpy().nonzero()[0]
    ]
    if bad:
        raise DatasetError(_describe_rows(csv_path, bad))
    return numeric.astype("Int64")


def read_split_csv(data_dir: Path, split: str, classes: ClassInfo) -> pd.DataFrame:
    """Read one split's CSV into sample rows; test placeholder labels are dropped."""
    csv_path = split_csv(data_dir, split)
    # dtype=str keeps filenames like '00e1...' intact; utf-8-sig strips a BOM if present.
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame.columns = [str(c).strip() for c in frame.columns]
    required = ["filename"] + ([] if split == "test" else list(TARGETS))
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; found {list(frame.columns)}, "
            f"expected filename,fine,coarse."
        )
    check_filenames(frame, csv_path)
    folder = public_dir(data_dir) / split
    check_confined(frame, folder, public_dir(data_dir), csv_path)
    table = pd.DataFrame(
        {
            "split": split,
            "filename": frame["filename"].astype(str),
            "path": [str(folder / name) for name in frame["filename"]],
        }
    )
    for target in TARGETS:
        if split == "test":
            table[target] = pd.array([pd.NA] * len(frame), dtype="Int64")
        else:
            table[target] = parse_labels(frame, target, len(classes.names(target)), csv_path)
    return table


def load_samples(data_dir: Path) -> tuple[pd.DataFrame, ClassInfo]:
    """The whole data directory as one sample table plus its class names."""
    root = check_data_dir(data_dir)
    classes = read_class_info(root)
    table = pd.concat([read_split_csv(root, s, classes) for s in SPLITS], ignore_index=True)
    return table, classes


def image_ok_flags(table: pd.DataFrame) -> np.ndarray:
    """Which rows' images decode (validation's verdict when present; else assume all do)."""
    if "image_ok" in table.columns:
        return table["image_ok"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    return np.ones(len(table), bool)


def write_samples(samples: pd.DataFrame, path: Path) -> Path:
    """Persist a sample table as CSV (read back with `read_samples`)."""
    return atomic_write_text(path, samples.loc[:, list(SAMPLE_COLUMNS)].to_csv(index=False))


def read_samples(path: Path) -> pd.DataFrame:
    """Read a table written by `write_samples`, with nullable integer labels."""
    # "role" exists only in the role-annotated table (tasks.data.splitting); absent keys are ignored.
    frame = pd.read_csv(path, dtype={"split": str, "filename": str, "path": str, "role": str})
    for target in TARGETS:
        frame[target] = frame[target].astype("Int64")
    return frame


def load_dataset(data_dir: Path, run_dir: Path) -> Path:
    """Read the data directory and persist the sample table and the class names where validation
    puts them (``RunFolder.samples``, ``RunFolder.classes``); return the table's path."""
    samples, classes = load_samples(data_dir)

    run = RunFolder(run_dir)
    atomic_write_json(run.classes, classes.to_json())
    return write_samples(samples, run.samples)


def read_classes_json(path: Path) -> ClassInfo:
    """Read the class names persisted by `load_dataset`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return ClassInfo(coarse=tuple(data["coarse"]), fine=tuple(data["fine"]))


def data_fingerprint(data_dir: Path) -> str:
    """A short hash of info.json and the three CSVs: which labelled data a model was scored on."""
    return fingerprint_files(public_files(data_dir))
