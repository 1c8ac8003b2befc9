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

import colorsys
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
from tasks.data.taxonomy import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, families_of

#: Marker written last: its presence means the folder is a complete sample of these settings.
STAMP_NAME = "sample.json"
#: Bumped whenever the images change for the same settings, so an older sample is rebuilt, not reused.
GENERATOR_VERSION = 2

Points = list[tuple[float, float]]
Colour = tuple[int, int, int]


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
    """One family's look: its coarse class's body plan, plus proportions, pattern and hues of its own."""

    plan: int  # coarse index: which body plan
    hue: float  # centre of the main colour's hue range
    hue_spread: float  # half-width of that range (ranges of different families overlap)
    accent_hue: float  # pattern / secondary part colour
    saturation: float
    shape: tuple[float, float, float]  # proportions in [0, 1], read by the body plan
    count: int  # petals, blades, wing spots, ... depending on the plan
    pattern: int  # 0 plain, 1 spots, 2 bands


def family_look(fine: int) -> FamilyLook:
    """Deterministic per family and independent of the sample's seed. Hues are spread over the whole
    circle regardless of class, and proportions vary within narrow ranges, so families of one class
    look alike and colour alone does not give the class away."""
    rng = np.random.default_rng([20240, fine])
    coarse = FINE_TO_COARSE[fine]
    single = len(families_of(coarse)) == 1  # a one-family class gets a wider hue range, as real ones vary
    return FamilyLook(
        plan=coarse,
        hue=float(rng.uniform(0, 1)),
        hue_spread=float(rng.uniform(0.12, 0.2) if single else rng.uniform(0.05, 0.12)),
        accent_hue=float(rng.uniform(0, 1)),
        saturation=float(rng.uniform(0.35, 0.9)),
        shape=(float(rng.uniform(0, 1)), float(rng.uniform(0, 1)), float(rng.uniform(0, 1))),
        count=int(rng.integers(4, 9)),
        pattern=int(rng.integers(0, 3)),
    )


