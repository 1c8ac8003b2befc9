"""The tables the validation suites check, built from the raw files (pandas only, no GX).

Why derived columns: row-wise comparisons of two columns are far faster in Great Expectations
than set-of-pairs checks (``expectations.suites``), so label ranges, the fine->coarse taxonomy,
split overlaps and image usability are computed here, one column each (``tasks.data.columns``
names them), and the suites compare columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data.columns import (
    ALSO_IN,
    FAMILY_COARSE,
    LABELLED_SPLITS,
    PIXELS,
    ROW,
    SHORT_SIDE,
    SPLITS,
    TARGETS,
    TAXONOMY_COARSE,
    USABLE_LABELLED,
    USABLE_TEST,
    in_range_column,
    int_column,
    name_column,
)
from tasks.data.dataset import (
    OUTSIDE_PUBLIC,
    ClassInfo,
    DatasetError,
    outside_public,
    public_dir,
    unsafe_filename_reason,
)
from tasks.data.taxonomy import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, real_coarse_distribution
from tasks.io import atomic_write_text
from tasks.layout import RunFolder
from tasks.validation.image_scan import LIST_COLUMNS
from tasks.validation.settings import ValidationSettings

FINE_IN_RANGE, COARSE_IN_RANGE = in_range_column("fine"), in_range_column("coarse")


# --------------------------------------------------------------------------------------------
# Reading the raw files


def read_raw_csv(path: Path) -> pd.DataFrame:
    """A CSV as raw strings, exactly as `tasks.data.dataset` reads it (BOM stripped, names stripped);
    empty cells become nulls so that GX's not-null rules see them. Raises DatasetError when the
    file is not a CSV at all."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: the file is empty (not even a header line).") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot be read as a UTF-8 CSV: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.astype(object)
    return frame.where(frame != "", None)


def is_known_taxonomy(classes: ClassInfo) -> bool:
    """True when info.json lists the real dataset's names in the real order (docs/dataset.md)."""
    return classes.coarse == COARSE_NAMES and classes.fine == FINE_NAMES


# --------------------------------------------------------------------------------------------
# CSV tables


def label_columns(raw: pd.DataFrame, target: str, n_classes: int) -> tuple[pd.Series, pd.Series]:
    """(whole-number value or NaN, valid class index or NaN) of one raw label column."""
    if target not in raw.columns:
        empty = pd.Series(np.nan, index=raw.index, dtype="float64")
        return empty, empty.copy()
    numeric = pd.to_numeric(raw[target].astype("string").str.strip(), errors="coerce").astype("float64")
    whole = numeric.where(numeric == np.round(numeric))
    in_range = whole.where((whole >= 0) & (whole < n_classes))
    return whole, in_range


def overlap_column(filenames: pd.Series | None, others: dict[str, set[str]], index: pd.Index) -> pd.Series:
    """For each row, which other split(s) list the same filename ('val', 'train+val'), else None."""
    result = pd.Series([None] * len(index), index=index, dtype=object)
    if filenames is None:
        return result
    for split, names in others.items():
        hit = filenames.isin(names).to_numpy()
        current = result[hit]
        result[hit] = [split if c is None else f"{c}+{split}" for c in current]
    return result


def filename_set(raw: pd.DataFrame | None) -> set[str]:
    if raw is None or "filename" not in raw.columns:
        return set()
    return set(raw["filename"].dropna().tolist())


def outside_column(table: pd.DataFrame, root: Path, split: str) -> pd.Series:
    """For each row, where its image really is (symlinks followed) if that is outside ``public/``,
    else None: an image that is a link out of the data directory is a critical failure, found
    here, before the scan list is written and before any image is opened."""
    names = table["filename"] if "filename" in table.columns else pd.Series([None] * len(table), index=table.index)
    public = public_dir(root)
    return pd.Series(outside_public(public / split, public, names.tolist()), index=table.index, dtype=object)


