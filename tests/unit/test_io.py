"""Atomic writes: a full disk is named (file, size, folder) and never retried; modes honour the umask."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from flows.retries import is_transient
from tasks import io
from tasks.io import atomic_write, atomic_write_json, atomic_write_text, save_weights_atomically


def no_space(*_: Any, **__: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def assert_disk_full(error: pytest.ExceptionInfo[OSError], path: Path) -> None:
    """The error keeps ENOSPC (so retries treat it as permanent) and says which file and disk."""
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC
    assert str(path) in message and "disk holding" in message and str(path.parent) in message
    assert "full" in message
    assert not is_transient(error.value)


def test_a_full_disk_names_the_file_its_size_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "run" / "metrics.json"
    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(OSError) as error:
        atomic_write_text(target, "x" * 1234)
    assert_disk_full(error, target)
    assert "1,234 bytes" in str(error.value)
    assert sorted(p.name for p in target.parent.iterdir()) == []  # no temporary file left behind
    with pytest.raises(OSError) as error:
        atomic_write_json(target, {"a": 1})
    assert_disk_full(error, target)


def test_a_full_disk_during_a_callable_write_or_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "plot.png"

    def half_then_full(tmp: Path) -> None:
        tmp.write_bytes(b"\x89PNG" * 10)
        no_space()

    with pytest.raises(OSError) as error:
        atomic_write(target, half_then_full)
    assert_disk_full(error, target)
    assert "40 bytes written" in str(error.value)
    monkeypatch.setattr(os, "replace", no_space)  # a full journal can fail the rename too
    with pytest.raises(OSError) as error:
        atomic_write_text(target, "ok")
    assert_disk_full(error, target)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_saving_weights(tmp_path: Path) -> None:
    class Model:
        def save_weights(self, path: Path) -> None:
            Path(path).write_bytes(b"h5")
            no_space()

    target = tmp_path / "checkpoints" / "last.weights.h5"
    with pytest.raises(OSError) as error:
        save_weights_atomically(Model(), target)  # type: ignore[arg-type]
    assert_disk_full(error, target)
    assert list(target.parent.iterdir()) == []


def test_other_write_errors_pass_through_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*_: Any, **__: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "write_text", denied)
    with pytest.raises(PermissionError, match="Permission denied"):
        atomic_write_text(tmp_path / "a.txt", "x")


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        text = atomic_write_text(tmp_path / "metrics.json", "{}")
        png = atomic_write(tmp_path / "plot.png", lambda tmp: tmp.write_bytes(b"png"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(text.stat().st_mode) == mode
    assert stat.S_IMODE(png.stat().st_mode) == mode


def test_the_umask_fallback_reads_it_once_and_restores_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without /proc (not Linux), the umask is read with os.umask once, under a lock, and put back."""
    monkeypatch.setattr(io, "_umask_from_proc", lambda: None)
    monkeypatch.setattr(io, "_cached_umask", None)
    previous = os.umask(0o027)
    try:
        assert io.file_mode() == 0o640
        assert os.umask(0o027) == 0o027  # restored after reading it
        os.umask(0o077)
        assert io.file_mode() == 0o640  # cached: os.umask is not called again
    finally:
        os.umask(previous)


def numpy_short_write(path: Path) -> None:
    """What ``np.save`` raises on a full disk: an OSError without errno (measured on a 2 MB tmpfs)."""
    raise OSError("1000000 requested and 262128 written")


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (numpy_short_write, "No space left"),
        (
            lambda _: (_ for _ in ()).throw(OSError("Not enough free space to write 20275200 bytes after offset 128")),
            "No space left",
        ),
        (lambda _: (_ for _ in ()).throw(OSError(errno.EDQUOT, "Disk quota exceeded")), "Disk quota exceeded"),
    ],
    ids=["numpy-short-write", "numpy-fallocate", "quota"],
)
def test_every_way_of_saying_disk_full_is_named_and_keeps_the_earlier_file(
    tmp_path: Path, failure: Any, words: str
) -> None:
    target = tmp_path / "cache" / "features.npy"
    atomic_write_text(target, "the earlier good run's file")
    with pytest.raises(io.DiskFullError) as error:
        atomic_write(target, failure)
    message = str(error.value)
    assert words in message and str(target) in message and "MB free" in message
    assert not is_transient(error.value)
    assert target.read_text() == "the earlier good run's file"
    assert sorted(p.name for p in target.parent.iterdir()) == ["features.npy"]


def test_a_full_disk_without_errno_is_never_retried_even_outside_our_writers() -> None:
    assert not is_transient(OSError("Not enough free space to write 20275200 bytes after offset 128"))
    assert is_transient(OSError("something else went wrong"))


def test_appending_to_the_registry_or_copying_a_file_names_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.io import copy_file
    from tasks.results.registry import append_registry

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(io.DiskFullError) as error:
        append_registry(tmp_path, {"decision": "kept"})
    assert_disk_full(error, tmp_path / "registry.jsonl")
    monkeypatch.undo()
    source = tmp_path / "metrics.json"
    source.write_text("{}")
    monkeypatch.setattr(io.shutil, "copy2", no_space)
    with pytest.raises(io.DiskFullError) as error:
        copy_file(source, tmp_path / "champion" / "metrics.json")
    assert_disk_full(error, tmp_path / "champion" / "metrics.json")
