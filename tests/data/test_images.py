"""The tf.data input pipeline: any image mode in, RGB [0, 255] at the right size out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.models.images import make_image_dataset


@pytest.fixture()
def images(tmp_path: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), "RGB").resize((240, 180))
    paths = {}
    for name, image, fmt in [
        ("rgb.jpg", base, "JPEG"),
        ("gray.jpg", base.convert("L"), "JPEG"),
        ("cmyk.jpg", base.convert("CMYK"), "JPEG"),
        ("rgba.png", base.convert("RGBA"), "PNG"),
        ("big.jpg", base.resize((960, 720)), "JPEG"),
    ]:
        path = tmp_path / name
        image.save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        paths[name] = str(path)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    paths["broken.jpg"] = str(tmp_path / "broken.jpg")
    return paths


def reference(path: str, size: int) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), np.float32)


def test_every_mode_decodes_to_rgb_close_to_pil(images: dict[str, str]) -> None:
    names = ["rgb.jpg", "gray.jpg", "cmyk.jpg", "rgba.png", "big.jpg"]
    batch = next(iter(make_image_dataset([images[n] for n in names], None, 64, 8))).numpy()
    assert batch.shape == (5, 64, 64, 3) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() <= 255.5
    for name, array in zip(names, batch):
        assert np.abs(array - reference(images[name], 64)).mean() < 12, name
    gray = batch[1]
    assert np.allclose(gray[..., 0], gray[..., 1]) and np.allclose(gray[..., 1], gray[..., 2])


def test_labels_follow_their_images_in_order(images: dict[str, str]) -> None:
    paths = [images["rgb.jpg"], images["gray.jpg"], images["cmyk.jpg"]]
    x, y = next(iter(make_image_dataset(paths, [5, 1, 7], 32, 8)))
    assert y.numpy().tolist() == [5, 1, 7] and x.shape[0] == 3


def test_unreadable_image_flagged_by_validation_becomes_gray(images: dict[str, str]) -> None:
    batch = next(iter(make_image_dataset([images["rgb.jpg"], images["broken.jpg"]], None, 32, 8, ok=[True, False])))
    assert np.allclose(batch.numpy()[1], 127.5)


def test_augmentation_only_when_asked(images: dict[str, str]) -> None:
    paths = [images["rgb.jpg"]] * 4
    plain = [next(iter(make_image_dataset(paths, None, 48, 4))).numpy() for _ in range(2)]
    assert np.array_equal(plain[0], plain[1])
    augmented = next(iter(make_image_dataset(paths, None, 48, 4, augment=True, seed=3))).numpy()
    assert not np.allclose(augmented[0], plain[0][0])
    assert augmented.shape == plain[0].shape


def test_disk_cache_returns_identical_batches(images: dict[str, str], tmp_path: Path) -> None:
    paths = [images["rgb.jpg"], images["cmyk.jpg"]]
    cache = tmp_path / "cache" / "imgs"
    first = next(iter(make_image_dataset(paths, None, 32, 2, cache_file=cache))).numpy()
    second = next(iter(make_image_dataset(paths, None, 32, 2, cache_file=cache))).numpy()
    assert np.array_equal(first, second)
    assert any(p.name.startswith("imgs") for p in cache.parent.iterdir())
