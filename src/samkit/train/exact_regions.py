"""The exact object masks of a grounder's training scenes, as a second set of regions.

A text-alone answer is rescored on its zoomed mask (`samkit.text.zoom`), which follows the
object's outline far more closely than the model's proposals do. Trained on proposals alone,
the grounder has never seen such masks. Each training scene's exact object masks, described
as proposals are (`region_features`), give it those: it learns to name their colour and
shape, and to score, for each phrase, its object's exact mask above the other objects'.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.phrases import COLOUR_NAMES, words
from ..data.synthetic import Scene, make_scene
from ..masks import mask_iou_matrix
from ..text.grounding import (
    SHAPE_CLASSES,
    ShapeInputs,
    TextGrounder,
    region_features,
    shape_inputs,
)

if TYPE_CHECKING:
    from .grounder import GrounderConfig


def object_classes(scene: Scene) -> tuple[torch.Tensor, torch.Tensor]:
    """(objects,) indices into COLOUR_NAMES and SHAPE_CLASSES of each scene object's words."""
    look = [words(o, scene.image.shape[0] * scene.image.shape[1]) for o in scene.objects]
    colour = torch.tensor([COLOUR_NAMES.index(w.colour) for w in look], dtype=torch.long)
    shape = torch.tensor([SHAPE_CLASSES.index(w.shape) for w in look], dtype=torch.long)
    return colour, shape


def exact_record(scene: Scene, record: dict[str, Any], label_iou: float) -> dict[str, Any]:
    """The scene's non-empty object masks as regions: numbers, shape inputs, colour and shape
    labels (as phase 1 names its objects) and (objects, kept) IoUs of every object with each
    kept mask. The model's score a mask is described with: the best score of the proposals
    covering it by `label_iou`, or the median of the scene's where none does."""
    masks = scene.masks
    kept = np.flatnonzero(masks.reshape(len(masks), -1).any(1))
    scores = record["numbers"][:, -1]
    covering = record["iou"].float() >= label_iou  # (objects, proposals)
    median = float(scores.median()) if len(scores) else 1.0
    best = [
        float(scores[covering[i]].max()) if covering[i].any() else median for i in kept.tolist()
    ]
    iou = mask_iou_matrix(torch.from_numpy(masks), torch.from_numpy(masks[kept]))
    return {**_described(scene, kept, np.array(best, np.float32)), "iou": iou.half()}


def _described(scene: Scene, kept: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """The scene's object masks `kept` described with the model's `scores`: numbers, shape
    inputs and colour and shape labels."""
    numbers, crops = region_features(scene.image, scene.masks[kept], scores)
    colour, shape = object_classes(scene)
    return {
        "numbers": numbers,
        "shapes": shape_inputs(crops),
        "colour": colour[kept],
        "shape": shape[kept],
    }


def exact_loss(
    grounder: TextGrounder,
    exact: dict[str, Any],
    turn: tuple[int, bool],
    embedded: torch.Tensor | None,
    targets: torch.Tensor | None,
    attribute_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    margin: float,
    device: torch.device,
) -> torch.Tensor:
    """The attribute loss of a scene's exact masks, plus, for its phrases (`embedded` (P, w),
    `targets` (P,)), the cross-entropy of the exact masks covering each phrase's object (IoU
    within `margin` of the best) against the others. The pictures turn as the proposals'
    do (`turn`: quarter turns, flip)."""
    pictures = torch.rot90(exact["shapes"].pictures.to(device).float(), turn[0], (2, 3))
    if turn[1]:
        pictures = pictures.flip(3)
    shapes = ShapeInputs(pictures, exact["shapes"].spectra.to(device))
    regions = grounder.describe(exact["numbers"].to(device), shapes)
    loss = attribute_loss(
        grounder.attributes(regions), exact["colour"].to(device), exact["shape"].to(device)
    )
    if embedded is not None and targets is not None:
        iou = exact["iou"].float()[targets].to(device)  # (P, kept)
        positive = iou >= iou.max(1, keepdim=True).values - margin
        scores = grounder.score(embedded, regions)
        hits = scores.masked_fill(~positive, -torch.inf).logsumexp(1)
        loss = loss + (scores.logsumexp(1) - hits).mean()
    return loss


def pretrain_data(config: GrounderConfig, score: float, log: Any) -> list[dict[str, Any]]:
    """The exact masks of scenes `config.scenes` .. + `config.pretrain_scenes` of the training
    seed (after phase 1's), described with the model's score `score` (no proposals are made
    for them): numbers, shape inputs (pictures as float16: ~0.14 MB a scene) and colour and
    shape labels."""
    data = []
    start = time.monotonic()
    for index in range(config.scenes, config.scenes + config.pretrain_scenes):
        scene = make_scene(config.scene_seed, index, config.scene_size)
        kept = np.flatnonzero(scene.masks.reshape(len(scene.masks), -1).any(1))
        if not len(kept):
            continue
        described = _described(scene, kept, np.full(len(kept), score, np.float32))
        shapes = described["shapes"]
        data.append({**described, "shapes": ShapeInputs(shapes.pictures.half(), shapes.spectra)})
    log({"pretrain_scenes": len(data), "s": round(time.monotonic() - start)})
    return data


def pretrain_loss(
    grounder: TextGrounder,
    data: list[dict[str, Any]],
    config: GrounderConfig,
    attribute_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    rng: np.random.Generator,
) -> torch.Tensor:
    """The attribute loss of `config.scenes_per_step` scenes of `data` drawn by `rng`, their
    pictures turned by a random quarter and flipped, averaged over the scenes."""
    loss = torch.zeros((), device=device)
    for index in rng.integers(0, len(data), config.scenes_per_step):
        turn = (int(rng.integers(4)), bool(rng.random() < 0.5))
        loss = loss + exact_loss(grounder, data[index], turn, None, None, attribute_loss, 0, device)
    return loss / config.scenes_per_step
