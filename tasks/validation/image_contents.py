"""What the scan records of a decoded image's contents, for the data audit (`tasks.validation.audit`):
a content hash of the bytes, perceptual hashes of the image and of its centre (each as is and
mirrored), and the grey level's mean and spread. Computed in the scan's one decode per file.
"""

from __future__ import annotations

import hashlib
from typing import Any

import imagehash
import numpy as np
from PIL import Image, ImageOps

#: The perceptual hashes of a decoded image (``tasks.data.groups.hash_pairs`` compares them).
HASH_KEYS: tuple[str, ...] = ("phash", "phash_mirror", "phash_center", "phash_center_mirror")
#: What the audit reads from a decoded image (None for a file that did not decode).
CONTENT_KEYS: tuple[str, ...] = ("content_hash", *HASH_KEYS, "brightness", "contrast")
#: Share cut from each side for the centre hash: a copy cropped by this much per side hashes like
#: its original's centre (measured on the sample: within 4 bits; python -m benchmarks.bench_audit).
CENTER_CROP_SHARE = 0.1


def describe_contents(image: Image.Image, data: bytes) -> dict[str, Any]:
    """Content hash of the bytes, perceptual hashes (16 hex digits) of the image and of its centre
    (`CENTER_CROP_SHARE` cut from each side), each as is and mirrored, and the grey level's mean
    and standard deviation (0-255) of a decoded image."""
    grey = image.convert("L")
    values = np.asarray(grey, dtype=np.float32)
    width, height = grey.size
    dx, dy = round(width * CENTER_CROP_SHARE), round(height * CENTER_CROP_SHARE)
    centre = grey.crop((dx, dy, width - dx, height - dy))
    return {
        "content_hash": hashlib.blake2b(data, digest_size=16).hexdigest(),
        "phash": str(imagehash.phash(grey)),
        "phash_mirror": str(imagehash.phash(ImageOps.mirror(grey))),
        "phash_center": str(imagehash.phash(centre)),
        "phash_center_mirror": str(imagehash.phash(ImageOps.mirror(centre))),
        "brightness": round(float(values.mean()), 2),
        "contrast": round(float(values.std()), 2),
    }