def prepare_labelled_tables(
    raws: dict[str, pd.DataFrame | None], classes: ClassInfo, root: Path
) -> dict[str, pd.DataFrame]:
    """train/val tables: the raw columns plus the derived columns of ``expectations.suites``."""
    tables: dict[str, pd.DataFrame] = {}
    for split in LABELLED_SPLITS:
        raw = raws.get(split)
        if raw is None:
            continue
        table = raw.copy()
        table[ROW] = np.arange(1, len(raw) + 1, dtype="int64")
        table[OUTSIDE_PUBLIC] = outside_column(raw, root, split)
        for target in TARGETS:
            whole, in_range = label_columns(raw, target, len(classes.names(target)))
            table[int_column(target)] = whole
            table[in_range_column(target)] = in_range
        others = {s: filename_set(raws.get(s)) for s in LABELLED_SPLITS if s != split}
        table[ALSO_IN] = overlap_column(table.get("filename"), others, table.index)
        if is_known_taxonomy(classes):
            lookup = np.asarray(FINE_TO_COARSE, dtype="float64")
            fine = table[FINE_IN_RANGE]
            table[TAXONOMY_COARSE] = np.where(fine.notna(), lookup[fine.fillna(0).astype(int)], np.nan)
        else:
            table[TAXONOMY_COARSE] = np.nan
        tables[split] = table
    majority = family_majority(list(tables.values()))
    for table in tables.values():
        table[FAMILY_COARSE] = table[FINE_IN_RANGE].map(majority).astype("float64")
    return tables


def family_majority(tables: list[pd.DataFrame]) -> dict[float, float]:
    """The coarse class most rows of each family carry (ties: the smaller index), over train+val."""
    if not tables:
        return {}
    pairs = pd.concat([t[[FINE_IN_RANGE, COARSE_IN_RANGE]] for t in tables]).dropna()
    if pairs.empty:
        return {}
    counts = pairs.value_counts().rename("n").reset_index()
    counts = counts.sort_values([FINE_IN_RANGE, "n", COARSE_IN_RANGE], ascending=[True, False, True])
    first = counts.drop_duplicates(FINE_IN_RANGE)
    return dict(zip(first[FINE_IN_RANGE], first[COARSE_IN_RANGE]))


def prepare_test_table(raws: dict[str, pd.DataFrame | None], root: Path) -> pd.DataFrame | None:
    """test table: raw columns plus row number, where a linked image leads, and overlap with
    train/val filenames."""
    raw = raws.get("test")
    if raw is None:
        return None
    table = raw.copy()
    table[ROW] = np.arange(1, len(raw) + 1, dtype="int64")
    table[OUTSIDE_PUBLIC] = outside_column(raw, root, "test")
    others = {s: filename_set(raws.get(s)) for s in LABELLED_SPLITS}
    table[ALSO_IN] = overlap_column(table.get("filename"), others, table.index)
    return table


def write_scan_list(root: Path, tables: dict[str, pd.DataFrame | None], path: Path) -> Path:
    """The image files the CSV tables reference (split, filename, absolute path), one row each.

    ``tables`` are the prepared split tables (with `OUTSIDE_PUBLIC`); a row whose image leads
    out of ``public/`` is refused here too, so the scan can never open it.
    """
    frames = []
    for split in SPLITS:
        raw = tables.get(split)
        if raw is None or "filename" not in raw.columns:
            continue
        escaping = raw[raw[OUTSIDE_PUBLIC].notna()]
        if len(escaping):
            first = escaping.iloc[0]
            raise DatasetError(
                f"{split}.csv lists {len(escaping)} image(s) outside {public_dir(root)}, e.g. "
                f"{first['filename']!r} -> {first[OUTSIDE_PUBLIC]}; not scanning them"
            )
        names = raw["filename"].dropna().drop_duplicates()
        names = names[[unsafe_filename_reason(n) is None for n in names]]
        folder = public_dir(root) / split
        frames.append(
            pd.DataFrame({"split": split, "filename": names.astype(str), "path": [str(folder / n) for n in names]})
        )
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(LIST_COLUMNS))
    return atomic_write_text(path, table.loc[:, list(LIST_COLUMNS)].to_csv(index=False))


# --------------------------------------------------------------------------------------------
# Class balance


def prepare_balance_table(tables: dict[str, pd.DataFrame], classes: ClassInfo) -> pd.DataFrame:
    """train+val labels as class names (null where the label is not a valid index)."""
    frames = []
    for table in tables.values():
        frame = pd.DataFrame(index=table.index)
        for target in TARGETS:
            names = np.asarray(classes.names(target), dtype=object)
            index = table[in_range_column(target)]
            frame[name_column(target)] = np.where(index.notna(), names[index.fillna(0).astype(int)], None)
        frames.append(frame)
    if not frames:
        return pd.DataFrame({name_column(t): pd.Series(dtype=object) for t in TARGETS})
    return pd.concat(frames, ignore_index=True)


