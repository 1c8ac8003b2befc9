"""What both input paths share: the train-time augmentation, the number of decode workers and
the pixel value that stands in for an unreadable image.

The augmenter is made of Keras preprocessing layers, which run on every backend, so the tf.data
path (`tasks.models.images_tf`) and the PyDataset path (`tasks.models.images_py`) augment the same way.
"""

from __future__ import annotations

import os

import keras

#: Pixel value of an image validation flagged as unreadable (test images still need a prediction
#: row; training rows like that were already dropped).
GRAY = 127.5


def parallel_calls() -> int:
    """Decode workers: every core (tf.data threads and PIL's decoder both release the GIL)."""
    return max(os.cpu_count() or 1, 1)


def build_augmenter(seed: int) -> keras.Sequential:
    """What a photo of an animal or plant can undergo: a random resized crop (zoom in by up to 30%
    and shift by up to 10%), a horizontal flip, a small rotation, and a little colour jitter
    (brightness, contrast). Inputs and outputs are RGB in [0, 255]."""
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom((-0.3, 0.0), fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 4),
            keras.layers.RandomContrast(0.15, seed=seed + 5),
        ],
        name="augment",
    )
