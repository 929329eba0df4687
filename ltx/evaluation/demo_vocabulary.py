"""The demo world's vocabulary: palette, shapes, motions, backgrounds, caption grammar and held-out combinations.

One source of truth for ``data_pipeline/demo.py`` (which renders the world) and
``ltx.evaluation.demo_world`` (which reads the attributes back from decoded frames).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (240, 220, 40),
    "purple": (150, 60, 190), "orange": (245, 140, 30), "white": (245, 245, 245), "cyan": (40, 200, 210),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("striped", "checkered", "dotted", "gradient")
BACKGROUND_SHADES = (0.45, 0.9)  # a background is textured in these shades of its colour; a shape is its colour
# A shape's half-size as a fraction of the frame's shorter side: 0.18 is 23 px across at the demo's 64x64, most of
# one 32x32 latent cell. At 0.14 (18 px) a 1,000-step VAE left shapes as faint blobs of the wrong hue (shape
# pixels at 6.9 dB, 72 % of the error); at 0.2 (26 px) as blobs of the right colour in the right place
# (11.5 dB), which the evaluator and the DiT can use (experiments/vae_recipe/README.md). The moving shapes'
# paths start and end 0.19-0.2 from the edges, so a shape stays whole in the frame.
SHAPE_HALF_SIZE = 0.18
DIRECTIONS: dict[str, tuple[tuple[float, float], tuple[float, float], str]] = {
    # name: (start (x, y), end (x, y)) of the shape's centre as fractions of the frame, and the caption phrase
    "left_to_right": ((0.19, 0.5), (0.81, 0.5), "moves from left to right"),
    "right_to_left": ((0.81, 0.5), (0.19, 0.5), "moves from right to left"),
    "top_to_bottom": ((0.5, 0.19), (0.5, 0.81), "moves from top to bottom"),
    "bottom_to_top": ((0.5, 0.81), (0.5, 0.19), "moves from bottom to top"),
    "diagonal": ((0.2, 0.2), (0.8, 0.8), "moves diagonally from the top left to the bottom right"),
    "still": ((0.5, 0.5), (0.5, 0.5), "stays still in the centre"),
    "drift": ((0.49, 0.5), (0.51, 0.5), "stays almost still in the centre"),
}
WORLD_MOTIONS = ("left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top", "diagonal", "still")

# (colour, shape, motion) combinations that no training clip shows (neither the world's clips nor the fixed
# demo sources); evaluation prompts and the world's validation clips use them. Each colour holds out one
# motion per shape (3 distinct motions), each motion is held out 4 times and each (shape, motion) pair for at
# most 2 of the 8 colours, so every colour, shape and motion, and every pair of them, is still trained on:
# only the triple is new (compositional generalisation).
HELD_OUT_COMBINATIONS: tuple[tuple[str, str, str], ...] = (
    ("red", "circle", "bottom_to_top"), ("red", "square", "right_to_left"), ("red", "triangle", "top_to_bottom"),
    ("green", "circle", "right_to_left"), ("green", "square", "bottom_to_top"), ("green", "triangle", "diagonal"),
    ("blue", "circle", "diagonal"), ("blue", "square", "top_to_bottom"), ("blue", "triangle", "right_to_left"),
    ("yellow", "circle", "still"), ("yellow", "square", "left_to_right"), ("yellow", "triangle", "top_to_bottom"),
    ("purple", "circle", "still"), ("purple", "square", "top_to_bottom"), ("purple", "triangle", "diagonal"),
    ("orange", "circle", "bottom_to_top"), ("orange", "square", "left_to_right"), ("orange", "triangle", "still"),
    ("white", "circle", "right_to_left"), ("white", "square", "still"), ("white", "triangle", "left_to_right"),
    ("cyan", "circle", "left_to_right"), ("cyan", "square", "diagonal"), ("cyan", "triangle", "bottom_to_top"),
)


def _check_name(kind: str, name: str, valid) -> None:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def scene_caption(colour: str, shape: str, direction: str, background: str, background_colour: str) -> str:
    """The caption of one shot, e.g. "a red circle moves from left to right over a blue striped background"."""
    for kind, name, valid in (("colour", colour, COLOURS), ("shape", shape, SHAPES), ("direction", direction, DIRECTIONS),
                              ("background", background, BACKGROUNDS), ("colour", background_colour, COLOURS)):
        _check_name(kind, name, valid)
    phrase = DIRECTIONS[direction][2]
    return (f"{_article(colour)} {colour} {shape} {phrase} over "
            f"{_article(background_colour)} {background_colour} {background} background")


@dataclass(frozen=True)
class SceneLabels:
    """What a clip of the world shows: the shape's colour, the shape and its motion (None: unknown)."""

    colour: str | None
    shape: str | None
    motion: str | None


def _alternatives(names) -> str:
    return "|".join(re.escape(name) for name in names)


_PHRASE_TO_DIRECTION = {phrase: name for name, (_, _, phrase) in DIRECTIONS.items()}
_CAPTION = re.compile(
    rf"an? (?P<colour>{_alternatives(COLOURS)}) (?P<shape>{_alternatives(SHAPES)}) "
    rf"(?P<phrase>{_alternatives(_PHRASE_TO_DIRECTION)}) over an? (?P<background_colour>{_alternatives(COLOURS)}) "
    rf"(?P<background>{_alternatives(BACKGROUNDS)}) background"
)


def parse_caption(caption: str) -> SceneLabels:
    """The labels a single-shot caption of the ``scene_caption`` grammar states; ValueError for any other text."""
    match = _CAPTION.fullmatch(caption.strip())
    if match is None:
        raise ValueError(f"not a single-shot demo caption: {caption!r} (expected e.g. "
                         f"{scene_caption('red', 'circle', 'left_to_right', 'striped', 'blue')!r})")
    return SceneLabels(match["colour"], match["shape"], _PHRASE_TO_DIRECTION[match["phrase"]])


def training_combinations() -> tuple[tuple[str, str, str], ...]:
    """Every (colour, shape, motion) of the world except ``HELD_OUT_COMBINATIONS`` (120 of 144)."""
    held_out = set(HELD_OUT_COMBINATIONS)
    return tuple((colour, shape, motion) for colour in COLOURS for shape in SHAPES for motion in WORLD_MOTIONS
                 if (colour, shape, motion) not in held_out)


@dataclass(frozen=True)
class DemoPrompt:
    """A caption of the world and the attributes it asks for."""

    caption: str
    colour: str
    shape: str
    motion: str
    background: str
    background_colour: str

    @property
    def labels(self) -> SceneLabels:
        return SceneLabels(self.colour, self.shape, self.motion)


def held_out_prompts(count: int | None = None) -> list[DemoPrompt]:
    """``count`` prompts (default one per held-out combination) of the held-out combinations, in the order of
    ``HELD_OUT_COMBINATIONS``, repeating it with other backgrounds past 24. Deterministic: the world's
    validation clips render the first 24."""
    count = len(HELD_OUT_COMBINATIONS) if count is None else count
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    prompts = []
    for index in range(count):
        cycle, position = divmod(index, len(HELD_OUT_COMBINATIONS))
        colour, shape, motion = HELD_OUT_COMBINATIONS[position]
        background = BACKGROUNDS[(position + cycle) % len(BACKGROUNDS)]
        others = [name for name in COLOURS if name != colour]
        background_colour = others[(3 * position + cycle) % len(others)]
        prompts.append(DemoPrompt(scene_caption(colour, shape, motion, background, background_colour),
                                  colour, shape, motion, background, background_colour))
    return prompts
