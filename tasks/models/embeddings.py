"""Stage-1 features: run the frozen backbone once over every image and cache the result.

Training a head on cached features costs well under a second per epoch, where running a frozen
backbone every epoch costs tens of seconds on a CPU (docs/measurements.md). The cache is keyed by the
backbone, its weights, the input size, the feature kind, the augmented views and every image's
(path, size, mtime), so a changed image, size or backbone recomputes and nothing else does.

Every read checks the file against the table (the three arrays and nothing else, no pickles,
float16 features with one clean row per table row, views of exactly the train rows, finite
values; zip verifies each array's CRC), and a damaged file is deleted with one warning and
computed again exactly as a cold run computes it (`tasks.cache_files`). The settings each file
was computed with sit next to it (``<name>.spec.json``), so any reader can rebuild it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from tasks.cache_files import DamagedCache, cache_lock, check_array, describe, discard, expect_keys, read_npz
from tasks.data.dataset import image_ok_flags
from tasks.data.splitting import ROLE_TRAIN, read_table
from tasks.io import atomic_write, atomic_write_json, fingerprint_text
from tasks.models.feature_chunks import CHUNK_FORMAT, extract_in_chunks
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

    def key_text(self) -> str:
        """The settings as cache keys use them: every field but the batch size (which only changes speed)."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "batch_size"}, sort_keys=True)

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
    role_part = ",".join(roles) if spec.views else ""
    # CHUNK_FORMAT: the augmented views are seeded per chunk since the pass became chunked.
    return fingerprint_text(CHUNK_FORMAT, spec.key_text(), role_part, *(file_signature(p) for p in paths))


def backbone_for(spec: EmbeddingSpec) -> Any:
    """The backbone whose features ``spec`` names, seeded first so that ``random`` weights are the
    very ones of the training run (every reader that recomputes features builds it here)."""
    import keras

    from tasks.models.backbones import build_backbone

    keras.utils.set_random_seed(spec.seed)
    return build_backbone(
        spec.backbone, input_size=spec.image_size, weights=spec.weights, pooling="avg" if spec.pooled else None
    )


def clean_features(spec: EmbeddingSpec, paths: list[str], ok: np.ndarray) -> np.ndarray:
    """Float16 clean features of ``paths`` exactly as the cached pass computes them (batch
    prediction and the drift check use this; a chunk's batches start where a fresh pass's do)."""
    return extract_features(backbone_for(spec), paths, ok, spec, augment=False, seed=spec.seed)


def extract_features(
    model, paths: list[str], ok: np.ndarray, spec: EmbeddingSpec, augment: bool, seed: int
) -> np.ndarray:  # noqa: ANN001
    """Run ``model`` over the images in order; float16 on disk is plenty for features."""
    from tasks.models.images import iter_batches, make_image_dataset

    data = make_image_dataset(paths, None, spec.image_size, spec.batch_size, ok=ok, augment=augment, seed=seed)
    # Written into one preallocated array: a list of batches plus its concatenation held the
    # features twice (and in float32) at the end of the pass.
    out = np.empty((len(paths), *model.output_shape[1:]), np.float16)
    start = 0
    for batch in iter_batches(data):
        features = np.asarray(model.predict_on_batch(batch))
        out[start : start + len(features)] = features
        start += len(features)
    return out


#: Images per chunk of the backbone pass (`TransferSettings.feature_chunk` is the one setting).
DEFAULT_CHUNK: int = TransferSettings.model_fields["feature_chunk"].default

#: The arrays of a cached embeddings file.
EMBEDDING_ARRAYS = ("clean", "views", "train_rows")


def embeddings_file(cache_dir: Path, spec: EmbeddingSpec, key: str) -> Path:
    """Where the features of ``spec`` with this key are cached."""
    return Path(cache_dir) / "embeddings" / f"{spec.backbone}-{spec.image_size}-{key}.npz"


def target_for(table: Any, spec: EmbeddingSpec, cache_dir: Path) -> Path:
    """The cache file of ``spec``'s features of the images of ``table`` as they are now."""
    return embeddings_file(cache_dir, spec, embedding_key(spec, table["path"].tolist(), table["role"].tolist()))


def recipe_file(path: Path) -> Path:
    """The settings a cached embeddings file was computed with (JSON of `EmbeddingSpec`)."""
    return Path(path).with_suffix(".spec.json")


