"""What the input path is asked for (`ImageRequest`), shared by its two backends
(`tasks.models.images_tf`, `tasks.models.images_py`) and `tasks.models.images`, which picks one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageRequest:
    """What an input path is asked for, whichever backend serves it: the files (``ok`` False: an
    unusable file, fed as a gray image so its row keeps its place), labels or None, the square
    size, the batch size, and whether batches are augmented or shuffled (with ``seed``).
    ``cache_file`` (tf.data only) keeps the decoded, resized images on disk after the first pass."""

    paths: Sequence[str]
    labels: Sequence[int] | None
    size: int
    batch_size: int
    ok: Sequence[bool] | np.ndarray | None
    augment: bool
    shuffle: bool
    seed: int  # no defaults: `tasks.models.images.make_image_dataset` holds them (one default per setting)
    cache_file: Path | None

    def flags(self) -> np.ndarray:
        """``ok`` as a boolean array (every file usable when it was not given)."""
        return np.ones(len(self.paths), bool) if self.ok is None else np.asarray(self.ok, bool)
