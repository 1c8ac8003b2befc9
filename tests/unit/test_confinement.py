"""A symbolic link planted inside the output directory never lets the pipeline change a file outside it.

Each test plants a link (or a hard link, or a FIFO) where the pipeline writes, runs the code that
writes there, and checks that the run is refused with a sentence naming the link and that the
file or folder outside is exactly as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tasks.io import atomic_write_json
from tasks.layout import OutputDir
from tasks.lock import ensure_free, output_dir_lock
from tasks.models.persistence import save_model
from tasks.results.champion import promote_run
from tasks.results.registry import append_registry, read_registry, repair_registry_tail
from tasks.validation.scan_cache import open_cache
from tests.helpers import write_fake_run

PRECIOUS = "root:x:0:0:root:/root:/bin/bash\nsomeone:x:1000:1000::/home/someone:/bin/sh"  # no final newline


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A file outside the output directory that nothing may change."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    path = folder / "passwd"
    path.write_text(PRECIOUS)
    return path


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "outputs"
    folder.mkdir()
    OutputDir(folder)  # known as an output directory, as every run makes it
    return folder


def plant(link: Path, target: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def untouched(outside: Path) -> bool:
    folder = outside.parent
    return outside.read_text() == PRECIOUS and sorted(p.name for p in folder.iterdir()) == [outside.name]


def refused(link: Path) -> Any:
    """The error a planted link must give: a PermissionError (never retried) naming the link."""
    return pytest.raises(PermissionError, match=f"{link.name}.*symbolic link inside the output directory")


def test_a_link_at_the_lock_is_refused_by_runs_and_by_the_busy_check(out: Path, outside: Path) -> None:
    lock = plant(out / ".lock", outside)
    with refused(lock):
        with output_dir_lock(out):
            pass
    with refused(lock):
        ensure_free(out)
    assert untouched(outside)


def test_a_link_at_the_registry_is_neither_appended_to_trimmed_nor_read(out: Path, outside: Path) -> None:
    registry = plant(out / "registry.jsonl", outside)
    with refused(registry):
        append_registry(out, {"decision": "kept"})
    with refused(registry):
        repair_registry_tail(out)  # the last line has no newline: it would be cut
    with refused(registry):
        read_registry(out)  # its lines would be quoted in the error
    assert untouched(outside)


def test_a_hard_link_or_a_fifo_where_a_file_is_changed_in_place_is_refused(out: Path, outside: Path) -> None:
    os.link(outside, out / "registry.jsonl")
    with pytest.raises(PermissionError, match="2 hard links"):
        append_registry(out, {"decision": "kept"})
    assert untouched(outside.parent / outside.name) and outside.read_text() == PRECIOUS
    os.mkfifo(out / ".lock")
    with pytest.raises(PermissionError, match="not a regular file"):  # and it does not hang on the FIFO
        with output_dir_lock(out):
            pass


def promoted(out: Path, tmp_path: Path) -> Path:
    """An output directory with a champion, and a better run waiting to be promoted."""
    data = tmp_path / "data"
    promote_run(write_fake_run(out / "runs" / "run-1", data, images=False, best_errors=4), out)
    return write_fake_run(out / "runs" / "run-2", data, images=False, best_errors=0)


def test_a_link_at_champion_json_or_the_champion_folder_is_refused(out: Path, outside: Path, tmp_path: Path) -> None:
    better = promoted(out, tmp_path)
    record = out / "champion" / "champion.json"
    record.unlink()
    plant(record, outside)
    with refused(record):
        promote_run(better, out)
    assert untouched(outside) and record.is_symlink()

    record.unlink()
    (out / "champion").rename(tmp_path / "old-champion")
    elsewhere = outside.parent
    champion = plant(out / "champion", elsewhere)
    with refused(champion):
        promote_run(better, out)
    assert untouched(outside)


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_link_in_the_cache_is_never_written_through(out: Path, outside: Path, where: str) -> None:
    step = OutputDir(out).step("train_baselines", "0123abcd")
    metrics, model = step / "metrics.json", step / "models" / "rf.skops"
    if where == "file":
        metrics_link, model_link = plant(metrics, outside), plant(model, outside)
    else:
        metrics_link = model_link = plant(OutputDir(out).cache, outside.parent)
    with refused(metrics_link):
        atomic_write_json(metrics, {"macro_f1": 1.0})
    with refused(model_link):
        save_model({"not": "a model"}, model)
    assert untouched(outside)


def test_a_link_at_the_image_scan_cache_is_not_opened_as_a_database(out: Path, outside: Path) -> None:
    database = plant(OutputDir(out).image_scan_cache / "scan.sqlite", outside)
    with refused(database):
        open_cache(database)
    assert untouched(outside)


@pytest.mark.parametrize("folder", ["runs", "predictions"])
def test_a_link_instead_of_the_runs_folder_receives_no_run(out: Path, outside: Path, folder: str) -> None:
    link = plant(out / folder, outside.parent)
    with refused(link):
        OutputDir(out).new_run() if folder == "runs" else OutputDir(out).new_prediction()
    assert untouched(outside)


def test_links_above_the_output_directory_are_the_users_choice(tmp_path: Path) -> None:
    real = tmp_path / "big-disk" / "outputs"
    real.mkdir(parents=True)
    chosen = plant(tmp_path / "outputs", real)  # the output directory itself is a link: fine
    run = OutputDir(chosen).new_run()
    atomic_write_json(run.root / "metrics.json", {"ok": True})
    append_registry(chosen, {"decision": "kept"})
    assert json.loads((real / "runs" / run.root.name / "metrics.json").read_text()) == {"ok": True}
    assert len(read_registry(chosen)) == 1
