"""The input path for backends other than TensorFlow (JAX): a `keras.utils.PyDataset` over files.

Same contract as the tf.data path (`tasks.models.images_tf`): RGB float32 in [0, 255] at
``size x size``, any JPEG/PNG/GIF/BMP mode in, mid-gray for files validation flagged unreadable,
the same Keras augmenter, and the same resize semantics so that features match within a stated
tolerance (``tests/data/test_images.py``):

- JPEG DCT downscaling: PIL's ``draft`` picks the largest of 1/2, 1/4, 1/8 that keeps the short
  side >= ``size``, which is exactly the rule of `images_tf.jpeg_scale_index`;
- shrinking (short side >= size): area averaging with exact pixel-coverage weights, as
  ``tf.image.resize(method="area")`` does (PIL's box filter differs from it by ~6 grey levels at
  non-integer ratios, so it is done in numpy); enlarging: bilinear with half-pixel centres and no
  antialiasing, as ``tf.image.resize(method="bilinear")`` does.

Shuffling permutes file paths per epoch, never decoded images, so memory holds only the batches
in flight. ``fit``/``predict`` decode batches in ``workers`` threads (PIL releases the GIL while
decoding and resizing); `iter_batches` does the same for a plain loop, in order.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import keras
import numpy as np
from PIL import Image

from tasks.models.augment import GRAY, build_augmenter, parallel_calls
from tasks.models.image_request import ImageRequest


def bilinear_axis(n_in: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (low, high) and weights of one axis, half-pixel centres, clamped at edges."""
    source = np.clip((np.arange(size) + 0.5) * (n_in / size) - 0.5, 0, n_in - 1)
    low = np.floor(source).astype(np.int64)
    return low, np.minimum(low + 1, n_in - 1), (source - low).astype(np.float32)


def resize_bilinear(pixels: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.resize(..., method="bilinear")`` of an HxWx3 array, as float32."""
    y0, y1, wy = bilinear_axis(pixels.shape[0], size)
    x0, x1, wx = bilinear_axis(pixels.shape[1], size)
    image = pixels.astype(np.float32)
    rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


@lru_cache(maxsize=256)
def area_taps(n_in: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel, the input pixels its span covers and the share of each (``size x k``, with
    k = ceil(n_in / size) + 1 taps, zero-weighted where a span covers fewer)."""
    scale = n_in / size
    taps = int(np.ceil(scale)) + 1
    start = np.arange(size, dtype=np.float64) * scale
    index = np.minimum(np.floor(start).astype(np.int64)[:, None] + np.arange(taps)[None, :], n_in - 1)
    overlap = np.minimum(start[:, None] + scale, index + 1) - np.maximum(start[:, None], index)
    overlap[:, 1:][index[:, 1:] == index[:, :-1]] = 0  # a tap clamped onto the last pixel twice
    overlap = np.clip(overlap, 0, None)
    return index, (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_area(pixels: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.resize(..., method="area")`` of an HxWx3 array, as float32: each output pixel is
    the coverage-weighted mean of the few input pixels under it, one axis after the other."""
    rows_index, rows_weight = area_taps(pixels.shape[0], size)
    cols_index, cols_weight = area_taps(pixels.shape[1], size)
    image = pixels.astype(np.float32)
    rows = np.einsum("ok,okwc->owc", rows_weight, image[rows_index])
    return np.einsum("pk,opkc->opc", cols_weight, rows[:, cols_index])


def resize_smooth(image: Image.Image, size: int) -> np.ndarray:
    """Area averaging when shrinking, bilinear when enlarging (the rule of `images_tf.resize_smooth`)."""
    pixels = np.asarray(image)
    return resize_area(pixels, size) if min(pixels.shape[:2]) >= size else resize_bilinear(pixels, size)


def decode_rgb(path: str, size: int) -> np.ndarray:
    """One file to float32 RGB ``size x size`` in [0, 255]; the first frame of an animation."""
    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft("RGB", (size, size))  # DCT downscale: decoding a 4000 px photo at 1/8 is cheap
        return resize_smooth(image.convert("RGB"), size)


class ImageBatches(keras.utils.PyDataset):
    """Batches of images (and labels) decoded from files, optionally shuffled and augmented."""

    def __init__(self, request: ImageRequest, workers: int | None = None) -> None:
        super().__init__(workers=workers or parallel_calls(), use_multiprocessing=False, max_queue_size=4)
        self.paths = list(request.paths)
        self.labels = None if request.labels is None else np.asarray(request.labels, np.int32)
        self.ok = request.flags()
        self.size, self.batch_size, self.shuffle, self.seed = (
            request.size,
            request.batch_size,
            request.shuffle,
            request.seed,
        )
        self.augment = request.augment
        self._local = threading.local()  # one augmenter per worker thread: see `augmenter`
        self._augmenters = itertools.count()
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        """Row order of this epoch: a fresh permutation of the paths when shuffling."""
        n = len(self.paths)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = np.stack([decode_rgb(self.paths[r], self.size) if self.ok[r] else self.gray() for r in rows])
        if self.augment:
            images = np.asarray(self.augmenter()(images, training=True), np.float32)
        return images if self.labels is None else (images, self.labels[rows])

    def augmenter(self) -> keras.Sequential:
        """This thread's augmenter. Each worker has its own (their random state is a variable that
        threads must not share), so batches augment in parallel instead of queueing on a lock."""
        if getattr(self._local, "augmenter", None) is None:
            self._local.augmenter = build_augmenter(self.seed + 101 * next(self._augmenters))
        return self._local.augmenter

    def gray(self) -> np.ndarray:
        return np.full((self.size, self.size, 3), GRAY, np.float32)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def iter_batches(data: ImageBatches) -> Iterator[Any]:
    """Every batch in order, decoded ahead in ``data.workers`` threads, at most twice that many
    in flight (a plain loop over a PyDataset decodes one batch at a time)."""
    window = max(2 * data.workers, 1)
    with ThreadPoolExecutor(max_workers=data.workers) as pool:
        pending: deque[Future[Any]] = deque()
        for index in range(len(data)):
            pending.append(pool.submit(data.__getitem__, index))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
