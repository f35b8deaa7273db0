"""Synthetic scenes of coloured shapes with compositional captions: the offline captioning data.

A scene holds one or two shapes, each a kind (circle, square, triangle), a size (small, large)
and a colour, drawn with Pillow on a light background. Captions name every attribute and, for
two shapes, their left/right relation; a two-shape scene has two references, one per order:

    "a small red circle left of a large blue square"
    "a large blue square right of a small red circle"

Scene ``i`` of a split is a function of (seed, split, i) alone, so any number of scenes can be
generated, in any order and in any process (DataLoader workers render images on demand).
"""

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

KINDS = ("circle", "square", "triangle")
SIZES = {"small": 0.12, "large": 0.2}  # half the side, as a fraction of the image side
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
}
BACKGROUND = (235, 235, 235)
TWO_SHAPE_FRACTION = 0.8  # the other scenes hold one shape


@dataclass(frozen=True)
class Shape:
    kind: str
    size: str
    colour: str
    x: float  # centre, as a fraction of the image width
    y: float  # centre, as a fraction of the image height

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.kind}"


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]  # left to right

    def captions(self) -> list[str]:
        """Every correct caption: one per shape order, duplicates removed, left-first first."""
        if len(self.shapes) == 1:
            return [self.shapes[0].phrase()]
        left, right = self.shapes
        captions = [
            f"{left.phrase()} left of {right.phrase()}",
            f"{right.phrase()} right of {left.phrase()}",
        ]
        return list(dict.fromkeys(captions))


def _random_attributes(rng: random.Random) -> tuple[str, str, str]:
    return rng.choice(KINDS), rng.choice(list(SIZES)), rng.choice(list(COLOURS))


def generate_scene(seed: int, split: str, index: int) -> Scene:
    """Scene ``index`` of ``split``: deterministic in its arguments, independent of the others."""
    rng = random.Random(f"shapes/{seed}/{split}/{index}")  # str seeds do not depend on hashing
    if rng.random() >= TWO_SHAPE_FRACTION:
        kind, size, colour = _random_attributes(rng)
        half = SIZES[size]
        return Scene((Shape(kind, size, colour, rng.uniform(half, 1 - half), _y(rng, half)),))
    (kind1, size1, colour1), (kind2, size2, colour2) = (_random_attributes(rng) for _ in range(2))
    half1, half2 = SIZES[size1], SIZES[size2]
    gap = 0.04  # between the two shapes' boxes, so they never touch
    x1 = rng.uniform(half1, 1 - half1 - 2 * half2 - gap)
    x2 = rng.uniform(x1 + half1 + half2 + gap, 1 - half2)
    return Scene(
        (
            Shape(kind1, size1, colour1, x1, _y(rng, half1)),
            Shape(kind2, size2, colour2, x2, _y(rng, half2)),
        )
    )


def _y(rng: random.Random, half: float) -> float:
    return rng.uniform(half, 1 - half)


def draw_scene(scene: Scene, image_size: int) -> Image.Image:
    """The scene as an RGB image of ``image_size`` x ``image_size`` pixels."""
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        cx, cy = shape.x * image_size, shape.y * image_size
        half = SIZES[shape.size] * image_size
        box = (cx - half, cy - half, cx + half, cy + half)
        colour = COLOURS[shape.colour]
        if shape.kind == "circle":
            draw.ellipse(box, fill=colour)
        elif shape.kind == "square":
            draw.rectangle(box, fill=colour)
        else:  # triangle, apex up
            draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], colour)
    return image
