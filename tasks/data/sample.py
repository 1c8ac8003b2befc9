"""The embedded sample dataset: a deterministic, synthetic stand-in for the Kaggle data.

It is written in exactly the Kaggle layout (DESIGN §2), with the real 8 coarse and 50 fine names
in the real order, 40-hex filenames, JPEGs of varying size and aspect ratio (a few grayscale and
CMYK), test labels as placeholders, and the real coarse imbalance (families are balanced, so
Magnoliopsida's 18 families against one family for the smallest classes gives 18:1).

The images are procedural, not photos. Each coarse class has its own background texture and
each family its own foreground shape and colour, chosen so that they survive flips, small
rotations, resizing and colour jitter: a correct pipeline scores far above chance, while a label
mix-up (for example alphabetical class ids) scores near chance. It exists so that the whole
pipeline runs in minutes with no download; it says nothing about accuracy on real photos.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tasks.data.taxonomy import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, families_of

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")
#: Marker written last: its presence means the folder is a complete sample of these settings.
STAMP_NAME = "sample.json"


@dataclass(frozen=True)
class SampleSpec:
    """How big the sample is. Labelled images are split 2:1 into train and val like the real data."""

    per_family: int  # no defaults here: DataSettings holds the sample's size (one default per setting)
    test_per_family: int
    min_side: int = 72
    max_side: int = 176
    seed: int = 0
    special_mode_share: float = 0.03  # grayscale and CMYK JPEGs, like a real photo dump

    def __post_init__(self) -> None:
        if self.per_family < 3:
            raise ValueError("per_family must be at least 3 (train, val and a hold-out need images)")
        if self.test_per_family < 1:
            raise ValueError("test_per_family must be at least 1")
        if not 32 <= self.min_side <= self.max_side:
            raise ValueError("need 32 <= min_side <= max_side")


@dataclass(frozen=True)
class FamilyLook:
    """The visual signature of one family: background texture (its coarse class) + shape + hue."""

    texture: int
    background_hue: float
    shape: str
    hue: float


def family_look(fine: int) -> FamilyLook:
    """Deterministic signature: coarse picks the texture; position within the coarse class picks
    shape (6 choices) and foreground hue (3 well-separated choices), so up to 18 families per
    coarse class stay distinguishable under colour jitter."""
    coarse = FINE_TO_COARSE[fine]
    rank = families_of(coarse).index(fine)
    return FamilyLook(
        texture=coarse,
        background_hue=(coarse * 0.125 + 0.05) % 1.0,
        shape=SHAPES[rank % len(SHAPES)],
        hue=(coarse * 0.07 + (rank // len(SHAPES)) / 3.0) % 1.0,
    )


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, min(max(saturation, 0), 1), min(max(value, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def render_texture(kind: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A grayscale texture in [0, 1], one kind per coarse class, with random phase and angle."""
    angle = rng.uniform(-0.3, 0.3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y = x / 24.0, y / 24.0  # texture scale in units of 24 px, so it survives resizing
    u = x * math.cos(angle) - y * math.sin(angle) + rng.uniform(0, 10)
    v = x * math.sin(angle) + y * math.cos(angle) + rng.uniform(0, 10)
    cx, cy = rng.uniform(0.3, 0.7) * width / 24.0, rng.uniform(0.3, 0.7) * height / 24.0
    radius = np.hypot(x - cx, y - cy)
    if kind == 0:  # smooth sky gradient
        tex = 0.5 + 0.45 * np.tanh(v - v.mean())
    elif kind == 1:  # fine scales
        tex = 0.5 + 0.5 * np.cos(6.0 * u) * np.cos(6.0 * v)
    elif kind == 2:  # fur: directional streaks
        noise = rng.random((height, max(width // 8, 1))).astype(np.float32)
        tex = np.asarray(Image.fromarray(noise).resize((width, height), Image.Resampling.BILINEAR))
    elif kind == 3:  # web: rings and spokes
        spokes = np.cos(8.0 * np.arctan2(y - cy, x - cx))
        tex = 0.5 + 0.25 * np.cos(5.0 * radius) + 0.25 * (spokes > 0.95)
    elif kind == 4:  # leafy blotches
        tex = 0.5 + 0.25 * (np.sin(1.3 * u) + np.sin(1.7 * v + np.sin(0.9 * u)))
    elif kind == 5:  # stripes
        tex = 0.5 + 0.5 * np.sign(np.sin(3.0 * u))
    elif kind == 6:  # thin grass blades
        tex = 0.5 + 0.5 * (np.sin(9.0 * u + 0.6 * np.sin(v)) > 0.7)
    else:  # zigzag needles
        tex = 0.5 + 0.5 * np.sign(np.sin(3.0 * u + 2.0 * np.abs((v % 2.0) - 1.0) * 3.0))
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def _shape_points(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    """Polygon vertices for the polygonal shapes."""
    if shape == "square":
        corners = [(rot + math.pi / 4 + k * math.pi / 2, r) for k in range(4)]
    elif shape == "triangle":
        corners = [(rot + k * 2 * math.pi / 3, r) for k in range(3)]
    elif shape == "star":
        corners = [(rot + k * math.pi / 5, r if k % 2 == 0 else r * 0.45) for k in range(10)]
    else:  # cross: 12-gon
        w = 0.33
        pts = [
            (w, 1),
            (w, w),
            (1, w),
            (1, -w),
            (w, -w),
            (w, -1),
            (-w, -1),
            (-w, -w),
            (-1, -w),
            (-1, w),
            (-w, w),
            (-w, 1),
        ]
        corners = [(math.atan2(py, px) + rot, r * math.hypot(px, py) / math.sqrt(2) * 1.3) for px, py in pts]
    return [(cx + rad * math.cos(a), cy + rad * math.sin(a)) for a, rad in corners]


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, rot: float, colour: tuple[int, int, int]
) -> None:
    """Draw one foreground object."""
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(int(r * 0.35), 2))
    else:
        draw.polygon(_shape_points(shape, cx, cy, r, rot), fill=colour)


def render_image(fine: int, rng: np.random.Generator, spec: SampleSpec) -> Image.Image:
    """One RGB image of a family: textured tinted background, 1-3 objects, jitter and noise."""
    look = family_look(fine)
    width = int(rng.integers(spec.min_side, spec.max_side + 1))
    height = int(np.clip(width * rng.uniform(0.6, 1.6), spec.min_side, spec.max_side * 1.3))
    tex = render_texture(look.texture, width, height, rng)
    bg_dark = np.array(_rgb(look.background_hue + rng.normal(0, 0.02), 0.55, 0.25), np.float32)
    bg_light = np.array(_rgb(look.background_hue + rng.normal(0, 0.02), 0.35, 0.85), np.float32)
    pixels = bg_dark + tex[..., None] * (bg_light - bg_dark)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    for _ in range(int(rng.integers(1, 4))):
        r = short * rng.uniform(0.14, 0.26)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        colour = _rgb(look.hue + rng.normal(0, 0.025), rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
        draw_shape(draw, look.shape, cx, cy, r, rng.uniform(0, 2 * math.pi), colour)
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.8))))
    noisy = np.asarray(image, np.float32) * rng.uniform(0.85, 1.15) + rng.normal(0, 6, (height, width, 1))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")


