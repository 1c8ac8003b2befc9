"""The drift reference: what a training run keeps of its data, so later data can be compared with it.

A run that computed backbone features writes ``<run>/drift_reference.npz`` (`RunFolder.drift_reference`);
the champion folder carries a copy (tasks.results.champion), and the validate flow compares the
current data with it (tasks.drift.check). The file is small (at most `REFERENCE_ROWS` rows of
float16 features, about 2.5 MiB for a 1280-wide backbone) and holds exactly these arrays:

    features        float16 (n, d)  clean features of a seeded subsample (the split seed) of the
                                    train-role rows whose images decode; a feature map (the
                                    Flatten head's features) is averaged over its spatial axes
    coarse_counts   int64 (n_coarse,)   label counts of all train-role rows
    fine_counts     int64 (n_fine,)
    spec            0-d str         JSON of the `EmbeddingSpec` that computed the features, so
                                    the check computes today's features the same way

It is read back with ``allow_pickle=False`` and checked (names, dtypes, shapes, finite values,
the recipe's keys and types, a backbone known here and features of its width,
`BACKBONE_FEATURE_WIDTHS`); anything else is `DamagedReference`, naming the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.cache_files import DamagedCache, check_array, expect_keys, read_npz
from tasks.data.columns import ROLE_TRAIN, TARGETS
from tasks.data.dataset import image_ok_flags
from tasks.data.splitting import read_table
from tasks.io import atomic_write
from tasks.layout import RunFolder
from tasks.logs import get_logger
from tasks.models.embeddings import EmbeddingSpec, clean_features, load_embeddings

#: Most train rows whose features the reference keeps (the KS tests need no more).
REFERENCE_ROWS = 1000
#: The arrays of a reference file, and nothing else.
REFERENCE_ARRAYS = ("features", "coarse_counts", "fine_counts", "spec")
#: The width of each known backbone's (pooled) features, kept free of Keras like
#: `tasks.models.settings.DEFAULT_INPUT_SIZES`: a reference is checked against it without building
#: a model. It equals ``tasks.models.backbones.BACKBONES[name].feature_dim`` (a unit test says so).
BACKBONE_FEATURE_WIDTHS: dict[str, int] = {"efficientnet_lite0": 1280, "efficientnetv2s": 1280, "mobilenetv2": 1280}


class DamagedReference(Exception):
    """A drift reference failed its check: ``path`` names the file, ``reason`` says what was wrong."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"unusable drift reference {path}: {reason}")
        self.path, self.reason = Path(path), reason


@dataclass(frozen=True)
class DriftReference:
    """A reference file's content, checked."""

    features: np.ndarray  # float16 (n, d)
    label_counts: dict[str, np.ndarray]  # target -> int64 counts of the train rows, by class index
    spec: EmbeddingSpec


def pooled(features: np.ndarray) -> np.ndarray:
    """One vector per image: a feature map ``(n, h, w, c)`` averaged over its spatial axes (float32)."""
    features = np.asarray(features, dtype=np.float32)
    return features.reshape(len(features), -1, features.shape[-1]).mean(axis=1) if features.ndim > 2 else features


