"""The synthetic subjects of the embedded sample: each family's look, and each taxon's body plan
drawn on a small vector canvas (one function per plan). `tasks.data.sample` places them in
cluttered scenes; no randomness here, so a subject depends only on its family and its look.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from tasks.data.taxonomy import FINE_TO_COARSE, families_of

Points = list[tuple[float, float]]
Colour = tuple[int, int, int]


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


def rgb(hue: float, saturation: float, value: float) -> Colour:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, min(max(saturation, 0), 1), min(max(value, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 20) -> Points:
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
            cv.poly(ellipse(cx + 0.55 * rx * math.cos(t), cy + 0.55 * ry * math.sin(t), rx * 0.16, rx * 0.16), accent)
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


def _draw_bird(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """Bird: tail, body, wing, head, beak, legs."""
    a, b, c = look.shape
    cv.line([(-0.05, 0.12), (-0.08, 0.32)], 0.02, dark)
    cv.poly([(-0.2, 0.0), (-0.48, -0.05 - 0.1 * a), (-0.48, 0.08 + 0.05 * a)], dark)
    cv.poly(ellipse(0.0, 0.0, 0.28, 0.13 + 0.06 * b), main)
    cv.poly(ellipse(-0.04, -0.02, 0.18, 0.08, 0.15), accent)
    cv.poly(ellipse(0.24, -0.12, 0.09 + 0.03 * c, 0.09 + 0.03 * c), main)
    cv.poly([(0.31, -0.15), (0.42 + 0.12 * a, -0.12 + 0.03 * b), (0.31, -0.09)], dark)
    _pattern(cv, look, 0.02, 0.03, 0.2, 0.08, dark)


def _draw_snake(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """Snake: a thick sinuous band with a head."""
    a, b, c = look.shape
    pts = [(x, (0.15 + 0.1 * a) * math.sin(x * (6 + 4 * b))) for x in np.linspace(-0.5, 0.42, 18)]
    cv.line(pts, 0.08 + 0.03 * c, main)
    if look.pattern:
        cv.line(pts[1::3], 0.03, accent)
    cv.poly(ellipse(pts[-1][0] + 0.04, pts[-1][1], 0.07, 0.05), main)


def _draw_squirrel(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """Squirrel: bushy tail, body, head, ears, legs."""
    a, b, c = look.shape
    cv.poly(ellipse(-0.26, -0.1, 0.14 + 0.05 * a, 0.32, 0.3), main)
    cv.poly(ellipse(-0.28, -0.12, 0.08, 0.24, 0.3), accent)
    cv.poly(ellipse(0.0, 0.05, 0.22, 0.13 + 0.04 * b, -0.3), main)
    cv.poly(ellipse(0.22, -0.12, 0.1, 0.08), main)
    cv.poly([(0.2, -0.18), (0.22, -0.28), (0.26, -0.18)], dark)
    cv.line([(0.1, 0.12), (0.14, 0.28)], 0.03, dark)
    cv.line([(-0.1, 0.14), (-0.12, 0.28)], 0.03, dark)


def _draw_spider(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """Spider: eight bent legs, cephalothorax, abdomen."""
    a, b, c = look.shape
    for side in (-1, 1):
        for k in range(4):
            t = -0.9 + k * 0.6
            knee = (side * 0.22 * math.cos(t), 0.22 * math.sin(t) - 0.12)
            foot = (side * (0.4 + 0.06 * a) * math.cos(t * 0.8), 0.38 * math.sin(t * 0.9) + 0.05)
            cv.line([(0.0, 0.0), knee, foot], 0.015 + 0.01 * b, dark)
    cv.poly(ellipse(0.0, 0.0, 0.08, 0.07), dark)
    cv.poly(ellipse(0.0, 0.16, 0.12 + 0.04 * c, 0.15), main)
    _pattern(cv, look, 0.0, 0.16, 0.1, 0.12, accent)


def _draw_flower(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """Flower: stem, leaf, petals around a disc."""
    a, b, c = look.shape
    green = rgb(0.28 + 0.05 * a, 0.6, 0.45)
    cv.line([(0.0, 0.0), (0.05, 0.5)], 0.02, green)
    cv.poly(ellipse(0.1, 0.32, 0.12, 0.04, -0.6), green)
    length, width = 0.18 + 0.14 * a, 0.05 + 0.07 * b
    for k in range(look.count):
        t = 2 * math.pi * k / look.count
        cv.poly(ellipse(length * 0.6 * math.cos(t), length * 0.6 * math.sin(t), length * 0.55, width, t), main)
    cv.poly(ellipse(0.0, 0.0, 0.05 + 0.05 * c, 0.05 + 0.05 * c), accent)


def _draw_insect(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """Insect: two pairs of wings, body, antennae."""
    a, b, c = look.shape
    span, chord = 0.22 + 0.18 * a, 0.06 + 0.12 * b
    for side in (-1, 1):
        cv.poly(ellipse(side * span * 0.55, -0.06, span * 0.55, chord, side * 0.35), main)
        cv.poly(ellipse(side * span * 0.45, 0.1, span * 0.42, chord * 0.8, -side * 0.45), main)
        if look.pattern:
            cv.poly(ellipse(side * span * 0.65, -0.07, chord * 0.35, chord * 0.35), accent)
        cv.line([(0.0, -0.16), (side * 0.08, -0.3 - 0.06 * c)], 0.01, dark)
    cv.poly(ellipse(0.0, 0.02, 0.035, 0.18 + 0.08 * c), dark)


def _draw_monocot(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """Monocot: long narrow leaves from a base, a slim flower spike."""
    a, b, c = look.shape
    green = rgb(0.25 + 0.08 * b, 0.55, 0.5)
    for k in range(look.count):
        t = -0.6 + 1.2 * k / max(look.count - 1, 1)
        tip = (0.5 * math.sin(t), 0.45 - 0.85 * math.cos(t))
        cv.line([(0.0, 0.45), ((tip[0]) * 0.5 + 0.04, 0.0), tip], 0.025, green)
    cv.poly(ellipse(0.0, -0.3, 0.05 + 0.06 * a, 0.12 + 0.05 * c), main)
    cv.poly(ellipse(0.0, -0.3, 0.02, 0.08), accent)


def _draw_conifer(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """Conifer twig: a stem with needles, and a cone."""
    a, b, c = look.shape
    brown = rgb(0.07, 0.6, 0.35)
    cv.line([(-0.45, 0.1), (0.45, -0.1)], 0.025, brown)
    for k in range(22):
        x = -0.42 + k * 0.04
        y = 0.1 - 0.2 * (x + 0.45) / 0.9
        for side in (-1, 1):
            cv.line([(x, y), (x + 0.06, y + side * (0.14 + 0.06 * a))], 0.012, main)
    cv.poly(ellipse(0.05, 0.15, 0.07, 0.13 + 0.04 * b), accent)


#: The body plan of each coarse class, in its label order (`FamilyLook.plan`).
BODY_PLANS = (
    _draw_bird,
    _draw_snake,
    _draw_squirrel,
    _draw_spider,
    _draw_flower,
    _draw_insect,
    _draw_monocot,
    _draw_conifer,
)


def draw_subject(cv: Canvas, look: FamilyLook, main: Colour, accent: Colour, dark: Colour) -> None:
    """The body plan of the family's coarse class, with the family's proportions and pattern."""
    BODY_PLANS[min(look.plan, len(BODY_PLANS) - 1)](cv, look, main, accent, dark)