def read_recipe(path: Path) -> EmbeddingSpec:
    """The `EmbeddingSpec` stored next to an embeddings file; `DamagedCache` naming the JSON file."""
    recipe = recipe_file(path)
    try:
        data = json.loads(recipe.read_text(encoding="utf-8"))
    except Exception as err:  # missing, truncated, garbled
        raise DamagedCache(recipe, describe(err)) from err
    kinds: dict[str, type] = {"str": str, "int": int, "bool": bool}  # the field annotations, as text
    types = {f.name: kinds[str(f.type)] for f in fields(EmbeddingSpec)}
    if isinstance(data, dict) and sorted(data) != sorted(types):
        raise DamagedCache(recipe, f"has keys {sorted(data)}, expected {sorted(types)}")
    return EmbeddingSpec(**expect_keys(recipe, data, types))


def read_embeddings(path: Path, table: Any | None = None) -> dict[str, np.ndarray]:
    """A cached embeddings file's arrays as stored, checked; against ``table`` (its run table)
    when given: one clean row per table row, views of exactly its train rows."""
    arrays = read_npz(path, EMBEDDING_ARRAYS)
    clean, views, train_rows = (arrays[name] for name in EMBEDDING_ARRAYS)
    rows = None if table is None else len(table)
    check_array(path, "clean", clean, (rows, *(None,) * max(clean.ndim - 1, 1)), np.float16)
    if train_rows.ndim != 1 or train_rows.dtype.kind not in "iu":
        raise DamagedCache(path, f"train_rows has shape {train_rows.shape} and dtype {train_rows.dtype}")
    if table is not None:
        expected = np.flatnonzero((table["role"] == ROLE_TRAIN).to_numpy())
        if not np.array_equal(train_rows, expected):
            raise DamagedCache(path, f"train_rows ({len(train_rows)}) are not the table's {len(expected)} train rows")
    check_array(path, "views", views, (None, len(train_rows), *clean.shape[1:]), np.float16)
    for name, array in (("clean", clean), ("views", views)):
        if not np.isfinite(array).all():
            raise DamagedCache(path, f"{name} holds non-finite values")
    return arrays


def write_recipe(target: Path, spec: EmbeddingSpec) -> None:
    """Keep ``spec`` next to ``target``; a damaged recipe is replaced (one warning)."""
    recipe = recipe_file(target)
    if recipe.is_file():
        try:
            if read_recipe(target) == spec:
                return
            raise DamagedCache(recipe, "names other settings than the file's key")
        except DamagedCache as err:
            discard(recipe, err.reason)
    atomic_write_json(recipe, asdict(spec))


def ensure_recipe(path: Path, spec: EmbeddingSpec) -> Path:
    """Keep the recipe of the features file ``path`` that the features step returned for ``spec``
    (`write_recipe`): when that step is served from Prefect's cache its function does not run, so
    a recipe lost or damaged since would stay so, and every reader that needs it (the baselines'
    inputs recipe, a rebuild of a damaged file) would fail on every run. Cheap: one small JSON."""
    write_recipe(Path(path), spec)
    return Path(path)


def compute_embeddings(
    table_path: Path,
    spec: EmbeddingSpec,
    cache_dir: Path,
    refresh: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    reuse_chunks: bool = False,
) -> Path:
    """Cached ``.npz`` with ``clean`` (every table row, table order) and ``views`` (augmented
    copies of the train rows, ``views x n_train x ...``) plus ``train_rows`` (their row numbers).
    A damaged cache file is computed again. The backbone pass runs in chunks of ``chunk_size``
    images, each cached on its own (`tasks.models.feature_chunks`): a killed pass resumes.
    ``reuse_chunks``: the chunks were just computed by a cluster's workers (`tasks.models.chunk_tasks`),
    so they are read even under ``refresh`` (which then only means: do not reuse the ``.npz``)."""
    table = read_table(table_path)
    target = target_for(table, spec, cache_dir)
    if target.is_file() and not refresh:
        try:
            read_embeddings(target, table)
            write_recipe(target, spec)
            return target
        except DamagedCache as err:
            discard(target, err.reason)
    write_recipe(target, spec)  # before the features: a reader that finds them can rebuild them
    return atomic_write(
        target,
        lambda tmp: write_embeddings(
            tmp, table, spec, Path(cache_dir), chunk_size=chunk_size, refresh=refresh and not reuse_chunks
        ),
    )


@dataclass(frozen=True)
class FeaturePass:
    """One pass of the backbone over some table rows: the clean pass over all of them, or
    augmented view *v* of the train rows (seeded ``spec.seed + v``)."""

    label: str
    rows: np.ndarray  # table row numbers, in order
    augment: bool
    seed: int


