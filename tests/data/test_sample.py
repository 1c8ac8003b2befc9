"""The embedded sample: Kaggle layout, deterministic, realistic imbalance, every family present."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.data.sample import GENERATOR_VERSION, STAMP_NAME, ensure_sample, generate_sample, render_image
from tasks.data.taxonomy import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE
from tests.helpers import TINY


def digest_tree(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_layout_matches_kaggle(tiny_sample_master: Path) -> None:
    public = tiny_sample_master / "public"
    info = json.loads((public / "info.json").read_text())
    assert info == {"coarse": list(COARSE_NAMES), "fine": list(FINE_NAMES)}
    for split in ("train", "val", "test"):
        frame = pd.read_csv(public / f"{split}.csv", dtype=str)
        assert list(frame.columns) == ["filename", "fine", "coarse"]
        assert frame["filename"].str.fullmatch(r"[0-9a-f]{40}\.jpg").all()
        assert all((public / split / name).is_file() for name in frame["filename"])
        assert len(list((public / split).iterdir())) == len(frame)


def test_labels_are_consistent_and_every_family_present(tiny_sample_master: Path) -> None:
    public = tiny_sample_master / "public"
    labelled = pd.concat([pd.read_csv(public / f"{s}.csv") for s in ("train", "val")])
    assert set(labelled["fine"]) == set(range(len(FINE_NAMES)))
    assert all(FINE_TO_COARSE[f] == c for f, c in zip(labelled["fine"], labelled["coarse"]))
    test = pd.read_csv(public / "test.csv")
    assert len(test) == TINY.test_per_family * len(FINE_NAMES)


def test_coarse_imbalance_mirrors_real_data(tiny_sample_master: Path) -> None:
    public = tiny_sample_master / "public"
    counts = pd.concat([pd.read_csv(public / f"{s}.csv") for s in ("train", "val")])["coarse"].value_counts()
    assert len(counts) == len(COARSE_NAMES)
    assert counts.max() / counts.min() == 18  # Magnoliopsida's 18 families vs one-family classes
    assert COARSE_NAMES[counts.idxmax()] == "Magnoliopsida"


def test_generation_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    spec = replace(TINY, per_family=3, test_per_family=1)
    a = digest_tree(generate_sample(tmp_path / "a", spec))
    b = digest_tree(generate_sample(tmp_path / "b", spec))
    c = digest_tree(generate_sample(tmp_path / "c", replace(spec, seed=spec.seed + 1)))
    assert a == b
    assert a != c


def test_images_vary_in_size_and_include_grayscale_and_cmyk(tmp_path: Path) -> None:
    spec = replace(TINY, per_family=3, test_per_family=1, special_mode_share=0.3)
    public = generate_sample(tmp_path / "d", spec) / "public"
    modes, sizes = set(), set()
    for path in (public / "train").iterdir():
        with Image.open(path) as image:
            assert image.format == "JPEG"
            modes.add(image.mode)
            sizes.add(image.size)
    assert {"RGB", "L", "CMYK"} <= modes
    assert len(sizes) > 10 and len({w / h for w, h in sizes}) > 10


def test_ensure_sample_reuses_and_refuses_foreign_folders(tmp_path: Path) -> None:
    spec = replace(TINY, per_family=3, test_per_family=1)
    first = ensure_sample(tmp_path / "s", spec)
    mtime = (first / "public" / "train.csv").stat().st_mtime_ns
    assert ensure_sample(tmp_path / "s", spec) == first
    assert (first / "public" / "train.csv").stat().st_mtime_ns == mtime
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a generated sample"):
        ensure_sample(foreign, spec)
    assert (foreign / "precious.txt").read_text() == "keep"
    assert re.fullmatch(r"[0-9a-f]{40}\.jpg", pd.read_csv(first / "public" / "val.csv")["filename"][0])


def test_ensure_sample_rebuilds_a_sample_of_another_generator(tmp_path: Path) -> None:
    """A sample drawn by an older generator (same settings) is rebuilt, not reused."""
    spec = replace(TINY, per_family=3, test_per_family=1)
    folder = ensure_sample(tmp_path / "s", spec)
    stamp = folder / STAMP_NAME
    current = json.loads(stamp.read_text())
    assert current["generator"] == GENERATOR_VERSION
    old = {key: value for key, value in current.items() if key != "generator"}  # what version 1 wrote
    stamp.write_text(json.dumps(old))
    (folder / "public" / "train.csv").write_text("stale")
    assert ensure_sample(tmp_path / "s", spec) == folder
    assert json.loads(stamp.read_text()) == current
    assert (folder / "public" / "train.csv").read_text().startswith("filename,fine,coarse")


def test_nothing_but_the_subject_depends_on_the_label(tmp_path: Path) -> None:
    """Size, aspect ratio, colour mode and JPEG quality are drawn independently of the family:
    the same draws for two families give images of the same size whose pixels differ."""
    spec = replace(TINY, per_family=3, test_per_family=1)
    a = render_image(0, np.random.default_rng(5), spec)
    b = render_image(len(FINE_NAMES) - 1, np.random.default_rng(5), spec)
    assert a.size == b.size
    assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() > 0


def test_an_interrupted_generation_leaves_no_partial_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cancelled from the UI (Prefect raises a BaseException on SIGTERM) or Ctrl-C part-way
    through the sample leaves neither a half sample nor its ``.partial`` folder behind."""
    import tasks.data.sample as sample

    calls = []
    real_write_split = sample.write_split

    def cancelled_after_one_split(*args: object, **kwargs: object) -> None:
        if calls:
            raise KeyboardInterrupt  # what a cancellation looks like to the code (not an Exception)
        calls.append(1)
        real_write_split(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sample, "write_split", cancelled_after_one_split)
    spec = replace(TINY, per_family=3, test_per_family=1)
    with pytest.raises(KeyboardInterrupt):
        ensure_sample(tmp_path / "s", spec)
    assert calls and sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(sample, "write_split", real_write_split)
    assert (ensure_sample(tmp_path / "s", spec) / STAMP_NAME).is_file()  # the next run builds it whole
