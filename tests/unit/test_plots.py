"""Every plot of a run is drawn from the run folder's files and is a real, readable PNG.

`write_fake_run` builds a small but consistent run folder (the same files a real run leaves,
metrics computed by the real evaluation code) and is shared with the report and champion tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.results.gallery import misclassified_items, pick_misclassified, plot_misclassified_gallery
from tasks.results.plots import PLOT_NAMES, make_run_plots, plot_confusion_matrix, plot_per_class_f1
from tests.helpers import BEST, write_fake_run


def assert_real_png(path: Path, min_side: int = 200) -> None:
    """A PNG that opens, is big enough to read and is not one flat colour."""
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > min_side and image.height > min_side, (path.name, image.size)
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.reshape(-1, 3).std(axis=0).max() > 5, f"{path.name} is a flat colour"
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 20, f"{path.name} has almost no content"


@pytest.fixture()
def fake_run(tmp_path: Path) -> Path:
    return write_fake_run(tmp_path / "runs" / "20260101-000000-abcdef", tmp_path / "data")


def test_every_plot_is_drawn_from_a_run_folder(fake_run: Path) -> None:
    plots = make_run_plots(fake_run)
    assert sorted(plots) == sorted(PLOT_NAMES)
    for name, path in plots.items():
        assert path == fake_run / "plots" / f"{name}.png"
        assert_real_png(path)
    assert not [p for p in (fake_run / "plots").iterdir() if p.suffix != ".png"]  # no temp files left


def test_plots_without_inputs_are_skipped_not_faked(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", tmp_path / "data", history=False, resampling=False)
    plots = make_run_plots(run)
    assert "training_curves" not in plots and "class_distribution" not in plots
    assert not (run / "plots" / "training_curves.png").exists()
    assert {"confusion_matrix", "per_class_f1", "model_comparison", "misclassified"} <= set(plots)


def test_gallery_says_so_when_nothing_is_wrong(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", tmp_path / "data", best_errors=0, images=False)
    items, total = misclassified_items(run, json.loads((run / "metrics.json").read_text()))
    assert (items, total) == ([], 0)
    assert_real_png(plot_misclassified_gallery(items, tmp_path / "none.png", model=BEST, total_wrong=0))


def test_gallery_survives_unreadable_images(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    items = [(str(broken), "Aves", "Insecta"), (str(tmp_path / "missing.jpg"), "Reptilia", "Aves")]
    assert_real_png(plot_misclassified_gallery(items, tmp_path / "g.png", model="m", total_wrong=2))


def test_gallery_takes_mistakes_round_robin_over_true_classes() -> None:
    wrong = pd.DataFrame({"coarse": [4] * 20 + [0, 1], "pred": [6] * 20 + [1, 2]})
    chosen = pick_misclassified(wrong, "coarse", limit=4)
    assert sorted(chosen["coarse"].tolist()) == [0, 1, 4, 4]


@pytest.mark.slow
def test_fifty_classes_give_a_heat_map(tmp_path: Path) -> None:
    names = [f"Family{i:02d}idae" for i in range(50)]
    rng = np.random.default_rng(0)
    matrix = rng.dirichlet(np.ones(50), size=50)
    assert_real_png(plot_confusion_matrix(matrix, names, "m", tmp_path / "cm.png"))
    assert_real_png(
        plot_per_class_f1({"a": rng.random(50).tolist(), "b": rng.random(50).tolist()}, names, tmp_path / "f1.png")
    )


def test_shape_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 classes"):
        plot_confusion_matrix([[1.0, 0.0], [0.0, 1.0]], ["a", "b", "c"], "m", tmp_path / "x.png")