def _rgb(hue: float, saturation: float, value: float) -> Colour:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, min(max(saturation, 0), 1), min(max(value, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 20) -> Points:
    """A rotated ellipse as a polygon (so the whole subject can be rotated as points)."""
    ca, sa = math.cos(angle), math.sin(angle)
    pts = [(rx * math.cos(t), ry * math.sin(t)) for t in np.linspace(0, 2 * math.pi, n, endpoint=False)]
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


class Canvas:
    """Draws parts given in subject units (about [-0.5, 0.5]) through one scale/rotate/shift."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, angle: float, flip: bool):
        self.draw, self.cx, self.cy, self.size = draw, cx, cy, size
        self.ca, self.sa, self.flip = math.cos(angle), math.sin(angle), -1.0 if flip else 1.0

    def _map(self, pts: Points) -> Points:
        s = self.size
        return [
            (
                self.cx + s * (x * self.flip * self.ca - y * self.sa),
                self.cy + s * (x * self.flip * self.sa + y * self.ca),
            )
            for x, y in pts
        ]

    def poly(self, pts: Points, colour: Colour) -> None:
        self.draw.polygon(self._map(pts), fill=colour)

    def line(self, pts: Points, width: float, colour: Colour) -> None:
        self.draw.line(self._map(pts), fill=colour, width=max(1, int(round(width * self.size))), joint="curve")


def _pattern(cv: Canvas, look: FamilyLook, cx: float, cy: float, rx: float, ry: float, accent: Colour) -> None:
    """Spots or bands over a body part: the details that tell families of a class apart."""
    if look.pattern == 1:
        for k in range(look.count):
            t = 2 * math.pi * k / look.count
            cv.poly(_ellipse(cx + 0.55 * rx * math.cos(t), cy + 0.55 * ry * math.sin(t), rx * 0.16, rx * 0.16), accent)
    elif look.pattern == 2:
        for k in range(3):
            x = cx - rx * 0.5 + k * rx * 0.5
            cv.poly(
                [
                    (x - rx * 0.08, cy - ry * 0.9),
                    (x + rx * 0.08, cy - ry * 0.9),
                    (x + rx * 0.08, cy + ry * 0.9),
                    (x - rx * 0.08, cy + ry * 0.9),
                ],
                accent,
            )


def draw_subject(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """The body plan of the family's coarse class, with the family's proportions and pattern."""
    a, b, c = look.shape
    plan = look.plan
    if plan == 0:  # bird: tail, body, wing, head, beak, legs
        cv.line([(-0.05, 0.12), (-0.08, 0.32)], 0.02, dark)
        cv.poly([(-0.2, 0.0), (-0.48, -0.05 - 0.1 * a), (-0.48, 0.08 + 0.05 * a)], dark)
        cv.poly(_ellipse(0.0, 0.0, 0.28, 0.13 + 0.06 * b), main)
        cv.poly(_ellipse(-0.04, -0.02, 0.18, 0.08, 0.15), accent)
        cv.poly(_ellipse(0.24, -0.12, 0.09 + 0.03 * c, 0.09 + 0.03 * c), main)
        cv.poly([(0.31, -0.15), (0.42 + 0.12 * a, -0.12 + 0.03 * b), (0.31, -0.09)], dark)
        _pattern(cv, look, 0.02, 0.03, 0.2, 0.08, dark)
    elif plan == 1:  # snake: a thick sinuous band with a head
        pts = [(x, (0.15 + 0.1 * a) * math.sin(x * (6 + 4 * b))) for x in np.linspace(-0.5, 0.42, 18)]
        cv.line(pts, 0.08 + 0.03 * c, main)
        if look.pattern:
            cv.line(pts[1::3], 0.03, accent)
        cv.poly(_ellipse(pts[-1][0] + 0.04, pts[-1][1], 0.07, 0.05), main)
    elif plan == 2:  # squirrel: bushy tail, body, head, ears, legs
        cv.poly(_ellipse(-0.26, -0.1, 0.14 + 0.05 * a, 0.32, 0.3), main)
        cv.poly(_ellipse(-0.28, -0.12, 0.08, 0.24, 0.3), accent)
        cv.poly(_ellipse(0.0, 0.05, 0.22, 0.13 + 0.04 * b, -0.3), main)
        cv.poly(_ellipse(0.22, -0.12, 0.1, 0.08), main)
        cv.poly([(0.2, -0.18), (0.22, -0.28), (0.26, -0.18)], dark)
        cv.line([(0.1, 0.12), (0.14, 0.28)], 0.03, dark)
        cv.line([(-0.1, 0.14), (-0.12, 0.28)], 0.03, dark)
    elif plan == 3:  # spider: eight bent legs, cephalothorax, abdomen
        for side in (-1, 1):
            for k in range(4):
                t = -0.9 + k * 0.6
                knee = (side * 0.22 * math.cos(t), 0.22 * math.sin(t) - 0.12)
                foot = (side * (0.4 + 0.06 * a) * math.cos(t * 0.8), 0.38 * math.sin(t * 0.9) + 0.05)
                cv.line([(0.0, 0.0), knee, foot], 0.015 + 0.01 * b, dark)
        cv.poly(_ellipse(0.0, 0.0, 0.08, 0.07), dark)
        cv.poly(_ellipse(0.0, 0.16, 0.12 + 0.04 * c, 0.15), main)
        _pattern(cv, look, 0.0, 0.16, 0.1, 0.12, accent)
    elif plan == 4:  # flower: stem, leaf, petals around a disc
        green = _rgb(0.28 + 0.05 * a, 0.6, 0.45)
        cv.line([(0.0, 0.0), (0.05, 0.5)], 0.02, green)
        cv.poly(_ellipse(0.1, 0.32, 0.12, 0.04, -0.6), green)
        length, width = 0.18 + 0.14 * a, 0.05 + 0.07 * b
        for k in range(look.count):
            t = 2 * math.pi * k / look.count
            cv.poly(_ellipse(length * 0.6 * math.cos(t), length * 0.6 * math.sin(t), length * 0.55, width, t), main)
        cv.poly(_ellipse(0.0, 0.0, 0.05 + 0.05 * c, 0.05 + 0.05 * c), accent)
    elif plan == 5:  # insect: two pairs of wings, body, antennae
        span, chord = 0.22 + 0.18 * a, 0.06 + 0.12 * b
        for side in (-1, 1):
            cv.poly(_ellipse(side * span * 0.55, -0.06, span * 0.55, chord, side * 0.35), main)
            cv.poly(_ellipse(side * span * 0.45, 0.1, span * 0.42, chord * 0.8, -side * 0.45), main)
            if look.pattern:
                cv.poly(_ellipse(side * span * 0.65, -0.07, chord * 0.35, chord * 0.35), accent)
            cv.line([(0.0, -0.16), (side * 0.08, -0.3 - 0.06 * c)], 0.01, dark)
        cv.poly(_ellipse(0.0, 0.02, 0.035, 0.18 + 0.08 * c), dark)
    elif plan == 6:  # monocot: long narrow leaves from a base, a slim flower spike
        green = _rgb(0.25 + 0.08 * b, 0.55, 0.5)
        for k in range(look.count):
            t = -0.6 + 1.2 * k / max(look.count - 1, 1)
            tip = (0.5 * math.sin(t), 0.45 - 0.85 * math.cos(t))
            cv.line([(0.0, 0.45), ((tip[0]) * 0.5 + 0.04, 0.0), tip], 0.025, green)
        cv.poly(_ellipse(0.0, -0.3, 0.05 + 0.06 * a, 0.12 + 0.05 * c), main)
        cv.poly(_ellipse(0.0, -0.3, 0.02, 0.08), accent)
    else:  # conifer twig: a stem with needles, and a cone
        brown = _rgb(0.07, 0.6, 0.35)
        cv.line([(-0.45, 0.1), (0.45, -0.1)], 0.025, brown)
        for k in range(22):
            x = -0.42 + k * 0.04
            y = 0.1 - 0.2 * (x + 0.45) / 0.9
            for side in (-1, 1):
                cv.line([(x, y), (x + 0.06, y + side * (0.14 + 0.06 * a))], 0.012, main)
        cv.poly(_ellipse(0.05, 0.15, 0.07, 0.13 + 0.04 * b), accent)


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
        return _rgb(rng.uniform(0, 1), rng.uniform(0.4, 0.9), rng.uniform(0.5, 1.0))
    return _rgb(hue + rng.normal(0, spread), sat * rng.uniform(0.5, 1.3), rng.uniform(0.2, 0.85))


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
            draw.polygon(_ellipse(cx, cy, r, r * rng.uniform(0.2, 0.5), angle, 12), fill=colour)
        elif kind == 1:  # twig or blade
            bend = rng.normal(0, r * 0.4)
            end = (cx + 2 * r * math.cos(angle), cy + 2 * r * math.sin(angle))
            mid = ((cx + end[0]) / 2 + bend, (cy + end[1]) / 2 - bend)
            draw.line([(cx, cy), mid, end], fill=colour, width=max(1, int(r * rng.uniform(0.05, 0.25))))
        elif kind == 2:  # pebble or blob
            draw.polygon(_ellipse(cx, cy, r, r * rng.uniform(0.5, 1.0), angle, 10), fill=colour)
        elif kind == 3:  # rosette of petal-like leaves (a distractor that is no class's subject)
            for k in range(int(rng.integers(3, 7))):
                t = angle + k * 2.1
                draw.polygon(
                    _ellipse(cx + r * 0.5 * math.cos(t), cy + r * 0.5 * math.sin(t), r * 0.5, r * 0.18, t, 8),
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
    main = _rgb(hue, sat, rng.uniform(0.45, 0.95))
    accent = _rgb(look.accent_hue + rng.normal(0, 0.05), rng.uniform(0.4, 1.0), rng.uniform(0.3, 1.0))
    return main, accent, _rgb(hue, sat * 0.6, rng.uniform(0.1, 0.35))


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
    from tasks.data.dataset import INFO_FILE, PUBLIC_DIR

    public = tmp / PUBLIC_DIR
    try:
        make_dirs(public)  # the sample lives in the output directory: no planted link is followed
        (public / INFO_FILE).write_text(
            json.dumps({"coarse": list(COARSE_NAMES), "fine": list(FINE_NAMES)}, indent=1), encoding="utf-8"
        )
        for split, families in _plan_rows(spec).items():
            write_split(public, split, families, spec)
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
