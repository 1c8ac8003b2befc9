"""The tf.data input path (TensorFlow backend): file paths -> decoded, resized RGB batches in [0, 255].

Decoding runs in parallel with a fixed number of calls. tf.data's autotuner is switched off on
purpose: on this kind of 2-core machine it sometimes settled on one core and ran at half speed
(docs/measurements.md). Memory stays flat whatever the dataset size: only a few batches are in flight, and
the optional cache of resized images lives on disk (checked before each use, see
`check_image_cache`). Augmentation is for the train role only.

TensorFlow is imported inside each function, not at module top, so that every module under
``tasks/`` imports on a machine without TensorFlow (the JAX route, docs/measurements.md); this module is
only used when the Keras backend is TensorFlow (`tasks.models.images`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.cache_files import describe, discard
from tasks.confine import make_dirs
from tasks.models.augment import GRAY, build_augmenter, parallel_calls
from tasks.models.image_request import ImageRequest

if TYPE_CHECKING:
    import tensorflow as tf


def jpeg_scale_index(raw: tf.Tensor, size: int) -> tf.Tensor:
    """Index into JPEG DCT downscales (1, 2, 4, 8): the largest that keeps the short side >= size.

    Decoding at 1/2..1/8 resolution is nearly free speed for photos much larger than the model input.
    """
    import tensorflow as tf

    shape = tf.image.extract_jpeg_shape(raw)
    short = tf.minimum(shape[0], shape[1])
    index = tf.constant(0)
    for i, ratio in enumerate((2, 4, 8), start=1):
        index = tf.where(short // ratio >= size, i, index)
    return index


def decode_rgb(raw: tf.Tensor, size: int) -> tf.Tensor:
    """Any JPEG/PNG/GIF/BMP (gray, RGB, RGBA, CMYK) to float32 RGB ``size x size`` in [0, 255]."""
    import tensorflow as tf

    def decode_jpeg() -> tf.Tensor:
        # decode_jpeg takes only a Python int ratio, so branch over the four allowed values.
        branches = [
            lambda r=r: tf.io.decode_jpeg(raw, channels=3, ratio=r, dct_method="INTEGER_ACCURATE") for r in (1, 2, 4, 8)
        ]
        return tf.switch_case(jpeg_scale_index(raw, size), branches)

    def decode_other() -> tf.Tensor:
        return tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8)

    image = tf.cond(tf.io.is_jpeg(raw), decode_jpeg, decode_other)
    return tf.ensure_shape(resize_smooth(image, size), [size, size, 3])


def resize_smooth(image: tf.Tensor, size: int) -> tf.Tensor:
    """Area averaging when shrinking (no aliasing, ~2x faster than antialiased bilinear here),
    bilinear when enlarging (area would look like nearest-neighbour)."""
    import tensorflow as tf

    shape = tf.shape(image)
    shrinking = tf.minimum(shape[0], shape[1]) >= size
    return tf.cond(
        shrinking,
        lambda: tf.image.resize(image, [size, size], method="area"),
        lambda: tf.image.resize(image, [size, size], method="bilinear"),
    )


def load_image(path: tf.Tensor, ok: tf.Tensor, size: int) -> tf.Tensor:
    """Decode one file, or a mid-gray image for a file validation flagged as unreadable
    (test images still need a prediction row; training rows like that were already dropped)."""
    import tensorflow as tf

    return tf.cond(
        ok,
        lambda: decode_rgb(tf.io.read_file(path), size),
        lambda: tf.fill([size, size, 3], GRAY),
    )


def image_cache_files(cache_file: Path) -> list[Path]:
    """The files TensorFlow writes for the cache named ``cache_file`` (index, data shards, locks)."""
    folder, name = Path(cache_file).parent, Path(cache_file).name
    return sorted({*folder.glob(f"{name}.*"), *folder.glob(f"{name}_*")})


def check_image_cache(cache_file: Path, n: int, size: int) -> None:
    """Read a completed decoded-image cache once before it is used: TensorFlow verifies each
    image's checksum as it reads, and it must hold exactly ``n`` images of ``size``. A damaged
    cache (truncated or garbled index or data) would otherwise stop training mid-epoch with a
    ``DataLossError``; it is deleted with one warning and written again by the first epoch."""
    import tensorflow as tf

    index = Path(f"{cache_file}.index")
    if not index.is_file():
        return  # none yet (or an unfinished one, which TensorFlow rewrites)
    probe = tf.data.Dataset.from_tensor_slices(np.zeros((0, size, size, 3), np.uint8)).cache(str(cache_file))
    try:
        count = int(probe.reduce(np.int64(0), lambda total, _: total + 1))
        reason = None if count == n else f"holds {count} images, expected {n}"
    except (tf.errors.OpError, ValueError) as err:  # DataLossError, InternalError, ...
        reason = describe(err)
    if reason is not None:
        discard(index, reason, *[p for p in image_cache_files(cache_file) if p != index])


#: Shuffle buffer (decoded uint8 images) behind the decoded-image cache: ~150 MB at 224 px.
CACHED_SHUFFLE_BUFFER = 1024


def to_uint8(x: Any, *label: Any) -> Any:
    """Images (and label) for the decoded-image cache: uint8, 4x smaller than float32 (<= 0.5 off)."""
    import tensorflow as tf

    image = tf.cast(tf.round(x), tf.uint8)
    return (image, *label) if label else image


def to_float32(x: Any, *label: Any) -> Any:
    """Back from the cache's uint8."""
    import tensorflow as tf

    image = tf.cast(x, tf.float32)
    return (image, *label) if label else image