def seeded_subsample(rows: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``rows``, chosen with ``seed`` (the same rows on every rerun), in order."""
    rows = np.asarray(rows)
    if len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def label_counts(labels: pd.Series, n_classes: int = 0) -> np.ndarray:
    """How many rows carry each class index (at least ``n_classes`` entries; missing labels skipped)."""
    values = pd.to_numeric(labels, errors="coerce").dropna().astype(np.int64).to_numpy()
    return np.bincount(values[values >= 0], minlength=n_classes).astype(np.int64)


def write_drift_reference(table_path: Path, embeddings_path: Path, spec: EmbeddingSpec) -> Path:
    """Write the reference of the run whose table is ``table_path`` from its cached features.

    ``embeddings_path`` is the backbone-features file of that table (tasks.models.embeddings),
    so this costs one read of it and no backbone pass.
    """
    table_path = Path(table_path)
    run = RunFolder(table_path.parent)
    if run.table != table_path:
        raise ValueError(f"{table_path} is not a run's table ({run.table}): no run folder to write the reference into")
    table = read_table(table_path)
    # load_embeddings: a damaged features file is computed again (with one warning), as every reader does.
    clean = load_embeddings(Path(embeddings_path), table_path, spec)["clean"]
    train = (table["role"] == ROLE_TRAIN).to_numpy()
    rows = seeded_subsample(np.flatnonzero(train & image_ok_flags(table)), REFERENCE_ROWS, spec.seed)
    features = pooled(clean[rows]).astype(np.float16)
    counts = {target: label_counts(table.loc[train, target]) for target in TARGETS}
    recipe = np.array(json.dumps(asdict(spec), sort_keys=True))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, features=features, coarse_counts=counts["coarse"], fine_counts=counts["fine"], spec=recipe)

    return atomic_write(run.drift_reference, write)


def parse_spec(path: Path, text: str) -> EmbeddingSpec:
    """The `EmbeddingSpec` of a reference's JSON recipe, its keys and types checked."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise DamagedReference(path, f"its spec is not JSON ({err})") from err
    kinds: dict[str, type] = {"str": str, "int": int, "bool": bool}  # the field annotations, as text
    types = {f.name: kinds[str(f.type)] for f in fields(EmbeddingSpec)}
    if isinstance(data, dict) and sorted(data) != sorted(types):
        raise DamagedReference(path, f"its spec has keys {sorted(data)}, expected {sorted(types)}")
    try:
        return EmbeddingSpec(**expect_keys(path, data, types))
    except DamagedCache as err:
        raise DamagedReference(path, f"its spec {err.reason}") from err


def read_drift_reference(path: Path) -> DriftReference:
    """A reference file, checked (module docstring); `DamagedReference` naming the file otherwise."""
    path = Path(path)
    try:
        arrays = read_npz(path, REFERENCE_ARRAYS)  # allow_pickle=False, every member's CRC checked
        features = check_array(path, "features", arrays["features"], (None, None), np.float16)
        counts: dict[str, np.ndarray] = {
            target: check_array(path, f"{target}_counts", arrays[f"{target}_counts"], (None,), np.int64)
            for target in TARGETS
        }
    except DamagedCache as err:
        raise DamagedReference(path, err.reason) from err
    spec = arrays["spec"]
    if spec.ndim != 0 or spec.dtype.kind != "U":
        raise DamagedReference(path, f"spec has shape {spec.shape} and dtype {spec.dtype}, expected one string")
    if len(features) < 2 or features.shape[1] < 1:
        raise DamagedReference(path, f"features has shape {features.shape}: too few rows to compare with")
    if not np.isfinite(features).all():
        raise DamagedReference(path, "features holds non-finite values")
    if any((c < 0).any() for c in counts.values()):
        raise DamagedReference(path, "a label count is negative")
    recipe = parse_spec(path, str(spec))
    check_width(path, recipe, features)
    return DriftReference(features=features, label_counts=counts, spec=recipe)


def check_width(path: Path, spec: EmbeddingSpec, features: np.ndarray) -> None:
    """`DamagedReference` unless ``spec`` names a backbone this code knows and ``features`` have its
    width: today's features are computed with that backbone, so any other reference could only
    fail later, in the comparison, with a message that does not name the file."""
    width = BACKBONE_FEATURE_WIDTHS.get(spec.backbone)
    if width is None:
        known = ", ".join(sorted(BACKBONE_FEATURE_WIDTHS))
        raise DamagedReference(path, f"its spec names backbone {spec.backbone!r}, which is not known here ({known})")
    if features.shape[1] != width:
        raise DamagedReference(
            path, f"features are {features.shape[1]} wide, but {spec.backbone} features are {width} wide"
        )


def verify_drift_reference(path: Path) -> bool:
    """Whether ``path`` is a sound drift reference, to copy into the champion (tasks.results.champion).

    False when there is none (a run without backbone features), and False with one warning naming
    the file and the fault when it is damaged: the drift check is advisory, so a damaged reference
    must not cost a better model its promotion; the champion goes without one, which the validate
    flow reports as "no drift reference" (tasks.drift.check) instead of tripping over it later.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        read_drift_reference(path)
    except DamagedReference as err:
        get_logger().warning("%s; the champion gets no drift reference (drift checks skip labels and embeddings)", err)
        return False
    return True


def backbone_features(spec: EmbeddingSpec, paths: list[str], ok: np.ndarray) -> np.ndarray:
    """Clean features of ``paths`` computed as training computes them (tasks.models.embeddings:
    `clean_features`, float16), pooled like the reference."""
    return pooled(clean_features(spec, paths, ok)).astype(np.float16)
