"""Every plot of a run is drawn from the run folder's files and is a real, readable PNG.

`write_fake_run` builds a small but consistent run folder (the same files a real run leaves,
metrics computed by the real evaluation code) and is shared with the report and champion tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.results.evaluation import evaluate_models
from tasks.results.plots import (
    PLOT_NAMES,
    make_run_plots,
    misclassified_items,
    pick_misclassified,
    plot_confusion_matrix,
    plot_misclassified_gallery,
    plot_per_class_f1,
)
from tasks.results.submission import write_run_submission

COARSE = ["Aves", "Reptilia", "Mammalia", "Arachnida", "Magnoliopsida", "Insecta", "Liliopsida", "Pinopsida"]
HOLDOUT_PER_CLASS = 4
BEST = "efficientnet_lite0_finetuned"
OTHER = "pixels_random_forest"


def image_name(i: int) -> str:
    return f"{i:040x}.jpg"


def write_image(path: Path, index: int) -> None:
    """A tiny image in one of several modes (the gallery must cope with any of them)."""
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    mode = ["RGB", "L", "P", "RGBA", "CMYK"][index % 5]
    image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG" if mode in ("P", "RGBA") else "JPEG")


def build_samples(data_dir: Path, split_seed: int = 0) -> pd.DataFrame:
    """8 classes x (6 labelled + 2 test) images; ``split_seed`` decides which rows are the hold-out."""
    rows = []
    index = 0
    rng = np.random.default_rng(split_seed)
    for label in range(len(COARSE)):
        labelled = list(range(index, index + 10))
        holdout = set(rng.choice(labelled, HOLDOUT_PER_CLASS, replace=False).tolist())
        for i in labelled:
            rows.append({"split": "train", "filename": image_name(i), "coarse": label, "fine": label,
                         "role": "holdout" if i in holdout else "train"})
        index += 10
    for label in range(len(COARSE)):
        for _ in range(2):
            rows.append({"split": "test", "filename": image_name(index), "coarse": pd.NA, "fine": pd.NA,
                         "role": "test"})
            index += 1
    frame = pd.DataFrame(rows)
    frame.insert(2, "path", [str(data_dir / "public" / s / f) for s, f in zip(frame["split"], frame["filename"])])
    return frame


def default_predictions(truth: Sequence[int], errors: int) -> list[int]:
    """The true labels with ``errors`` of them replaced by the next class (spread over classes)."""
    pred = list(truth)
    firsts = [i * HOLDOUT_PER_CLASS for i in range(len(COARSE))]
    positions = firsts + [i + 1 for i in firsts]
    for position in positions[:errors]:
        pred[position] = (pred[position] + 1) % len(COARSE)
    return pred


def write_fake_run(
    run_dir: Path,
    data_dir: Path,
    best_errors: int = 3,
    best_predictions: Sequence[int] | None = None,
    split_seed: int = 0,
    history: bool = True,
    resampling: bool = True,
    images: bool = True,
) -> Path:
    """A run folder like `python -m flows.full` leaves: table, split, predictions, metrics, submission.

    The best model's hold-out predictions are ``best_predictions`` (hold-out order: by class, then
    table order) or the truth with ``best_errors`` mistakes; a weaker second model makes more.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    table = build_samples(data_dir, split_seed)
    if images:
        for _, row in table[table["role"] == "holdout"].iterrows():
            if not Path(row["path"]).exists():
                write_image(Path(row["path"]), int(row["filename"][:-4], 16))
    (run_dir / "classes.json").write_text(json.dumps({"coarse": COARSE, "fine": COARSE}))
    table.drop(columns="role").to_csv(run_dir / "samples.csv", index=False)
    table.to_csv(run_dir / "table.csv", index=False)
    table.loc[:, ["filename", "split", "role"]].to_csv(run_dir / "split.csv", index=False)
    holdout = table[table["role"] == "holdout"].sort_values("coarse", kind="stable")
    truth = holdout["coarse"].astype(int).tolist()
    best = list(best_predictions) if best_predictions is not None else default_predictions(truth, best_errors)
    other = default_predictions(truth, 12)
    test = table[table["role"] == "test"]
    predictions = {}
    for model, pred in ((BEST, best), (OTHER, other)):
        frame = pd.concat([
            holdout.loc[:, ["filename", "split", "role"]].assign(pred=pred),
            test.loc[:, ["filename", "split", "role"]].assign(pred=np.arange(len(test)) % len(COARSE)),
        ])
        path = run_dir / "predictions" / f"{model}.csv"
        path.parent.mkdir(exist_ok=True)
        frame.to_csv(path, index=False)
        predictions[model] = path
    summary = evaluate_models(run_dir / "table.csv", predictions, run_dir / "classes.json", "coarse", run_dir)
    write_run_submission(Path(summary["predictions_path"]), run_dir / "samples.csv", "coarse", len(COARSE), run_dir)
    (run_dir / "models").mkdir(exist_ok=True)
    (run_dir / "models" / f"{summary['best_model']}.keras").write_bytes(b"fake model weights")
    (run_dir / "models" / f"{OTHER}.joblib").write_bytes(b"fake forest")
    if history:
        epochs = [{"stage": 1, "epoch": e, "loss": 1.5 / e, "accuracy": 0.5 + 0.04 * e, "val_macro_f1": 0.4 + 0.05 * e}
                  for e in range(1, 9)]
        epochs += [{"stage": 2, "epoch": e, "loss": 0.2 - 0.02 * e, "accuracy": 0.85 + 0.01 * e,
                    "val_macro_f1": 0.82 + 0.01 * e} for e in range(1, 4)]
        (run_dir / "training_history.json").write_text(json.dumps({"model": "efficientnet_lite0", "epochs": epochs}))
    if resampling:
        before = table[table["role"] == "train"]["coarse"].astype(int).value_counts().sort_index().tolist()
        (run_dir / "resampling.json").write_text(json.dumps(
            {"strategy": "oversample", "before": before, "after": [max(before)] * len(before)}))
    return run_dir


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


def test_fifty_classes_give_a_heat_map(tmp_path: Path) -> None:
    names = [f"Family{i:02d}idae" for i in range(50)]
    rng = np.random.default_rng(0)
    matrix = rng.dirichlet(np.ones(50), size=50)
    assert_real_png(plot_confusion_matrix(matrix, names, "m", tmp_path / "cm.png"))
    assert_real_png(plot_per_class_f1({"a": rng.random(50).tolist(), "b": rng.random(50).tolist()}, names,
                                      tmp_path / "f1.png"))


def test_shape_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 classes"):
        plot_confusion_matrix([[1.0, 0.0], [0.0, 1.0]], ["a", "b", "c"], "m", tmp_path / "x.png")
