"""Stage-1 features: run the frozen backbone once over every image and cache the result.

Training a head on cached features costs well under a second per epoch, where running a frozen
backbone every epoch costs tens of seconds on a CPU (DESIGN §9). The cache is keyed by the
backbone, its weights, the input size, the feature kind, the augmented views and every image's
(path, size, mtime), so a changed image, size or backbone recomputes and nothing else does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tasks.data.dataset import image_ok_flags
from tasks.data.splitting import ROLE_TRAIN, read_table
from tasks.io import atomic_write, fingerprint_text
from tasks.models.features import file_signature
from tasks.models.settings import TransferSettings


@dataclass(frozen=True)
class EmbeddingSpec:
    """What determines the cached features: derived from `TransferSettings` (no defaults of its own,
    so a setting cannot have two)."""

    backbone: str
    weights: str
    image_size: int
    pooled: bool  # False: keep the feature map (for the original Flatten head)
    views: int  # extra augmented views of each training image
    batch_size: int
    seed: int

    @classmethod
    def of(cls, settings: TransferSettings, seed: int) -> EmbeddingSpec:
        """The features the transfer model (and the embedding baselines) of these settings read."""
        return cls(
            backbone=settings.backbone,
            weights=str(settings.weights),
            image_size=settings.input_size(),
            pooled=settings.head == "gap",
            views=settings.views,
            batch_size=settings.batch_size,
            seed=seed,
        )


def embedding_key(spec: EmbeddingSpec, paths: list[str], roles: list[str]) -> str:
    """Cache key: the settings, every image's signature and (for the augmented views) the roles."""
    settings = json.dumps({k: v for k, v in asdict(spec).items() if k != "batch_size"}, sort_keys=True)
    role_part = ",".join(roles) if spec.views else ""
    return fingerprint_text(settings, role_part, *(file_signature(p) for p in paths))


def extract_features(
    model, paths: list[str], ok: np.ndarray, spec: EmbeddingSpec, augment: bool, seed: int
) -> np.ndarray:  # noqa: ANN001
    """Run ``model`` over the images in order; float16 on disk is plenty for features."""
    from tasks.models.images import make_image_dataset

    data = make_image_dataset(paths, None, spec.image_size, spec.batch_size, ok=ok, augment=augment, seed=seed)
    batches = [np.asarray(model.predict_on_batch(batch)) for batch in data]
    width = model.output_shape[1:]
    return np.concatenate(batches).astype(np.float16) if batches else np.zeros((0, *width), np.float16)


def compute_embeddings(table_path: Path, spec: EmbeddingSpec, cache_dir: Path, refresh: bool = False) -> Path:
    """Cached ``.npz`` with ``clean`` (every table row, table order) and ``views`` (augmented
    copies of the train rows, ``views x n_train x ...``) plus ``train_rows`` (their row numbers)."""
    from tasks.models.backbones import build_backbone

    table = read_table(table_path)
    paths = table["path"].tolist()
    key = embedding_key(spec, paths, table["role"].tolist())
    target = Path(cache_dir) / "embeddings" / f"{spec.backbone}-{spec.image_size}-{key}.npz"
    if target.is_file() and not refresh:
        return target
    import keras

    keras.utils.set_random_seed(spec.seed)
    model = build_backbone(
        spec.backbone, input_size=spec.image_size, weights=spec.weights, pooling="avg" if spec.pooled else None
    )
    ok = image_ok_flags(table)
    clean = extract_features(model, paths, ok, spec, augment=False, seed=spec.seed)
    train_rows = np.flatnonzero((table["role"] == ROLE_TRAIN).to_numpy())
    views = [
        extract_features(model, [paths[i] for i in train_rows], ok[train_rows], spec, augment=True, seed=spec.seed + v)
        for v in range(1, spec.views + 1)
    ]
    stacked = np.stack(views) if views else np.zeros((0, len(train_rows), *clean.shape[1:]), np.float16)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, clean=clean, views=stacked, train_rows=train_rows)

    return atomic_write(target, write)


def load_embeddings(path: Path) -> dict[str, np.ndarray]:
    """Load a cached embeddings file as float32 arrays."""
    with np.load(path) as data:
        return {
            "clean": data["clean"].astype(np.float32),
            "views": data["views"].astype(np.float32),
            "train_rows": data["train_rows"],
        }