def feature_passes(table: Any, spec: EmbeddingSpec) -> list[FeaturePass]:
    """The passes whose features make up ``spec``'s cached file for ``table``, in file order."""
    train_rows = np.flatnonzero((table["role"] == ROLE_TRAIN).to_numpy())
    clean = FeaturePass(f"{spec.backbone} features", np.arange(len(table)), False, spec.seed)
    views = [
        FeaturePass(f"{spec.backbone} view {v}", train_rows, True, spec.seed + v) for v in range(1, spec.views + 1)
    ]
    return [clean, *views]


def pass_extractor(spec: EmbeddingSpec, augment: bool) -> Any:
    """``extract(model, paths, ok, seed)`` of one pass, as `tasks.models.feature_chunks` calls it."""
    return lambda model, paths, ok, seed: extract_features(model, paths, ok, spec, augment=augment, seed=seed)


def write_embeddings(
    tmp: Path,
    table: Any,
    spec: EmbeddingSpec,
    cache_dir: Path,
    chunk_size: int = DEFAULT_CHUNK,
    refresh: bool = False,
) -> None:
    """Run the backbone over every image (and the augmented views of the train rows) into ``tmp``,
    chunk by chunk; finished chunks (of an interrupted pass, or computed by a cluster's workers)
    are reused unless ``refresh``."""
    paths = table["path"].tolist()
    ok = image_ok_flags(table)

    @functools.cache  # built once, and only if some chunk must be computed; freed with the pass
    def get_model() -> Any:
        return backbone_for(spec)

    def run(one: FeaturePass) -> np.ndarray:
        return extract_in_chunks(
            get_model,
            pass_extractor(spec, one.augment),
            [paths[i] for i in one.rows],
            ok[one.rows],
            spec,
            cache_dir,
            augment=one.augment,
            seed=one.seed,
            chunk_size=chunk_size,
            label=one.label,
            refresh=refresh,
        )

    clean_pass, *view_passes = feature_passes(table, spec)
    clean = run(clean_pass)
    train_rows = np.flatnonzero((table["role"] == ROLE_TRAIN).to_numpy())
    stacked = np.empty((spec.views, len(train_rows), *clean.shape[1:]), np.float16)
    for v, one in enumerate(view_passes):  # one view at a time: written straight into the stack
        stacked[v] = run(one)
    with open(tmp, "wb") as handle:
        np.savez(handle, clean=clean, views=stacked, train_rows=train_rows)


def load_embeddings(
    path: Path, table_path: Path | None = None, spec: EmbeddingSpec | None = None
) -> dict[str, np.ndarray]:
    """Load a cached embeddings file as stored: float16 features (checked), which readers convert
    only for the rows they use (a float32 copy of every row per reader would double the memory).

    With ``table_path`` (the run table the file belongs to) a damaged file is deleted with one
    warning and computed again from its recipe (or from ``spec`` when the recipe is lost and
    ``spec`` names this very file); concurrent readers that find the same damage rebuild it once.
    Without it, damage raises `DamagedCache`.
    """
    path = Path(path)
    table = read_table(table_path) if table_path is not None else None
    try:
        arrays = read_embeddings(path, table)
    except DamagedCache:
        if table_path is None:
            raise
        with cache_lock(path):
            try:  # another reader may have rebuilt it while this one waited
                arrays = read_embeddings(path, table)
            except DamagedCache as err:
                recipe = rebuild_recipe(path, table, spec, err)
                discard(path, err.reason)
                arrays = read_embeddings(compute_embeddings(table_path, recipe, path.parent.parent), table)
    return arrays


def rebuild_recipe(path: Path, table: Any, spec: EmbeddingSpec | None, damage: DamagedCache) -> EmbeddingSpec:
    """The settings to compute a damaged embeddings file again with: its recipe, else ``spec``,
    whichever gives this very file for this table (so an edited recipe cannot put other features
    under this name); `DamagedCache` naming both files when neither does."""
    candidates: list[EmbeddingSpec] = []
    try:
        candidates.append(read_recipe(path))
        why = "names other settings or images than this file"
    except DamagedCache as lost:
        why = f"is unusable ({lost.reason})"
    candidates += [spec] if spec is not None else []
    for candidate in candidates:
        if target_for(table, candidate, path.parent.parent) == path:
            return candidate
    raise DamagedCache(
        path,
        f"{damage.reason}; it cannot be computed again here because its recipe {recipe_file(path)} {why}: "
        "rerun with --refresh",
    ) from damage
