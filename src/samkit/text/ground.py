"""Text prompts answered by a model's text grounder (`samkit.text.grounding`).

The text alone: the model proposes masks for a grid of points, three each
(`image_proposals`, computed once per image and kept with its embedding); the grounder
scores every proposal against the phrase, the RERANK best ones are decoded again, each on an
enlarged crop around it where it is small (`text.zoom`: sharper outlines), and scored again;
the answer is the order of the two scores' sum.
Text with one click, SAM's ambiguous prompt: the click's masks (the model's three multimask
outputs and its single-mask output) are scored against the phrase and ordered by it. Text
with more clicks, a box or a mask prompt, which settle the object: one mask out is the
model's own, and three are its multimask outputs ordered by the phrase. The encoder and
decoder run as they do for prompts without text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..masks import build_point_grid
from .grounding import TextGrounder, region_features, work_size
from .zoom import EMPTY_LOGIT, zoomed

if TYPE_CHECKING:
    from ..predictor import ImageEmbedding, SamPredictor

GRID = 16  # point prompts a side for the text-alone proposals (3 masks each)
MIN_SCORE = 0.5  # proposals the model predicts below this IoU are dropped
MIN_AREA = 4  # px at the working size: smaller proposals are dropped
DUPLICATE_IOU = 0.85  # a proposal overlapping a better one this much is dropped
CHUNK = 64  # point prompts decoded at a time
DEDUPE_SIDE = 128  # masks are compared at most this many px a side to drop duplicates
RERANK = 3  # a text-alone prompt's best-scored proposals decoded again zoomed and rescored


@dataclass(frozen=True)
class Answer:
    """A proposal decoded again (zoomed where small): a text-alone answer."""

    low_res: torch.Tensor  # (h, w) low-res logits
    score: float  # the decoder's predicted IoU
    region: torch.Tensor  # (1, width) the grounder's embedding of its mask


@dataclass
class Proposals:
    """An image's candidate masks, each a point prompt and one of its three masks."""

    points: torch.Tensor  # (K, 2) (X, Y) in the resized frame (`transform.apply_coords`)
    slots: torch.Tensor  # (K,) which multimask output of the point
    numbers: torch.Tensor  # (K, N_FEATURES) `region_features`
    crops: torch.Tensor  # (K, 4, CROP, CROP)
    # (K, h, w) bool at `work_size`: training's targets; not kept with an image's embedding
    masks: torch.Tensor | None = None
    # (K, width) the grounder's embeddings of them (`TextGrounder.regions`), which every
    # text-alone prompt scores against: made once, with the ones kept with an image's embedding
    regions: torch.Tensor | None = None
    # proposal index -> its `Answer`, made the first time a phrase ranks it among its best
    answers: dict[int, Answer] = field(default_factory=dict)


def grid_points(input_size: tuple[int, int], n: int = GRID) -> torch.Tensor:
    """(n * n, 2) (X, Y) points at the centres of an n x n grid over the resized image, X
    fastest (AMG's `build_point_grid`, scaled)."""
    h, w = input_size
    return torch.from_numpy(build_point_grid(n) * np.array([w, h])).float()


def work_masks(predictor: SamPredictor, low_res: torch.Tensor) -> torch.Tensor:
    """(N, h, w) low-res logits -> (N, h', w') bool masks at the image's `work_size`: the
    image's part of the low-res grid (the rest is padding), resized. Never upscaled to the
    model's input size first, as full-size masks are: 192 of them at 1024 px would be 800 MB."""
    state = predictor._require_image()
    scale = low_res.shape[-1] / predictor.model.img_size
    h, w = (max(1, round(s * scale)) for s in state.input_size)
    size = work_size(*state.input_size)
    logits = low_res[:, None, :h, :w]
    if (h, w) != size:
        logits = F.interpolate(logits, size, mode="bilinear", align_corners=False)
    return logits[:, 0] > predictor.model.mask_threshold


