"""Reusing a passed validation: same CSVs, image signatures, settings and validation code.

A remembered validation (report and files) lives under ``<output-dir>/cache/steps/validation/``
keyed by `validation_key`; a rerun on the same data copies it into its run folder instead of
validating again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from pydantic import BaseModel, ValidationError

from flows.caching import code_fingerprint
from tasks.data.dataset import SPLITS, data_fingerprint, public_dir
from tasks.logs import get_logger
from tasks.models.features import file_signature
from tasks.validation.rendering import publish_artifact
from tasks.validation.report import ValidationReport

# --- validation reuse ----------------------------------------------------------------------

#: The module of the validation sequence (the ``validate_dataset`` flow): its import closure is
#: the validation code a remembered outcome depends on.
VALIDATION_CODE = "flows.validate"
RUN_DIR_MARK = "{{RUN_DIR}}"
#: Text files of a validation folder that may quote the run folder's or the data's absolute path
#: (the validated samples.csv names every image).
_REWRITTEN_SUFFIXES = (".json", ".html", ".csv")


def validation_key(data_dir: Path, settings: BaseModel) -> str | None:
    """Key of a validation outcome: CSV/info.json contents, every image's (path, size, mtime),
    the settings and the validation code. None when the outcome depends on earlier runs
    (``reference="previous"``), which makes it uncacheable."""
    if getattr(settings, "reference", "known") == "previous":
        return None

    public = public_dir(data_dir)
    digest = hashlib.sha256(code_fingerprint(VALIDATION_CODE).encode())
    digest.update(data_fingerprint(data_dir).encode())
    digest.update(settings.model_dump_json().encode())
    for split in SPLITS:
        folder = public / split
        for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
            digest.update(file_signature(str(folder / name)).encode())
    return digest.hexdigest()[:24]


def _copy_validation(source: Path, target: Path, old: str, new: str, *moved: tuple[str, str]) -> None:
    """Copy a validation folder, rewriting the run-folder path inside its reports and pages (and
    each ``(old, new)`` of ``moved``: a data directory that moved with its output directory)."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    for path in target.rglob("*"):
        if path.is_file() and path.suffix in _REWRITTEN_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            changed = _rewrite(text, ((old, new), *moved))
            if changed != text:
                path.write_text(changed, encoding="utf-8", errors="surrogateescape")


def _rewrite(text: str, replacements: tuple[tuple[str, str], ...]) -> str:
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def data_dir_moves(report: BaseModel, data_dir: Path | None) -> tuple[tuple[str, str], ...]:
    """``((old/, new/),)`` when a remembered report validated the same data at another place (its
    output directory, which holds the embedded sample, was moved or copied), else ``()``: the
    reused files must name the images where they are now."""
    old = str(getattr(report, "data_dir", "") or "")
    if data_dir is None or not old or old == str(data_dir):
        return ()
    return ((old.rstrip("/") + "/", str(data_dir).rstrip("/") + "/"),)


def remember_validation(report: BaseModel, cache_dir: Path, key: str | None) -> None:
    """Keep a passed validation (report and files) for reruns on the same data and settings."""
    if key is None or not getattr(report, "passed", False):
        return
    run_dir = Path(report.run_dir)  # type: ignore[attr-defined]
    store = Path(cache_dir) / "steps" / "validation" / key
    tmp = store.with_name(f".{key}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _copy_validation(run_dir / "validation", tmp / "validation", str(run_dir), RUN_DIR_MARK)
    (tmp / "report.model.json").write_text(
        report.model_dump_json().replace(str(run_dir), RUN_DIR_MARK), encoding="utf-8"
    )
    shutil.rmtree(store, ignore_errors=True)
    tmp.rename(store)


def reuse_validation(
    cache_dir: Path, key: str | None, run_dir: Path, report_type: type[BaseModel], data_dir: Path | None = None
) -> BaseModel | None:
    """The remembered validation for ``key``, copied into ``run_dir/validation`` (its image paths
    moved to ``data_dir`` when given); None if absent or if its report does not parse as
    ``report_type`` or its folder is gone (the store is then deleted with a warning and
    validation runs again)."""
    if key is None:
        return None
    store = Path(cache_dir) / "steps" / "validation" / key
    model_file = store / "report.model.json"
    if not model_file.is_file():
        return None
    try:
        if any(path.is_symlink() for path in [store, *store.rglob("*")]):  # never copy a file from elsewhere
            raise OSError(f"{store} holds a symbolic link")
        text = model_file.read_text(encoding="utf-8").replace(RUN_DIR_MARK, str(run_dir))
        report = report_type.model_validate_json(text)
        moves = data_dir_moves(report, data_dir)
        if moves:
            report = report_type.model_validate_json(_rewrite(text, moves)).model_copy(
                update={"data_dir": str(data_dir)}
            )
        if not (store / "validation").is_dir():
            raise FileNotFoundError(f"{store / 'validation'} is gone")
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        if store.is_symlink():
            store.unlink()
        shutil.rmtree(store, ignore_errors=True)
        get_logger().warning(
            f"Deleted remembered validation {store}: {model_file.name} is not a {report_type.__name__} "
            f"({type(exc).__name__}); validating again"
        )
        return None
    _copy_validation(store / "validation", Path(run_dir) / "validation", RUN_DIR_MARK, str(run_dir), *moves)
    return report


def reuse_validated_report(
    cache_dir: Path, key: str | None, run_dir: Path, data_dir: Path | None = None
) -> ValidationReport | None:
    """A passed validation of the very same data, settings and code, copied into this run and
    published again as its artifact; None when there is none."""
    report = reuse_validation(cache_dir, key, run_dir, ValidationReport, data_dir)
    if report is None:
        return None
    get_logger().info("Validation reused: same CSVs, images (size, mtime), settings and code as an earlier run")
    publish_artifact(report)  # type: ignore[arg-type]
    return report  # type: ignore[return-value]