def tf_dataset(request: ImageRequest) -> tf.data.Dataset:
    """Batches of (images, labels), or images alone when ``request.labels`` is None. With a
    ``cache_file`` the decoded, resized images stay on disk after the first pass, so later epochs
    skip JPEG decoding; augmentation is applied after the cache, so it stays random."""
    import tensorflow as tf

    images = image_loader(request)
    if request.cache_file is None:
        data = uncached_rows(request, images)
    else:
        data = cached_rows(request, images, Path(request.cache_file))
    data = data.batch(request.batch_size)
    if request.augment:
        augmenter = build_augmenter(request.seed)
        if request.labels is not None:
            data = data.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=parallel_calls())
        else:
            data = data.map(lambda x: augmenter(x, training=True), num_parallel_calls=parallel_calls())
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = not request.augment
    return data.prefetch(2).with_options(options)


def image_loader(request: ImageRequest) -> Callable[[Any], Any]:
    """Row number -> decoded image (a gray image for rows whose file is unusable)."""
    import tensorflow as tf

    flags = request.flags()
    all_paths = tf.constant(np.asarray(request.paths, str)) if len(request.paths) else tf.constant([], tf.string)
    all_flags = tf.constant(flags)

    def image(i: Any) -> Any:
        if flags.all():  # the common case; the per-row tf.cond of `load_image` costs ~25% throughput
            return decode_rgb(tf.io.read_file(all_paths[i]), request.size)
        return load_image(all_paths[i], all_flags[i], request.size)

    return image


def labels_tensor(request: ImageRequest) -> Any:
    import tensorflow as tf

    return tf.constant(np.asarray(request.labels if request.labels is not None else [], np.int32))


def uncached_rows(request: ImageRequest, image: Callable[[Any], Any]) -> tf.data.Dataset:
    """Images (and labels) decoded every epoch. Shuffled as row numbers, before decoding (a full
    shuffle of 8-byte ints): shuffling decoded images held a 4,096-image buffer, ~2.5 GB of
    float32 at 224 px."""
    import tensorflow as tf

    n, calls = len(request.paths), parallel_calls()
    rows = tf.data.Dataset.range(n)
    if request.shuffle:
        rows = rows.shuffle(max(n, 1), seed=request.seed, reshuffle_each_iteration=True)
    if request.labels is None:
        return rows.map(image, num_parallel_calls=calls, deterministic=True)
    all_labels = labels_tensor(request)
    return rows.map(lambda i: (image(i), all_labels[i]), num_parallel_calls=calls, deterministic=True)


def cached_rows(request: ImageRequest, image: Callable[[Any], Any], cache_file: Path) -> tf.data.Dataset:
    """Images (and labels) decoded once into ``cache_file`` (uint8, in row order), then shuffled
    with a bounded buffer (`CACHED_SHUFFLE_BUFFER`)."""
    import tensorflow as tf

    n = len(request.paths)
    make_dirs(cache_file.parent)
    # A run killed mid-epoch leaves a lockfile that would make TensorFlow refuse the cache on
    # the rerun (one pipeline per cache file here, so a lockfile at start is always stale).
    for stale in cache_file.parent.glob(f"{cache_file.name}*.lockfile"):
        stale.unlink(missing_ok=True)
    check_image_cache(cache_file, n, request.size)
    rows = tf.data.Dataset.range(n)
    data = rows.map(image, num_parallel_calls=parallel_calls(), deterministic=True).map(to_uint8).cache(str(cache_file))
    if request.labels is not None:
        data = tf.data.Dataset.zip((data, tf.data.Dataset.from_tensor_slices(labels_tensor(request))))
    if request.shuffle:
        data = data.shuffle(min(n, CACHED_SHUFFLE_BUFFER), seed=request.seed, reshuffle_each_iteration=True)
    return data.map(to_float32)