def propose(predictor: SamPredictor, points: torch.Tensor) -> Proposals:
    """The distinct masks the model gives for one-point prompts at `points` ((N, 2) in the
    resized frame): three a point, those it scores below MIN_SCORE or smaller than MIN_AREA
    dropped, then any overlapping a higher-scored one by DUPLICATE_IOU."""
    state = predictor._require_image()
    if state.pixels is None:
        raise RuntimeError("the image was set without the pixels a text grounder describes")
    found: list[tuple[torch.Tensor, ...]] = []
    for chunk in points.to(predictor.device).split(CHUNK):
        labels = torch.ones(len(chunk), 1, dtype=torch.int, device=predictor.device)
        low_res, iou = predictor.decode_low_res(chunk[:, None], labels, None, None, True)
        masks = work_masks(predictor, low_res.flatten(0, 1)).cpu()
        scores = iou.flatten().cpu()
        keep = (scores > MIN_SCORE) & (masks.flatten(1).sum(1) >= MIN_AREA)
        index = torch.arange(len(scores))[keep]
        found.append((masks[keep], scores[keep], chunk.cpu()[index // 3], index % 3))
    masks, scores, where, slots = (torch.cat(parts) for parts in zip(*found, strict=True))
    order = scores.argsort(descending=True)
    order = order[_distinct(masks[order])]
    numbers, crops = region_features(state.pixels, masks[order].numpy(), scores[order].numpy())
    return Proposals(where[order], slots[order], numbers, crops, masks[order])


def _distinct(masks: torch.Tensor) -> torch.Tensor:
    """Indices of (K, h, w) bool masks, best first, that overlap no earlier kept one by
    DUPLICATE_IOU (IoU of the masks averaged down to DEDUPE_SIDE a side)."""
    if not len(masks):
        return torch.zeros(0, dtype=torch.long)
    h, w = masks.shape[1:]
    side = (min(h, DEDUPE_SIDE), min(w, DEDUPE_SIDE))
    small = F.adaptive_avg_pool2d(masks[:, None].float(), side).flatten(1)  # (K, side²)
    inter = small @ small.T
    area = small.sum(1)
    iou = inter / (area[:, None] + area[None] - inter).clamp(min=1e-6)
    kept: list[int] = []
    for i in range(len(masks)):
        if not kept or float(iou[i, kept].max()) < DUPLICATE_IOU:
            kept.append(i)
    return torch.tensor(kept)


def image_proposals(predictor: SamPredictor) -> Proposals:
    """The current image's text-alone proposals (a GRID x GRID grid of points), computed on
    the first call and then kept with the image's embedding."""
    state: ImageEmbedding = predictor._require_image()
    if state.proposals is None:
        grounder = predictor.model.text_grounder
        assert isinstance(grounder, TextGrounder)
        found = propose(predictor, grid_points(state.input_size))
        with torch.no_grad():
            device = predictor.device
            regions = grounder.regions(found.numbers.to(device), found.crops.to(device))
        # the masks (~10 MB at 256 px) are not kept
        state.proposals = dataclasses.replace(found, masks=None, regions=regions)
    return state.proposals


def ground(
    predictor: SamPredictor,
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    multimask_output: bool,
    texts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res logits (B, C, h, w) and predicted IoUs (B, C) of the masks the (B, D) text
    vectors name, best first (C: 3 with multimask_output, else 1), with the other prompts
    as `predict_torch` takes them or none."""
    grounder = predictor.model.text_grounder
    assert isinstance(grounder, TextGrounder)
    keep = 3 if multimask_output else 1
    if point_coords is None and boxes is None and mask_input is None:
        return _text_alone(predictor, grounder, texts, keep)
    args = (point_coords, point_labels, boxes, mask_input)
    one_click = point_coords is not None and point_coords.shape[1] == 1
    if one_click and boxes is None and mask_input is None:  # ambiguous: the text decides
        low_res, iou = predictor.decode_low_res(*args, True, every_mask=True)
        outputs = low_res.shape[1]
        multimask_first = torch.tensor([*range(1, outputs), 0], device=low_res.device)
        low_res, iou = low_res[:, multimask_first], iou[:, multimask_first]  # (B, 4, h, w)
    elif multimask_output:
        low_res, iou = predictor.decode_low_res(*args, True)
    else:  # clicks, a box or a mask prompt settle which object: the model's own mask
        return predictor.decode_low_res(*args, False)
    state = predictor._require_image()
    assert state.pixels is not None
    order = []
    for b in range(len(texts)):
        masks = work_masks(predictor, low_res[b]).cpu()
        score = torch.full((len(masks),), -torch.inf)
        filled = masks.flatten(1).any(1)
        if filled.any():
            numbers, crops = region_features(
                state.pixels, masks[filled].numpy(), iou[b][filled].cpu().numpy()
            )
            device = texts.device
            score[filled] = grounder(texts[b : b + 1], numbers.to(device), crops.to(device))[
                0
            ].cpu()
        order.append(score.argsort(descending=True, stable=True)[:keep])
    pick = torch.stack(order).to(low_res.device)  # (B, C)
    rows = torch.arange(len(texts), device=low_res.device)[:, None]
    return low_res[rows, pick], iou[rows, pick]


def _text_alone(
    predictor: SamPredictor, grounder: TextGrounder, texts: torch.Tensor, keep: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`ground` for the text alone: each phrase's RERANK best-scored proposals, answered
    (`_answers`) and ordered by the sum of the proposal's score and its answer's."""
    found = image_proposals(predictor)
    if not len(found.points):
        return _nothing(predictor, len(texts), keep)
    assert found.regions is not None  # made with the proposals
    phrases = grounder.text(texts)
    scores = grounder.score(phrases, found.regions)  # (B, K)
    top = scores.topk(min(max(keep, RERANK), scores.shape[1]), dim=1).indices.cpu()
    answers = _answers(predictor, grounder, found, sorted(set(top.flatten().tolist())))
    low_res, iou = [], []
    for b, picks in enumerate(top.tolist()):
        regions = torch.cat([answers[i].region for i in picks])
        total = scores[b, picks] + grounder.score(phrases[b : b + 1], regions)[0]
        order = [picks[i] for i in total.argsort(descending=True, stable=True)[:keep].tolist()]
        order += order[-1:] * (keep - len(order))
        low_res.append(torch.stack([answers[i].low_res for i in order]))
        iou.append(torch.tensor([answers[i].score for i in order]))
    return torch.stack(low_res), torch.stack(iou).to(predictor.device)


def _answers(
    predictor: SamPredictor, grounder: TextGrounder, found: Proposals, indices: list[int]
) -> dict[int, Answer]:
    """The `Answer` of each proposal in `indices`, made once and kept in `found.answers`."""
    todo = [i for i in indices if i not in found.answers]
    if todo:
        points = found.points[todo][:, None].to(predictor.device)
        labels = torch.ones(len(todo), 1, dtype=torch.int, device=predictor.device)
        low_res, iou = predictor.decode_low_res(points, labels, None, None, True)
        state = predictor._require_image()
        assert state.pixels is not None
        for row, i in enumerate(todo):
            slot = int(found.slots[i])
            proposed = float(iou[row, slot])
            logits, score = zoomed(predictor, low_res[row, slot], proposed)
            mask = work_masks(predictor, logits[None]).cpu().numpy()
            # described with the proposal's predicted IoU, as the grounder learned them
            numbers, crops = region_features(state.pixels, mask, np.array([proposed]))
            device = predictor.device
            region = grounder.regions(numbers.to(device), crops.to(device))
            found.answers[i] = Answer(logits, score, region)
    return {i: found.answers[i] for i in indices}


def _nothing(predictor: SamPredictor, b: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty masks for an image where the model proposes none."""
    side = predictor.model.prompt_encoder.mask_input_size
    low_res = torch.full((b, c, *side), EMPTY_LOGIT, device=predictor.device)
    return low_res, torch.zeros(b, c, device=predictor.device)
