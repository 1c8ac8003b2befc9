"""The input paths (tf.data, and the PyDataset of non-TensorFlow backends): any image mode in,
RGB [0, 255] at the right size out, and the two paths agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.models.images import iter_batches, make_image_dataset

LOADERS = ["tf", "py"]


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
        ("small.jpg", base.resize((50, 80)), "JPEG"),
        ("wide.png", base.resize((300, 100)), "PNG"),
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


def first_batch(data: object) -> object:
    return next(iter_batches(data))


@pytest.mark.parametrize("loader", LOADERS)
def test_every_mode_decodes_to_rgb_close_to_pil(images: dict[str, str], loader: str) -> None:
    names = ["rgb.jpg", "gray.jpg", "cmyk.jpg", "rgba.png", "big.jpg"]
    batch = first_batch(make_image_dataset([images[n] for n in names], None, 64, 8, loader=loader))
    assert batch.shape == (5, 64, 64, 3) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() <= 255.5
    for name, array in zip(names, batch):
        assert np.abs(array - reference(images[name], 64)).mean() < 12, name
    gray = batch[1]
    assert np.allclose(gray[..., 0], gray[..., 1]) and np.allclose(gray[..., 1], gray[..., 2])


@pytest.mark.parametrize("loader", LOADERS)
def test_labels_follow_their_images_in_order(images: dict[str, str], loader: str) -> None:
    paths = [images["rgb.jpg"], images["gray.jpg"], images["cmyk.jpg"]]
    x, y = first_batch(make_image_dataset(paths, [5, 1, 7], 32, 8, loader=loader))
    assert y.tolist() == [5, 1, 7] and x.shape[0] == 3


@pytest.mark.parametrize("loader", LOADERS)
def test_shuffling_keeps_each_label_with_its_image(images: dict[str, str], loader: str) -> None:
    names = ["rgb.jpg", "gray.jpg", "rgba.png", "wide.png"]
    plain = first_batch(make_image_dataset([images[n] for n in names], None, 32, 8, loader=loader))
    x, y = first_batch(make_image_dataset([images[n] for n in names], [0, 1, 2, 3], 32, 8, shuffle=True, loader=loader))
    assert sorted(y.tolist()) == [0, 1, 2, 3]
    for image, label in zip(x, y):
        np.testing.assert_allclose(image, plain[label], atol=1e-4)


@pytest.mark.parametrize("loader", LOADERS)
def test_unreadable_image_flagged_by_validation_becomes_gray(images: dict[str, str], loader: str) -> None:
    data = make_image_dataset([images["rgb.jpg"], images["broken.jpg"]], None, 32, 8, ok=[True, False], loader=loader)
    assert np.allclose(first_batch(data)[1], 127.5)


@pytest.mark.parametrize("loader", LOADERS)
def test_augmentation_only_when_asked(images: dict[str, str], loader: str) -> None:
    paths = [images["rgb.jpg"]] * 4
    plain = [first_batch(make_image_dataset(paths, None, 48, 4, loader=loader)) for _ in range(2)]
    assert np.array_equal(plain[0], plain[1])
    augmented = first_batch(make_image_dataset(paths, None, 48, 4, augment=True, seed=3, loader=loader))
    assert not np.allclose(augmented[0], plain[0][0])
    assert augmented.shape == plain[0].shape


#: How far the PyDataset path may be from tf.data, in grey levels of [0, 255]. The resize is the
#: same computation (PNGs agree to float32 rounding); the two JPEG decoders (both with the accurate
#: integer IDCT) still differ slightly in rounding and chroma upsampling.
JPEG_MAX_DIFF, JPEG_MEAN_DIFF, LOSSLESS_DIFF = 6.0, 1.0, 0.01


@pytest.mark.parametrize("size", [64, 224])
def test_both_input_paths_decode_and_resize_the_same_way(images: dict[str, str], size: int) -> None:
    """Shrinking (area, with JPEG DCT downscaling of big.jpg at 64 px), enlarging (bilinear) and
    mixed aspect ratios give the same pixels on both paths, within the stated tolerance."""
    names = [n for n in images if n != "broken.jpg"]
    paths = [images[n] for n in names]
    tf_images = np.concatenate(list(iter_batches(make_image_dataset(paths, None, size, 4, loader="tf"))))
    py_images = np.concatenate(list(iter_batches(make_image_dataset(paths, None, size, 4, loader="py"))))
    for name, a, b in zip(names, tf_images, py_images):
        diff = np.abs(a - b)
        if name.endswith(".png"):
            assert diff.max() < LOSSLESS_DIFF, name
        else:
            assert diff.max() <= JPEG_MAX_DIFF and diff.mean() <= JPEG_MEAN_DIFF, (name, diff.max(), diff.mean())


def test_disk_cache_returns_identical_batches(images: dict[str, str], tmp_path: Path) -> None:
    paths = [images["rgb.jpg"], images["cmyk.jpg"]]
    cache = tmp_path / "cache" / "imgs"
    # Whole passes: TensorFlow completes a cache file only when an iteration reaches the end (a
    # first batch alone left it to the prefetch thread, which a loaded machine had not finished).
    first = [np.asarray(b) for b in make_image_dataset(paths, None, 32, 2, cache_file=cache, loader="tf")]
    second = [np.asarray(b) for b in make_image_dataset(paths, None, 32, 2, cache_file=cache, loader="tf")]
    assert len(first) == len(second) == 1 and np.array_equal(first[0], second[0])
    assert any(p.name.startswith("imgs") for p in cache.parent.iterdir())
