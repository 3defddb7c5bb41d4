"""Words for synthetic scenes: each object's colour, shape, texture and size words, and the
phrases that name it uniquely in its scene ("the red disc", "the inset of the blue panel",
"all the stars"), with synonyms and word-order variants.

Synonyms come in two sets: the training set and a held-out set that only evaluation uses
(`heldout=True`), to measure whether a text prompt carries over to words it never saw.
A phrase is produced only when it names exactly one mask of its scene: a second red disc
makes "the red disc" ambiguous, so neither disc gets it (the pair may still be "all the red
discs" when they form a group). Everything is a pure function of the scene and the rng.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .synthetic import Colour, Scene, SceneObject

# name -> (training synonyms, held-out synonyms)
COLOUR_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "red": (("red", "scarlet"), ("crimson",)),
    "orange": (("orange",), ("amber",)),
    "yellow": (("yellow",), ("golden",)),
    "green": (("green",), ("emerald",)),
    "cyan": (("cyan", "turquoise"), ("aqua",)),
    "blue": (("blue",), ("azure",)),
    "purple": (("purple", "violet"), ("lilac",)),
    "pink": (("pink", "magenta"), ("rose",)),
    "brown": (("brown",), ("chocolate",)),
    "black": (("black",), ("ebony",)),
    "white": (("white",), ("ivory",)),
    "grey": (("grey", "gray"), ("silver",)),
}
SHAPE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "disc": (("disc", "circle", "round shape"), ("disk",)),
    "ellipse": (("ellipse", "oval"), ("elliptical shape",)),
    "polygon": (("polygon", "angular shape"), ("many-sided shape",)),
    "star": (("star", "star shape"), ("pentagram",)),
    "rounded_rect": (("rectangle", "rounded rectangle", "box"), ("rounded square",)),
    "blob": (("blob", "splotch"), ("irregular shape",)),
}
TEXTURE_WORDS = {
    "flat": "plain",
    "stripes": "striped",
    "checkers": "checkered",
    "noise": "mottled",
    "gradient": "shaded",
}
PART_WORDS = (("inset", "inner part"), ("centre piece",))
# Phrase kinds, as the text evaluation reports them.
KINDS = ("colour+shape", "colour", "shape", "group", "part")


@dataclass(frozen=True)
class Words:
    """What an object looks like, in words: one of COLOUR_WORDS, SHAPE_WORDS (or "group"),
    TEXTURE_WORDS' values, and "small" / "medium" / "large"."""

    colour: str
    shape: str
    texture: str
    size: str


@dataclass(frozen=True)
class Phrase:
    text: str
    target: int  # index into the scene's objects (and masks)
    kind: str  # one of KINDS


# The basic colour names `colour_name` gives, in a fixed order (the index `colour_indices` gives).
COLOUR_NAMES = tuple(COLOUR_WORDS)
# Hue bands (degrees, upper limits) of the saturated, not too dark colours, after red (< 15).
_HUE_BANDS = ((45, "orange"), (70, "yellow"), (165, "green"), (200, "cyan"), (255, "blue"))


def hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees, 0 for greys), saturation and value (0-1) of (..., 3) uint8 RGB colours,
    with colorsys.rgb_to_hsv's arithmetic."""
    x = rgb.astype(np.float64) / 255
    v = x.max(-1)
    chroma = v - x.min(-1)
    s = np.where(v > 0, chroma / np.maximum(v, 1e-12), 0)
    safe = np.maximum(chroma, 1e-12)
    rc, gc, bc = ((v - x[..., i]) / safe for i in range(3))
    hue = np.where(v == x[..., 0], bc - gc, np.where(v == x[..., 1], 2 + rc - bc, 4 + gc - rc))
    return 360 * ((hue / 6) % 1), s, v


def colour_indices(rgb: np.ndarray) -> np.ndarray:
    """Index into COLOUR_NAMES of each (..., 3) uint8 RGB colour: hue bands, with black, white
    and grey for dark or unsaturated colours and brown for dark orange."""
    return colour_indices_hsv(*hsv(rgb))