def label_distribution(balance: pd.DataFrame, classes: ClassInfo) -> dict[str, dict[str, float]]:
    """Share of each class name in train+val, per target (saved for the 'previous' reference)."""
    result: dict[str, dict[str, float]] = {}
    for target in TARGETS:
        counts = balance[name_column(target)].value_counts()
        total = float(counts.sum()) or 1.0
        result[target] = {name: round(float(counts.get(name, 0)) / total, 6) for name in classes.names(target)}
    return result


def reference_distribution(
    kind: str, classes: ClassInfo, runs_root: Path | None, current_run: Path | None
) -> tuple[dict[str, dict[str, float]] | None, str, str | None]:
    """(reference shares per target, its name, a note) for the class-balance suite.

    ``known``: the real dataset's distribution (docs/dataset.md: coarse by family counts, fine
    uniform), only when info.json has the known names. ``previous``: ``label_distribution`` of
    the newest run under ``runs_root`` whose validation passed with the same class names
    (run folders sort by start time); if there is none, the known distribution, with a note.
    """
    note = None
    if kind == "previous":
        for run in earlier_runs(runs_root, current_run):
            try:
                data = json.loads(run.validation_report.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if data.get("passed") and data.get("classes") == classes.to_json() and data.get("label_distribution"):
                return data["label_distribution"], f"previous run {run.root.name}", None
        note = f"no earlier validated run with the same classes under {runs_root}; compared with the known distribution"
    if is_known_taxonomy(classes):
        fine = {name: 1.0 / len(FINE_NAMES) for name in FINE_NAMES}
        return {"coarse": real_coarse_distribution(), "fine": fine}, "known (real dataset)", note
    return (
        None,
        "none",
        (note or "")
        + ("; " if note else "")
        + ("info.json class names differ from the known dataset: no reference distribution to compare with"),
    )


def earlier_runs(runs_root: Path | None, current_run: Path | None) -> list[RunFolder]:
    """Run folders under ``runs_root`` that have a validation report, newest first, minus ``current_run``."""
    if not runs_root or not Path(runs_root).is_dir():
        return []
    current = Path(current_run).resolve() if current_run is not None else None
    runs = [RunFolder(p) for p in Path(runs_root).iterdir()]
    return sorted(
        (r for r in runs if r.validation_report.is_file() and r.root.resolve() != current),
        key=lambda r: r.root.name,
        reverse=True,
    )


# --------------------------------------------------------------------------------------------
# Image table


def prepare_image_table(scan: pd.DataFrame, settings: ValidationSettings) -> pd.DataFrame:
    """The scan table plus short side, pixels, usability and the quarantine reason per file."""
    table = scan.copy()
    width = table["width"].astype("float64")
    height = table["height"].astype("float64")
    table[SHORT_SIDE] = np.fmin(width, height)
    table[PIXELS] = width * height
    table["reason"] = unusable_reasons(table, settings)
    usable = table["reason"].isna()
    labelled = table["split"].isin(LABELLED_SPLITS)
    table[USABLE_LABELLED] = pd.Series(np.where(labelled, usable, None), index=table.index, dtype=object)
    table[USABLE_TEST] = pd.Series(np.where(~labelled, usable, None), index=table.index, dtype=object)
    return table


def unusable_reasons(table: pd.DataFrame, settings: ValidationSettings) -> pd.Series:
    """Why each file cannot be used (None when it can): the first rule it breaks."""
    reasons = pd.Series([None] * len(table), index=table.index, dtype=object)
    short = table[SHORT_SIDE] if SHORT_SIDE in table else np.fmin(table["width"], table["height"])
    pixels = table[PIXELS] if PIXELS in table else table["width"] * table["height"]
    checks = [
        (~table["exists"], lambda r: "file not found"),
        (table["size_bytes"].fillna(0).eq(0) & table["exists"], lambda r: "empty file (0 bytes)"),
        (
            table["decodes"].map(lambda v: v is not True) & table["exists"] & table["size_bytes"].fillna(0).gt(0),
            lambda r: r["error"] or "does not decode",
        ),
        (
            pd.Series(pixels, index=table.index).gt(settings.max_image_pixels),
            lambda r: r["error"] or f"more than {settings.max_image_pixels:,} pixels",
        ),
        (
            pd.Series(short, index=table.index).lt(settings.min_short_side),
            lambda r: f"short side {int(min(r['width'], r['height']))} px < {settings.min_short_side} px",
        ),
    ]
    for mask, reason in checks:
        mask = mask.fillna(False).astype(bool) & reasons.isna()
        for index in table.index[mask]:
            reasons[index] = reason(table.loc[index])
    return reasons
