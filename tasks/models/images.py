"""The input path: file paths -> batches of decoded, resized RGB images in [0, 255].

Two implementations behind one function, chosen by the Keras backend: tf.data when TensorFlow
is the backend (measured and fast on CPU, docs/measurements.md: `tasks.models.images_tf`), and a
`keras.utils.PyDataset` with PIL/numpy decoding otherwise (`tasks.models.images_py`), so the
JAX route needs no TensorFlow at all (docs/measurements.md). Both have the same resize semantics and the same
augmentation; the decoded-image disk cache (``cache_file``) exists on the tf.data path only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np

from tasks.logs import get_logger
from tasks.models.image_request import ImageRequest

Loader = Literal["auto", "tf", "py"]


def resolve_loader(loader: Loader = "auto") -> Literal["tf", "py"]:
    """``auto``: tf.data on the TensorFlow backend, the PyDataset everywhere else."""
    if loader != "auto":
        return loader
    return "tf" if keras.backend.backend() == "tensorflow" else "py"


def make_image_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | None,
    size: int,
    batch_size: int,
    *,
    ok: Sequence[bool] | np.ndarray | None = None,
    augment: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    cache_file: Path | None = None,
    loader: Loader = "auto",
) -> Any:
    """Batches of (images, labels), or images alone when ``labels`` is None: a ``tf.data.Dataset``
    or an `images_py.ImageBatches`; either goes straight into ``fit``/``predict`` and `iter_batches`.

    The arguments are `ImageRequest`'s.
    """
    request = ImageRequest(paths, labels, size, batch_size, ok, augment, shuffle, seed, cache_file)
    if resolve_loader(loader) == "tf":
        from tasks.models.images_tf import tf_dataset  # TensorFlow: only on its backend

        return tf_dataset(request)
    from tasks.models.images_py import ImageBatches

    if cache_file is not None:
        get_logger().warning("The decoded-image cache exists on the tf.data path only; decoding every epoch instead")
    return ImageBatches(request)


def iter_batches(data: Any) -> Iterator[Any]:
    """The batches of a dataset from `make_image_dataset` in order, as numpy arrays."""
    from tasks.models.images_py import ImageBatches
    from tasks.models.images_py import iter_batches as py_batches

    if isinstance(data, ImageBatches):
        yield from py_batches(data)
        return
    for batch in data:
        yield tuple(np.asarray(part) for part in batch) if isinstance(batch, tuple) else np.asarray(batch)
