"""The embedded sample dataset: a deterministic, synthetic stand-in for the Kaggle data.

It is written in exactly the Kaggle layout (docs/dataset.md), with the real 8 coarse and 50 fine names
in the real order, 40-hex filenames, JPEGs of varying size and aspect ratio (a few grayscale and
CMYK), test labels as placeholders, and the real coarse imbalance (families are balanced, so
Magnoliopsida's 18 families against one family for the smallest classes gives 18:1).

The images are procedural, not photos, but they are hard the way photos are, so that recipes
can be told apart (a saturated sample makes every model look perfect). Each coarse class has a
body plan (bird, snake, squirrel, spider, flower, insect, grass-like monocot, conifer twig) made
of a few parts; the families of a class share that plan and differ only in proportions, part
counts, pattern and an overlapping hue range, so they look alike. Every image then hides the
subject the way a field photo does: it spans 50-95% of the short side at a random position (partly
out of frame), rotation and lighting, sits on a cluttered background drawn from one pool shared
by all classes (leaves, blades, twigs, pebbles, bokeh, petal-like blobs), may be partly covered
by foreground leaves and twigs, and gets a colour cast, brightness/contrast change, vignetting,
blur, sensor noise and JPEG quality 40-95. Image size, aspect ratio, background, colour mode and
JPEG quality are drawn independently of the label, and no label is flipped.

A correct pipeline scores far above chance and pixel baselines far below backbone models, while
a label mix-up (for example alphabetical class ids) scores near chance. The sample exists so that
the whole pipeline runs in minutes with no download; its scores say nothing about accuracy on
real photos, and its confusions (for example insects against flowers) are only loosely like theirs.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tasks.confine import make_dirs
from tasks.data.dataset import INFO_FILE, PUBLIC_DIR
from tasks.data.planting import plant_cases
from tasks.data.subjects import Canvas, Colour, FamilyLook, draw_subject, ellipse, family_look, rgb
from tasks.data.taxonomy import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE

#: Marker written last: its presence means the folder is a complete sample of these settings.
STAMP_NAME = "sample.json"
#: Bumped whenever the images change for the same settings, so an older sample is rebuilt, not reused.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class SampleSpec:
    """How big the sample is. Labelled images are split 2:1 into train and val like the real data."""

    per_family: int  # no defaults here: DataSettings holds the sample's size (one default per setting)
    test_per_family: int
    min_side: int = 72
    max_side: int = 176
    seed: int = 0
    special_mode_share: float = 0.03  # grayscale and CMYK JPEGs, like a real photo dump
    planted_originals: int = 0  # train images copied 4 ways across the splits (tasks.data.planting)
    planted_label_share: float = 0.0  # share of train labels switched to another taxon

    def __post_init__(self) -> None:
        if self.per_family < 3:
            raise ValueError("per_family must be at least 3 (train, val and a hold-out need images)")
        if self.test_per_family < 1:
            raise ValueError("test_per_family must be at least 1")
        if not 32 <= self.min_side <= self.max_side:
            raise ValueError("need 32 <= min_side <= max_side")


SCENES: tuple[tuple[float, float, float], ...] = (
    (0.27, 0.1, 0.55),
    (0.11, 0.05, 0.5),
    (0.58, 0.06, 0.4),
    (0.08, 0.5, 0.15),
    (0.33, 0.1, 0.45),
    (0.0, 0.5, 0.05),
)


def _clutter_colour(rng: np.random.Generator, scene: tuple[float, float, float]) -> Colour:
    hue, spread, sat = scene
    if rng.random() < 0.08:  # a stray bright blob: fallen petals, berries, litter
        return rgb(rng.uniform(0, 1), rng.uniform(0.4, 0.9), rng.uniform(0.5, 1.0))
    return rgb(hue + rng.normal(0, spread), sat * rng.uniform(0.5, 1.3), rng.uniform(0.2, 0.85))


def draw_clutter(
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    n: int,
    scale: float,
    rng: np.random.Generator,
    scene: tuple[float, float, float],
) -> None:
    """Leaves, blades, twigs, pebbles and petal-like blobs, from one pool used by every class."""
    x0, y0, x1, y1 = box
    for _ in range(n):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        r, angle, colour = scale * rng.uniform(0.04, 0.25), rng.uniform(0, math.pi), _clutter_colour(rng, scene)
        kind = rng.integers(0, 5)
        if kind == 0:  # leaf
            draw.polygon(ellipse(cx, cy, r, r * rng.uniform(0.2, 0.5), angle, 12), fill=colour)
        elif kind == 1:  # twig or blade
            bend = rng.normal(0, r * 0.4)
            end = (cx + 2 * r * math.cos(angle), cy + 2 * r * math.sin(angle))
            mid = ((cx + end[0]) / 2 + bend, (cy + end[1]) / 2 - bend)
            draw.line([(cx, cy), mid, end], fill=colour, width=max(1, int(r * rng.uniform(0.05, 0.25))))
        elif kind == 2:  # pebble or blob
            draw.polygon(ellipse(cx, cy, r, r * rng.uniform(0.5, 1.0), angle, 10), fill=colour)
        elif kind == 3:  # rosette of petal-like leaves (a distractor that is no class's subject)
            for k in range(int(rng.integers(3, 7))):
                t = angle + k * 2.1
                draw.polygon(
                    ellipse(cx + r * 0.5 * math.cos(t), cy + r * 0.5 * math.sin(t), r * 0.5, r * 0.18, t, 8),
                    fill=colour,
                )
        else:  # branching twig with fine lines (leg- and needle-like)
            for _ in range(int(rng.integers(2, 6))):
                t = angle + rng.normal(0, 0.8)
                draw.line([(cx, cy), (cx + r * math.cos(t), cy + r * math.sin(t))], fill=colour, width=1)


def render_background(
    width: int, height: int, rng: np.random.Generator
) -> tuple[Image.Image, tuple[float, float, float]]:
    """A cluttered, label-independent scene: low-frequency colour field plus clutter, defocused."""
    scene = SCENES[int(rng.integers(0, len(SCENES)))]
    grid = rng.random((int(rng.integers(2, 6)), int(rng.integers(2, 6)), 1)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid[..., 0]).resize((width, height), Image.Resampling.BICUBIC))[..., None]
    lo, hi = np.array(_clutter_colour(rng, scene), np.float32), np.array(_clutter_colour(rng, scene), np.float32)
    image = Image.fromarray((lo + np.clip(field, 0, 1) * (hi - lo)).clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    draw_clutter(draw, (0, 0, width, height), int(rng.integers(6, 26)), min(width, height), rng, scene)
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 3.0))))
    return image, scene


def _family_colours(look: FamilyLook, rng: np.random.Generator) -> tuple[Colour, Colour, Colour]:
    hue = look.hue + rng.uniform(-look.hue_spread, look.hue_spread)
    sat = look.saturation * rng.uniform(0.7, 1.2)
    main = rgb(hue, sat, rng.uniform(0.45, 0.95))
    accent = rgb(look.accent_hue + rng.normal(0, 0.05), rng.uniform(0.4, 1.0), rng.uniform(0.3, 1.0))
    return main, accent, rgb(hue, sat * 0.6, rng.uniform(0.1, 0.35))


def _photo_effects(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Lighting, colour cast, vignetting, blur and sensor noise, all independent of the label."""
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.8))))
    pixels = np.asarray(image, np.float32) / 255.0
    height, width = pixels.shape[:2]
    pixels = pixels ** rng.uniform(0.7, 1.4)  # exposure curve
    pixels = (pixels - 0.5) * rng.uniform(0.6, 1.2) + 0.5 * rng.uniform(0.75, 1.25)  # contrast, brightness
    pixels = pixels * np.exp(rng.normal(0, 0.12, 3)).astype(np.float32)  # white balance / colour cast
    y, x = np.ogrid[0:height, 0:width]
    radius = ((x / width - 0.5) ** 2 + (y / height - 0.5) ** 2) * 2.0
    pixels = pixels * (1.0 - rng.uniform(0.0, 0.5) * radius)[..., None]
    pixels = pixels * 255.0 + rng.normal(0, rng.uniform(1.0, 8.0), (height, width, 1))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def render_image(fine: int, rng: np.random.Generator, spec: SampleSpec) -> Image.Image:
    """One RGB "field photo" of a family: cluttered scene, the subject, occluders, camera effects."""
    look = family_look(fine)
    width = int(rng.integers(spec.min_side, spec.max_side + 1))
    height = int(np.clip(width * rng.uniform(0.6, 1.6), spec.min_side, spec.max_side * 1.3))
    image, scene = render_background(width, height, rng)
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    size = short * rng.uniform(0.5, 0.95)  # the subject's extent, as a share of the short side
    cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
    canvas = Canvas(draw, cx, cy, size, rng.uniform(0, 2 * math.pi), bool(rng.random() < 0.5))
    draw_subject(canvas, look, *_family_colours(look, rng))
    half = size * 0.4
    if rng.random() < 0.35:  # foreground leaves and twigs over part of the subject
        draw_clutter(
            draw, (cx - half, cy - half, cx + half, cy + half), int(rng.integers(1, 3)), size * 0.7, rng, scene
        )
    return _photo_effects(image, rng)


