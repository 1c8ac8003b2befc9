"""The Prefect event of changed data, and the trigger condition that matches it: named once here.

The validate flow emits `DATA_CHANGED_EVENT` when the data differ from the champion's
(tasks.drift.check); its resource is the OUTPUT directory (the champion lives there), with the
data directory as a label. The weekly-retrain deployment carries a trigger on the event
(deployments.definitions) whose match is built by `data_changed_match` from the same functions,
so the emitter and the trigger cannot disagree about the resource.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

from tasks.layout import OutputDir

DATA_CHANGED_EVENT = "living-things.data.changed"
#: Resource ids are ``living-things.output.<16 hex of sha256(absolute output dir)>``.
RESOURCE_KIND = "living-things.output"
OUTPUT_DIR_LABEL = "living-things.output-dir"
DATA_DIR_LABEL = "living-things.data-dir"
RESOURCE_ID = "prefect.resource.id"


def output_resource_id(output_dir: Path) -> str:
    """The event resource of an output directory (its absolute path, symlinks resolved)."""
    digest = hashlib.sha256(str(OutputDir(output_dir).root).encode("utf-8")).hexdigest()[:16]
    return f"{RESOURCE_KIND}.{digest}"


def data_dir_of(output_dir: Path, data_dir: Optional[Path]) -> Path:
    """The data a run of these settings reads: ``data_dir``, or the embedded sample of the output dir."""
    return Path(data_dir).expanduser().resolve() if data_dir is not None else OutputDir(output_dir).sample


def data_changed_resource(output_dir: Path, data_dir: Optional[Path]) -> dict[str, str]:
    """The resource of the event: the output directory, labelled with both directories."""
    root = OutputDir(output_dir).root
    return {
        RESOURCE_ID: output_resource_id(root),
        "prefect.resource.name": str(root),
        OUTPUT_DIR_LABEL: str(root),
        DATA_DIR_LABEL: str(data_dir_of(root, data_dir)),
    }


def path_pattern(path: Path) -> str:
    """A match value for a path as written in prefect.yaml: exact when absolute, else any absolute
    path ending in it (workers resolve relative paths against their own working directory)."""
    if Path(path).is_absolute():
        return str(path)
    relative = Path(path).as_posix().removeprefix("~/")
    return "*" if relative in (".", "~") else f"*/{relative}"


def data_changed_match(output_dir: Path, data_dir: Optional[Path], resolve: bool = True) -> dict[str, str]:
    """What a trigger matches: events about this output directory AND this data directory (the
    data a retrain of these settings reads), so a retrain never starts for data it would not use.

    ``resolve=False`` (prefect.yaml, where paths stay relative to the workers' directory): the
    resource id is a wildcard unless the output directory is absolute, and the directories are
    matched by `path_pattern`s (Prefect's server matches label values as globs).
    """
    if resolve:
        resource = data_changed_resource(output_dir, data_dir)
        return {RESOURCE_ID: resource[RESOURCE_ID], DATA_DIR_LABEL: resource[DATA_DIR_LABEL]}
    output = Path(output_dir)
    if data_dir is None:  # the embedded sample, where OutputDir puts it
        data_dir = output / OutputDir(output).sample.relative_to(OutputDir(output).root)
    resource_id = output_resource_id(output) if output.is_absolute() else f"{RESOURCE_KIND}.*"
    return {RESOURCE_ID: resource_id, OUTPUT_DIR_LABEL: path_pattern(output), DATA_DIR_LABEL: path_pattern(data_dir)}


def emit_data_changed(output_dir: Path, data_dir: Path, payload: dict[str, Any]) -> bool:
    """Emit `DATA_CHANGED_EVENT`; False when Prefect sends no events here (no API to send them to)."""
    from prefect.events import emit_event

    event = emit_event(DATA_CHANGED_EVENT, resource=data_changed_resource(output_dir, data_dir), payload=payload)
    return event is not None
