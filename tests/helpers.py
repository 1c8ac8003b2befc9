"""Helpers shared by the test modules (test modules never import each other)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tasks.data.sample import SampleSpec
from tasks.layout import RunFolder
from tasks.results.evaluation import evaluate_models
from tasks.results.submission import write_run_submission
from tasks.validation.report import ValidationReport

#: The repository root (tests run commands from it).
REPO = Path(__file__).resolve().parents[1]
#: A tiny Kaggle-layout sample: 300 labelled and 100 test images, small sides.
TINY = SampleSpec(per_family=6, test_per_family=2, min_side=48, max_side=96, seed=7)

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
            rows.append(
                {
                    "split": "train",
                    "filename": image_name(i),
                    "coarse": label,
                    "fine": label,
                    "role": "holdout" if i in holdout else "train",
                }
            )
        index += 10
    for _label in range(len(COARSE)):
        for _ in range(2):
            rows.append(
                {"split": "test", "filename": image_name(index), "coarse": pd.NA, "fine": pd.NA, "role": "test"}
            )
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
    run = RunFolder(run_dir)
    table = build_samples(data_dir, split_seed)
    if images:
        for _, row in table[table["role"] == "holdout"].iterrows():
            if not Path(row["path"]).exists():
                write_image(Path(row["path"]), int(row["filename"][:-4], 16))
    run.validation.mkdir(exist_ok=True)
    run.classes.write_text(json.dumps({"coarse": COARSE, "fine": COARSE}))
    table.drop(columns="role").to_csv(run.samples, index=False)
    table.to_csv(run.table, index=False)
    table.loc[:, ["filename", "split", "role"]].to_csv(run.split, index=False)
    holdout = table[table["role"] == "holdout"].sort_values("coarse", kind="stable")
    truth = holdout["coarse"].astype(int).tolist()
    best = list(best_predictions) if best_predictions is not None else default_predictions(truth, best_errors)
    other = default_predictions(truth, 12)
    test = table[table["role"] == "test"]
    predictions = {}
    for model, pred in ((BEST, best), (OTHER, other)):
        frame = pd.concat(
            [
                holdout.loc[:, ["filename", "split", "role"]].assign(pred=pred),
                test.loc[:, ["filename", "split", "role"]].assign(pred=np.arange(len(test)) % len(COARSE)),
            ]
        )
        path = run.predictions_of(model)
        path.parent.mkdir(exist_ok=True)
        frame.to_csv(path, index=False)
        predictions[model] = path
    summary = evaluate_models(run.table, predictions, run.classes, "coarse", run_dir)
    write_run_submission(Path(summary.predictions_path), run.samples, "coarse", len(COARSE), run_dir)
    run.models.mkdir(exist_ok=True)
    run.model_file(summary.best_model, ".keras").write_bytes(b"fake model weights")
    run.model_file(OTHER, ".joblib").write_bytes(b"fake forest")
    if history:
        epochs = [
            {"stage": 1, "epoch": e, "loss": 1.5 / e, "accuracy": 0.5 + 0.04 * e, "val_macro_f1": 0.4 + 0.05 * e}
            for e in range(1, 9)
        ]
        epochs += [
            {
                "stage": 2,
                "epoch": e,
                "loss": 0.2 - 0.02 * e,
                "accuracy": 0.85 + 0.01 * e,
                "val_macro_f1": 0.82 + 0.01 * e,
            }
            for e in range(1, 4)
        ]
        run.training_history.write_text(json.dumps({"model": "efficientnet_lite0", "epochs": epochs}))
    if resampling:
        before = table[table["role"] == "train"]["coarse"].astype(int).value_counts().sort_index().tolist()
        run.resampling.write_text(
            json.dumps({"strategy": "oversample", "before": before, "after": [max(before)] * len(before)})
        )
    return run_dir


#: How a cache file is damaged in the self-healing tests (tasks.cache_files).
DAMAGES = ("truncated", "garbled", "garbled-middle")


def damage_file(path: Path, how: str, seed: int = 0) -> None:
    """Damage a file in place: cut it in half, replace every byte with random ones, or overwrite
    a stretch in the middle with random bytes (headers intact, contents wrong)."""
    data = bytearray(Path(path).read_bytes())
    rng = np.random.default_rng(seed)
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "garbled":
        data = bytearray(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif how == "garbled-middle":
        start, stop = len(data) * 2 // 5, len(data) * 3 // 5
        data[start:stop] = rng.integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    else:
        raise ValueError(f"unknown damage {how!r}; expected one of {DAMAGES}")
    Path(path).write_bytes(bytes(data))


def damage_warnings(records: Sequence[logging.LogRecord], path: Path) -> list[str]:
    """The warnings among ``records`` that name ``path`` as a damaged cache file."""
    return [
        r.getMessage()
        for r in records
        if r.levelno == logging.WARNING and f"Damaged cache file {path} " in r.getMessage()
    ]


def passed_report(data: Path, run: Path) -> ValidationReport:
    """A passed validation of ``data`` in run folder ``run`` (samples.csv where a run keeps it), no warnings."""
    folder = RunFolder(run)
    return ValidationReport(
        passed=True,
        data_dir=str(data),
        run_dir=str(folder.root),
        report_path=str(folder.validation_report),
        docs_index=None,
        samples_path=str(folder.samples),
        quarantine_path=None,
        scan_path=None,
        counts={},
        suites=[],
        failures=[],
        warnings=[],
        quarantined=0,
        flagged_test=0,
        reference="known",
    )