def colour_indices_hsv(hue: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`colour_indices` of colours already given as `hsv`."""
    name = np.full(v.shape, COLOUR_NAMES.index("pink"))
    for limit, colour in reversed((*_HUE_BANDS, (290, "purple"))):
        name = np.where(hue < limit, COLOUR_NAMES.index(colour), name)
    name = np.where((hue < 45) & (hue >= 15) & (v < 0.6), COLOUR_NAMES.index("brown"), name)
    name = np.where((hue < 15) | (hue >= 335), COLOUR_NAMES.index("red"), name)
    grey = np.where(v > 0.8, COLOUR_NAMES.index("white"), COLOUR_NAMES.index("grey"))
    name = np.where(s < 0.2, grey, name)
    return np.where(v < 0.25, COLOUR_NAMES.index("black"), name)


def colour_name(rgb: Colour) -> str:
    """The basic colour name of an RGB colour (`colour_indices`)."""
    return COLOUR_NAMES[int(colour_indices(np.array(rgb, dtype=np.uint8)))]


def words(obj: SceneObject, image_area: int) -> Words:
    """The words of a scene object; size from the fraction of the image its mask covers."""
    fraction = float(obj.mask.sum()) / image_area
    size = "small" if fraction < 0.01 else "large" if fraction > 0.05 else "medium"
    return Words(colour_name(obj.colour), obj.shape, TEXTURE_WORDS[obj.texture], size)


def plural(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    last = last + "es" if last.endswith(("x", "s")) else last + "s"
    return f"{head} {last}" if head else last


def scene_phrases(scene: Scene, rng: np.random.Generator, *, heldout: bool = False) -> list[Phrase]:
    """Every unambiguous phrase of `scene`, one per (object, kind), with synonyms and word
    order drawn from `rng` (from the held-out synonyms when `heldout`)."""
    area = scene.image.shape[0] * scene.image.shape[1]
    look = [words(o, area) for o in scene.objects]
    pick = 1 if heldout else 0

    def colour(i: int) -> str:
        return str(rng.choice(COLOUR_WORDS[look[i].colour][pick]))

    def shape(i: int) -> str:
        return str(rng.choice(SHAPE_WORDS[look[i].shape][pick]))

    single = [i for i, o in enumerate(scene.objects) if o.kind != "group"]
    by_both = Counter((look[i].colour, look[i].shape) for i in single)
    by_colour = Counter(look[i].colour for i in single)
    by_shape = Counter(look[i].shape for i in single)
    wholes = {whole for _, whole in scene.parts}
    out: list[Phrase] = []
    for i in single:
        if i in wholes:
            continue  # "the blue panel" also names its inset's pixels: only via its part
        if by_both[look[i].colour, look[i].shape] == 1:
            out.append(Phrase(_describe(rng, colour(i), shape(i), look[i]), i, "colour+shape"))
        if by_colour[look[i].colour] == 1:
            noun = str(rng.choice(["object", "shape", "one"]))
            out.append(Phrase(str(rng.choice([f"the {colour(i)} {noun}", colour(i)])), i, "colour"))
        if by_shape[look[i].shape] == 1:
            out.append(Phrase(str(rng.choice([f"the {shape(i)}", shape(i)])), i, "shape"))
    for part, whole in scene.parts:
        if by_both[look[whole].colour, look[whole].shape] == 1:
            noun = str(rng.choice(PART_WORDS[pick]))
            owner = f"{colour(whole)} {shape(whole)}"
            text = str(rng.choice([f"the {noun} of the {owner}", f"the {owner}'s {noun}"]))
            out.append(Phrase(text, part, "part"))
    for group, members in scene.groups:
        key = (look[members[0]].colour, look[members[0]].shape)
        if by_both[key] == len(members):  # every such object of the scene is in the group
            things = plural(f"{colour(members[0])} {shape(members[0])}")
            text = str(rng.choice([f"all the {things}", f"the group of {things}", things]))
            out.append(Phrase(text, group, "group"))
    return out


def _describe(rng: np.random.Generator, colour: str, shape: str, look: Words) -> str:
    """A colour+shape phrase in one of several word orders, sometimes with a size or texture."""
    templates = [
        f"{colour} {shape}",
        f"the {colour} {shape}",
        f"a {colour} {shape}",
        f"the {shape} that is {colour}",
        f"{shape}, {colour}",
        f"the {look.size} {colour} {shape}",
        f"the {look.texture} {colour} {shape}",
    ]
    return str(rng.choice(templates))