def hex_filename(seed: int, split: str, index: int) -> str:
    """A 40-lowercase-hex JPEG name, like the competition's."""
    return hashlib.sha1(f"living-things-sample/{seed}/{split}/{index}".encode()).hexdigest() + ".jpg"


def save_jpeg(image: Image.Image, path: Path, rng: np.random.Generator, special_share: float) -> None:
    """Save as JPEG at quality 40-95; a small share as grayscale or CMYK, which loaders must convert."""
    roll = rng.random()
    if roll < special_share / 2:
        image = image.convert("L")
    elif roll < special_share:
        image = image.convert("CMYK")
    image.save(path, "JPEG", quality=int(rng.integers(40, 96)))


def _plan_rows(spec: SampleSpec) -> dict[str, list[int]]:
    """Family index per image, per split: per_family split 2:1 train/val, plus the test set."""
    n_val = max(1, spec.per_family // 3)
    n_train = spec.per_family - n_val
    return {
        "train": [f for f in range(len(FINE_NAMES)) for _ in range(n_train)],
        "val": [f for f in range(len(FINE_NAMES)) for _ in range(n_val)],
        "test": [f for f in range(len(FINE_NAMES)) for _ in range(spec.test_per_family)],
    }


def write_split(folder: Path, split: str, families: list[int], spec: SampleSpec) -> None:
    """Render one split's images and CSV; test labels are written as placeholders (0)."""
    from tasks.data.dataset import SPLITS, split_csv_name  # not at import: keeps tasks.data.settings light

    rng = np.random.default_rng([spec.seed, SPLITS.index(split)])
    order = rng.permutation(len(families))  # shuffled rows, as in a real export
    (folder / split).mkdir(parents=True)
    lines = ["filename,fine,coarse"]
    for row, idx in enumerate(order):
        fine = families[idx]
        name = hex_filename(spec.seed, split, row)
        save_jpeg(render_image(fine, rng, spec), folder / split / name, rng, spec.special_mode_share)
        fine_label, coarse_label = (0, 0) if split == "test" else (fine, FINE_TO_COARSE[fine])
        lines.append(f"{name},{fine_label},{coarse_label}")
    (folder / split_csv_name(split)).write_text("\n".join(lines) + "\n", encoding="utf-8")


def stamp_of(spec: SampleSpec) -> dict[str, Any]:
    """What the stamp records: the settings and the generator version that drew the images."""
    return {**asdict(spec), "generator": GENERATOR_VERSION}


def generate_sample(data_dir: Path, spec: SampleSpec) -> Path:
    """Write a complete sample dataset into ``data_dir`` (which must not exist yet).

    Everything is written into a temporary sibling folder and renamed at the end, so an
    interrupted generation never leaves a half dataset that looks complete.
    """
    data_dir = Path(data_dir)
    if data_dir.exists():
        raise FileExistsError(f"{data_dir} already exists; refusing to overwrite it")
    tmp = data_dir.with_name(f".{data_dir.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)

    public = tmp / PUBLIC_DIR
    try:
        make_dirs(public)  # the sample lives in the output directory: no planted link is followed
        (public / INFO_FILE).write_text(
            json.dumps({"coarse": list(COARSE_NAMES), "fine": list(FINE_NAMES)}, indent=1), encoding="utf-8"
        )
        for split, families in _plan_rows(spec).items():
            write_split(public, split, families, spec)
        if spec.planted_originals or spec.planted_label_share:  # documented in planted.json beside public/
            plant_cases(tmp, spec.planted_originals, spec.planted_label_share, seed=spec.seed)
        (tmp / STAMP_NAME).write_text(json.dumps(stamp_of(spec), indent=1), encoding="utf-8")
        tmp.rename(data_dir)
    except BaseException:  # also a cancelled run (Prefect raises TerminationSignal on SIGTERM) or Ctrl-C
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return data_dir


def ensure_sample(data_dir: Path, spec: SampleSpec) -> Path:
    """Reuse the sample at ``data_dir`` if the same settings and generator made it, else (re)build it."""
    data_dir = Path(data_dir)
    stamp = data_dir / STAMP_NAME
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == stamp_of(spec):
        return data_dir
    if data_dir.exists():
        if not stamp.is_file():
            raise FileExistsError(f"{data_dir} exists but is not a generated sample; pick another folder")
        shutil.rmtree(data_dir)
    return generate_sample(data_dir, spec)