def hex_filename(seed: int, split: str, index: int) -> str:
    """A 40-lowercase-hex JPEG name, like the competition's."""
    return hashlib.sha1(f"living-things-sample/{seed}/{split}/{index}".encode()).hexdigest() + ".jpg"


def save_jpeg(image: Image.Image, path: Path, rng: np.random.Generator, special_share: float) -> None:
    """Save as JPEG; a small share as grayscale or CMYK, which loaders must convert to RGB."""
    roll = rng.random()
    if roll < special_share / 2:
        image = image.convert("L")
    elif roll < special_share:
        image = image.convert("CMYK")
    image.save(path, "JPEG", quality=int(rng.integers(75, 96)))


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
    from tasks.data.dataset import INFO_FILE, PUBLIC_DIR

    public = tmp / PUBLIC_DIR
    public.mkdir(parents=True)
    (public / INFO_FILE).write_text(
        json.dumps({"coarse": list(COARSE_NAMES), "fine": list(FINE_NAMES)}, indent=1), encoding="utf-8"
    )
    for split, families in _plan_rows(spec).items():
        write_split(public, split, families, spec)
    (tmp / STAMP_NAME).write_text(json.dumps(asdict(spec), indent=1), encoding="utf-8")
    tmp.rename(data_dir)
    return data_dir


def ensure_sample(data_dir: Path, spec: SampleSpec) -> Path:
    """Reuse the sample at ``data_dir`` if it was generated with the same settings, else (re)build it."""
    data_dir = Path(data_dir)
    stamp = data_dir / STAMP_NAME
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == asdict(spec):
        return data_dir
    if data_dir.exists():
        if not stamp.is_file():
            raise FileExistsError(f"{data_dir} exists but is not a generated sample; pick another folder")
        shutil.rmtree(data_dir)
    return generate_sample(data_dir, spec)
