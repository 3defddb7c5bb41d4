"""Synthetic scenes: textured shapes with occlusion, parts and groups, and exact masks.

A scene is a pure function of (seed, index). Shapes are drawn as polygons without
anti-aliasing, one after another, onto a textured background; a label map records which
primitive owns each pixel, so every mask is exactly the set of pixels its object shows.
Two kinds of structure make a single click genuinely ambiguous:

- parts: a panel with a differently coloured inset; the inset (part) and the panel with its
  inset (whole) are both objects.
- groups: 2-4 same-looking shapes touching or nearly touching; each member is an object
  and the group (the union of its members' masks) is another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

SHAPES = ("disc", "ellipse", "polygon", "star", "rounded_rect", "blob")
TEXTURES = ("flat", "stripes", "checkers", "noise", "gradient")
MIN_AREA = 20  # px; smaller visible masks are dropped
MAX_FRACTION = 0.9  # masks covering more of the image are dropped (as in SA-1B)
MIN_VISIBLE = 0.35  # a placement that leaves an earlier shape less visible than this is retried

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class SceneObject:
    """One annotated region. `mask` is (H, W) bool, the pixels the region shows."""

    mask: np.ndarray
    kind: str  # "object" (a shape or a whole), "part" (an inset) or "group"
    shape: str  # one of SHAPES, or "group"
    texture: str  # one of TEXTURES
    colour: Colour  # RGB; for "flat" textures every visible pixel has exactly this colour


@dataclass(frozen=True)
class Scene:
    """image (H, W, 3) uint8 RGB; parts are (part index, whole index) pairs and groups are
    (group index, member indices) pairs, indices into `objects`."""

    image: np.ndarray
    objects: list[SceneObject]
    parts: list[tuple[int, int]]
    groups: list[tuple[int, tuple[int, ...]]]

    @property
    def masks(self) -> np.ndarray:
        """All object masks stacked: (N, H, W) bool."""
        h, w = self.image.shape[:2]
        if not self.objects:
            return np.zeros((0, h, w), dtype=bool)
        return np.stack([o.mask for o in self.objects])


class SyntheticScenes:
    """`n` synthetic scenes of `size` x `size` pixels; scene i depends only on (seed, i)."""

    def __init__(self, *, seed: int, n: int, size: int = 256) -> None:
        if n < 0 or size < 32:
            raise ValueError(f"need n >= 0 and size >= 32 pixels; got n={n}, size={size}")
        self.seed, self.n, self.size = seed, n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Scene:
        if not 0 <= index < self.n:
            raise IndexError(f"scene index {index} out of range for {self.n} scenes")
        return make_scene(self.seed, index, self.size)

    def __iter__(self) -> Iterator[Scene]:
        return (self[i] for i in range(self.n))


# -- the scene ---------------------------------------------------------------------------------
@dataclass
class _Record:
    ids: tuple[int, ...]  # primitives whose pixels make up the region
    kind: str
    shape: str
    texture: str
    colour: Colour


def make_scene(seed: int, index: int, size: int = 256) -> Scene:
    """Scene `index` of the stream seeded by `seed`, `size` x `size` pixels."""
    rng = np.random.default_rng([seed, index])
    image = np.array(_texture(rng, str(rng.choice(TEXTURES)), _colour(rng), 0, 0, size, size))
    owner = np.zeros((size, size), dtype=np.int32)  # primitive id per pixel, 0 = background
    painted: list[int] = [0]  # painted area of each primitive, by id
    records: list[_Record] = []
    parts: list[tuple[int, int]] = []  # indices into records
    groups: list[tuple[int, tuple[int, ...]]] = []
    for _ in range(int(rng.integers(8, 17))):
        unit = str(rng.choice(["single", "part", "group"], p=[0.7, 0.15, 0.15]))
        for _try in range(4):
            plan = _PLANS[unit](rng, size)
            placed = _paint(rng, plan, image, owner, painted)
            if placed is not None:
                break
        else:
            continue
        ids = [painted_id for painted_id, _ in placed]
        looks = [look for _, look in placed]
        if unit == "single":
            records.append(_Record((ids[0],), "object", *looks[0]))
        elif unit == "part":
            records.append(_Record((ids[0], ids[1]), "object", *looks[0]))
            records.append(_Record((ids[1],), "part", *looks[1]))
            parts.append((len(records) - 1, len(records) - 2))
        else:
            members = []
            for pid, look in placed:
                records.append(_Record((pid,), "object", *look))
                members.append(len(records) - 1)
            records.append(_Record(tuple(ids), "group", "group", *looks[0][1:]))
            groups.append((len(records) - 1, tuple(members)))
    return _finish(image, owner, records, parts, groups)


def _finish(
    image: np.ndarray,
    owner: np.ndarray,
    records: list[_Record],
    parts: list[tuple[int, int]],
    groups: list[tuple[int, tuple[int, ...]]],
) -> Scene:
    """Turn records into masks, drop tiny/huge ones and records that no longer hold."""
    limit = MAX_FRACTION * owner.size
    masks = [np.isin(owner, r.ids) for r in records]
    keep = [MIN_AREA <= m.sum() <= limit for m in masks]
    for part, whole in parts:  # an inset showing all of its panel is no separate part
        if keep[part] and keep[whole] and masks[part].sum() > 0.95 * masks[whole].sum():
            keep[part] = False
    for group, members in groups:
        kept = [m for m in members if keep[m]]
        if len(kept) < 2:
            keep[group] = False
        else:  # the group is exactly the union of its recorded members
            masks[group] = np.logical_or.reduce([masks[m] for m in kept])
            keep[group] = masks[group].sum() <= limit
    new_index = np.cumsum(keep) - 1
    objects = [
        SceneObject(m, r.kind, r.shape, r.texture, r.colour)
        for m, r, k in zip(masks, records, keep, strict=True)
        if k
    ]
    return Scene(
        image=image,
        objects=objects,
        parts=[(int(new_index[p]), int(new_index[w])) for p, w in parts if keep[p] and keep[w]],
        groups=[
            (int(new_index[g]), tuple(int(new_index[m]) for m in ms if keep[m]))
            for g, ms in groups
            if keep[g]
        ],
    )


# -- plans: what to draw for one unit ------------------------------------------------------------
@dataclass
class _Primitive:
    polygon: np.ndarray  # (K, 2) float (X, Y) pixels
    texture: str
    colour: Colour
    shape: str
    inside: int | None = None  # clip to the primitive painted this many steps earlier


def _plan_single(rng: np.random.Generator, size: int) -> list[_Primitive]:
    shape = str(rng.choice(SHAPES))
    radius = size * float(np.exp(rng.uniform(np.log(0.04), np.log(0.22))))
    centre = rng.uniform(0, size, 2)
    return [_Primitive(_polygon(rng, shape, centre, radius), *_look(rng), shape)]


def _plan_part(rng: np.random.Generator, size: int) -> list[_Primitive]:
    shape = str(rng.choice(["rounded_rect", "disc", "ellipse", "blob", "polygon"]))
    radius = size * rng.uniform(0.1, 0.24)
    centre = rng.uniform(0.15 * size, 0.85 * size, 2)
    whole_tex, whole_colour = _look(rng)
    inset_shape = str(rng.choice(["disc", "rounded_rect", "ellipse", "polygon"]))
    offset = rng.uniform(0, 0.35 * radius) * _unit(rng.uniform(0, 2 * np.pi))
    inset_colour = _colour(rng, far_from=whole_colour)
    inset_tex = str(rng.choice(TEXTURES, p=[0.5, 0.125, 0.125, 0.125, 0.125]))
    inset = _polygon(rng, inset_shape, centre + offset, radius * rng.uniform(0.3, 0.5))
    return [
        _Primitive(_polygon(rng, shape, centre, radius), whole_tex, whole_colour, shape),
        _Primitive(inset, inset_tex, inset_colour, inset_shape, inside=1),
    ]


def _plan_group(rng: np.random.Generator, size: int) -> list[_Primitive]:
    shape = str(rng.choice(["disc", "disc", "rounded_rect", "polygon", "blob"]))
    texture, colour = _look(rng)
    radius = size * rng.uniform(0.05, 0.1)
    centre = rng.uniform(0.2 * size, 0.8 * size, 2)
    heading = rng.uniform(0, 2 * np.pi)
    members = []
    prev_r = radius
    for i in range(int(rng.integers(2, 5))):
        r = radius * rng.uniform(0.8, 1.2)
        if i:
            heading += rng.uniform(-np.pi / 3, np.pi / 3)
            centre = centre + (prev_r + r + rng.integers(0, 4)) * _unit(heading)
        members.append(_Primitive(_polygon(rng, shape, centre, r), texture, colour, shape))
        prev_r = r
    return members


_PLANS: dict[str, Callable[[np.random.Generator, int], list[_Primitive]]] = {
    "single": _plan_single,
    "part": _plan_part,
    "group": _plan_group,
}


def _paint(
    rng: np.random.Generator,
    plan: list[_Primitive],
    image: np.ndarray,
    owner: np.ndarray,
    painted: list[int],
) -> list[tuple[int, tuple[str, str, Colour]]] | None:
    """Paint `plan` over the scene, or leave the scene as it was and return None when a
    primitive would be (nearly) invisible or would hide too much of an earlier one.
    Returns (primitive id, (shape, texture, colour)) per primitive."""
    size = owner.shape[0]
    new_image, new_owner = image.copy(), owner.copy()
    drawn: list[np.ndarray] = []
    placed: list[tuple[int, tuple[str, str, Colour]]] = []
    for prim in plan:
        mask = _fill(prim.polygon, size)
        if prim.inside is not None:
            mask &= drawn[-prim.inside]
        if mask.sum() < MIN_AREA:
            return None
        drawn.append(mask)
        pid = len(painted) + len(placed)
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        tex = _texture(rng, prim.texture, prim.colour, x, y, w, h)
        window = mask[y : y + h, x : x + w]
        new_image[y : y + h, x : x + w][window] = tex[window]
        new_owner[mask] = pid
        placed.append((pid, (prim.shape, prim.texture, prim.colour)))
    visible = np.bincount(new_owner.ravel(), minlength=len(painted) + len(placed))
    areas = np.array(painted[1:] + [int(d.sum()) for d in drawn])
    if (visible[1:] < MIN_VISIBLE * areas).any():
        return None
    image[...] = new_image
    owner[...] = new_owner
    painted.extend(int(d.sum()) for d in drawn)
    return placed


# -- shapes ----------------------------------------------------------------------------------
def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def _polygon(rng: np.random.Generator, shape: str, centre: np.ndarray, r: float) -> np.ndarray:
    """(K, 2) float (X, Y) vertices of a `shape` of radius about `r`, randomly rotated."""
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    if shape == "disc":
        pts = r * np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "ellipse":
        pts = r * np.stack([np.cos(t), rng.uniform(0.4, 0.85) * np.sin(t)], 1)
    elif shape == "polygon":
        k = int(rng.integers(3, 9))
        a = np.sort(rng.uniform(0, 2 * np.pi, k))
        a = 0.5 * a + 0.5 * np.linspace(0, 2 * np.pi, k, endpoint=False)  # keep it spread out
        radii = r * rng.uniform(0.75, 1.0, k)
        pts = radii[:, None] * np.stack([np.cos(a), np.sin(a)], 1)
    elif shape == "star":
        k = int(rng.integers(5, 9))
        a = np.linspace(0, 2 * np.pi, 2 * k, endpoint=False)
        radii = np.where(np.arange(2 * k) % 2 == 0, r, r * rng.uniform(0.45, 0.7))
        pts = radii[:, None] * np.stack([np.cos(a), np.sin(a)], 1)
    elif shape == "rounded_rect":
        half = r * np.array([1.0, rng.uniform(0.5, 1.0)])
        corner = rng.uniform(0.1, 0.5) * half.min()
        q = np.linspace(0, np.pi / 2, 8)
        arc = corner * np.stack([np.cos(q), np.sin(q)], 1)
        quarters = []
        for sx, sy, flip in ((1, 1, False), (-1, 1, True), (-1, -1, False), (1, -1, True)):
            c = (half - corner) * np.array([sx, sy]) + arc[:: -1 if flip else 1] * np.array(
                [sx, sy]
            )
            quarters.append(c)
        pts = np.concatenate(quarters)
    elif shape == "blob":
        radial = np.ones_like(t)
        for k in (2, 3, 4, 5):
            radial += rng.uniform(0, 0.25 / k**0.5) * np.sin(k * t + rng.uniform(0, 2 * np.pi))
        pts = r * radial[:, None] * np.stack([np.cos(t), np.sin(t)], 1)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T + centre


def _fill(polygon: np.ndarray, size: int) -> np.ndarray:
    """Pixels whose centres the polygon covers, without anti-aliasing: (size, size) bool."""
    canvas = np.zeros((size, size), dtype=np.uint8)
    fixed = np.round(polygon * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(canvas, [fixed], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.view(bool)


# -- colours and textures -----------------------------------------------------------------------
def _colour(rng: np.random.Generator, far_from: Colour | None = None) -> Colour:
    """A random RGB colour, at least 100 (L2) from `far_from` when given."""
    while True:
        c = rng.integers(0, 256, 3)
        if far_from is None or np.linalg.norm(c - np.array(far_from)) >= 100:
            return (int(c[0]), int(c[1]), int(c[2]))


def _look(rng: np.random.Generator) -> tuple[str, Colour]:
    return str(rng.choice(TEXTURES, p=[0.4, 0.15, 0.15, 0.15, 0.15])), _colour(rng)


def _texture(
    rng: np.random.Generator, kind: str, colour: Colour, x: int, y: int, w: int, h: int
) -> np.ndarray:
    """(h, w, 3) uint8 texture for the image window at (x, y), based on `colour`."""
    base = np.array(colour, dtype=np.float32)
    if kind == "flat":
        return np.broadcast_to(base.astype(np.uint8), (h, w, 3))
    yy, xx = np.mgrid[y : y + h, x : x + w].astype(np.float32)
    other = np.array(_colour(rng, far_from=colour), dtype=np.float32)
    other = base + rng.uniform(0.3, 0.7) * (other - base)  # a second, related colour
    if kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        weight = (phase % 1.0 < 0.5).astype(np.float32)
    elif kind == "checkers":
        period = rng.uniform(4, 14)
        weight = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
    elif kind == "noise":
        cells = rng.uniform(0, 1, (max(2, h // 6 + 2), max(2, w // 6 + 2))).astype(np.float32)
        weight = cv2.resize(cells, (w, h), interpolation=cv2.INTER_LINEAR)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        proj = xx * np.cos(angle) + yy * np.sin(angle)
        weight = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    else:
        raise ValueError(f"unknown texture {kind!r}; expected one of {TEXTURES}")
    out = base + weight[..., None] * (other - base)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
