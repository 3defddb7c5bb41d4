"""Text prompts on held-out synthetic scenes: mIoU of every phrase's object with the text
alone, the text and 1 or 3 protocol clicks, and the same objects' click protocol without
text, per phrase kind, for the training vocabulary and for held-out synonyms (issue 28).

Each scene's phrases come from `samkit.data.phrases.scene_phrases` with an rng seeded by
(seed, scene index), so a run names the same objects with the same words every time. With
text the decoder gives one mask (the phrase names one object): the first click joins the
text, later clicks add the previous low-res logits as mask input, as `run_protocol` does.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_path
from ..data.phrases import KINDS, Phrase, scene_phrases
from ..data.synthetic import Scene, make_scene
from ..interrupt import Interrupted, images
from ..masks import mask_iou
from ..modeling import Sam
from ..predictor import SamPredictor
from .clicks import first_click, next_click, run_protocol
from .report import ALL, Line, line_plot, mean_ci

CLICKS = (1, 3)  # click counts reported, with text and without
N_CLICKS = max(CLICKS)
# Table columns: the prompt, then @ the number of clicks (text@0: the phrase alone).
COLUMNS = ("text@0", *(f"text@{k}" for k in CLICKS), *(f"points@{k}" for k in CLICKS))
# Section name -> `scene_phrases(heldout=...)`.
VOCABULARIES = {"training vocabulary": False, "held-out synonyms": True}
LEGEND = (
    "text@0: the phrase alone; text@k: the phrase and k clicks of the click protocol (the "
    "first at the object's most interior point, each next at the centre of the largest error "
    "region, with the previous mask as mask input), one mask out; points@k: the click "
    "protocol without text on the same objects (`samkit eval`: 3 masks on the first click, "
    "the one the model scores highest kept); mIoU ± the 95% confidence interval; n: phrases "
    "(an object named by several phrases counts once for each)."
)

# A model's answer to the same phrases with clicks: (B, N, 2) (X, Y) clicks in original image
# pixels, (B, N) labels (1 foreground, 0 background) and the previous low-res logits (B, 1, h,
# w) or None -> (B, H, W) bool masks and their low-res logits (B, 1, h, w).
Predict = Callable[[np.ndarray, np.ndarray, torch.Tensor | None], tuple[np.ndarray, torch.Tensor]]


@dataclass
class TextScores:
    """One vocabulary's phrases: texts (M,), kinds (M,) and column -> (M,) IoU."""

    texts: list[str]
    kinds: list[str]
    ious: dict[str, np.ndarray]


@dataclass(frozen=True)
class TextRow:
    kind: str
    n: int
    miou: dict[str, tuple[float, float]]  # column -> (mean IoU, 95% CI half-width)


def require_text_head(model: Sam) -> str:
    """The text encoder the model's text head was trained with, or ValueError."""
    if not model.takes_text or not model.text_encoder:
        raise ValueError(
            "the model has no text head (prompt_encoder.text_projection or text_grounder): "
            "`samkit eval --text` needs a model that takes text (--model samkit_text, or one "
            "trained with text prompts); `samkit eval` without --text runs the click protocol "
            "on any model"
        )
    return model.text_encoder


def scene_prompts(seed: int, index: int, scene: Scene) -> dict[str, list[Phrase]]:
    """Vocabulary -> the phrases of scene `index` of `seed`, the same on every call."""
    return {
        name: scene_phrases(scene, np.random.default_rng([seed, index]), heldout=heldout)
        for name, heldout in VOCABULARIES.items()
    }


def text_protocol(predict: Predict, targets: np.ndarray, n_clicks: int) -> np.ndarray:
    """IoU with the text alone, then after each of `n_clicks` protocol clicks: (B, 1 + n_clicks).

    targets: (B, H, W) bool, each non-empty. The first click goes to the target's most
    interior point, with no mask input; each next one to the largest error region of the
    previous mask, with that mask's low-res logits as mask input (a perfect mask gets a click
    on the target's interior, as in `run_protocol`)."""
    b = len(targets)
    coords = np.zeros((b, 0, 2), dtype=np.float32)
    labels = np.zeros((b, 0), dtype=np.int64)
    pred, low_res = predict(coords, labels, None)
    ious = [mask_iou(pred, targets)]
    for k in range(n_clicks):
        if k == 0:
            clicks = [(*first_click(t), 1) for t in targets]
        else:
            clicks = [
                next_click(p, t) or (*first_click(t), 1) for p, t in zip(pred, targets, strict=True)
            ]
        new = np.array(clicks, dtype=np.float32)  # (B, 3): X, Y, label
        coords = np.concatenate([coords, new[:, None, :2]], axis=1)
        labels = np.concatenate([labels, new[:, None, 2].astype(np.int64)], axis=1)
        pred, low_res = predict(coords, labels, None if k == 0 else low_res)
        ious.append(mask_iou(pred, targets))
    return np.stack(ious, axis=1)


def phrase_columns(text_ious: np.ndarray, point_ious: np.ndarray) -> dict[str, np.ndarray]:
    """COLUMNS -> (M,) IoU from `text_protocol`'s (M, 1 + N_CLICKS) and the click protocol's
    (M, N_CLICKS) IoUs of the same M phrases' objects."""
    out = {"text@0": text_ious[:, 0]}
    out.update({f"text@{k}": text_ious[:, k] for k in CLICKS})
    out.update({f"points@{k}": point_ious[:, k - 1] for k in CLICKS})
    return out


@torch.no_grad()
def evaluate_text(model: Sam, seed: int, n: int, size: int) -> dict[str, TextScores]:
    """Every phrase of held-out synthetic scenes 0..n-1 of `seed` (`size` px): vocabulary ->
    its scores. Interrupted (see `samkit.interrupt`), raises `Interrupted` saying how many
    scenes were done."""
    require_text_head(model)
    found = {name: TextScores([], [], {c: np.zeros(0) for c in COLUMNS}) for name in VOCABULARIES}
    done = 0
    try:
        for index in range(n):
            scene = make_scene(seed, index, size)
            prompts = scene_prompts(seed, index, scene)
            for name, columns in _scene_scores(model, scene, prompts).items():
                scores = found[name]
                scores.texts.extend(p.text for p in prompts[name])
                scores.kinds.extend(p.kind for p in prompts[name])
                for c in COLUMNS:
                    scores.ious[c] = np.concatenate([scores.ious[c], columns[c]])
            done += 1
    except Interrupted as stop:
        raise Interrupted(stop.signum, f"{images(done)} evaluated") from None
    if not any(s.texts for s in found.values()):
        raise ValueError(f"no phrase names an object in {n} synthetic scenes of seed {seed}")
    return found


def _scene_scores(
    model: Sam, scene: Scene, prompts: dict[str, list[Phrase]]
) -> dict[str, dict[str, np.ndarray]]:
    """Vocabulary -> COLUMNS -> (P,) IoU of the vocabulary's P phrases of one scene."""
    objects = sorted({p.target for phrases in prompts.values() for p in phrases})
    if not objects:
        return {}
    masks = scene.masks
    points = run_protocol(model, scene.image, masks[objects], N_CLICKS).ious  # (U, N_CLICKS)
    row = {target: i for i, target in enumerate(objects)}
    predictor = SamPredictor(model)
    predictor.set_image(scene.image)
    out = {}
    for name, phrases in prompts.items():
        if not phrases:
            continue
        texts = predictor.encode_text([p.text for p in phrases])  # (P, D)
        targets = masks[[p.target for p in phrases]]
        text_ious = text_protocol(_text_predict(predictor, texts), targets, N_CLICKS)
        out[name] = phrase_columns(text_ious, points[[row[p.target] for p in phrases]])
    return out


def _text_predict(predictor: SamPredictor, texts: torch.Tensor) -> Predict:
    """`Predict` for the predictor's image and (B, D) text vectors: one mask each."""
    size = predictor.original_size
    assert size is not None

    def predict(
        coords: np.ndarray, labels: np.ndarray, mask_input: torch.Tensor | None
    ) -> tuple[np.ndarray, torch.Tensor]:
        coords_t = labels_t = None
        if coords.shape[1]:
            resized = predictor.transform.apply_coords(coords, size)
            coords_t = torch.as_tensor(resized, device=predictor.device)
            labels_t = torch.as_tensor(labels, device=predictor.device)
        masks, _, low_res = predictor.predict_torch(
            coords_t, labels_t, mask_input=mask_input, multimask_output=False, text_embeddings=texts
        )
        return masks[:, 0].cpu().numpy(), low_res

    return predict


def summarize_text(scores: TextScores) -> list[TextRow]:
    """A row for all phrases, then one per phrase kind that has phrases (in KINDS order)."""
    kinds = np.array(scores.kinds)
    rows = []
    for kind in (ALL, *KINDS):
        sel = np.ones(len(kinds), bool) if kind == ALL else kinds == kind
        if sel.any():
            rows.append(
                TextRow(kind, int(sel.sum()), {c: mean_ci(v[sel]) for c, v in scores.ious.items()})
            )
    return rows


def text_tables(scores: dict[str, TextScores]) -> dict[str, list[TextRow]]:
    """`summarize_text` of each vocabulary that has phrases."""
    return {name: summarize_text(s) for name, s in scores.items() if s.texts}


def results_markdown(tables: dict[str, list[TextRow]]) -> str:
    """A section per vocabulary, each a table with a row per phrase kind; `LEGEND` last."""
    parts = []
    for name, rows in tables.items():
        lines = ["| kind | n | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (2 + len(COLUMNS))]
        for r in rows:
            cells = [
                r.kind,
                str(r.n),
                *(f"{r.miou[c][0]:.3f} ± {r.miou[c][1]:.3f}" for c in COLUMNS),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append(f"## {name}\n\n" + "\n".join(lines) + "\n\n")
    return "".join(parts) + f"{LEGEND}\n"


def write_results(tables: dict[str, list[TextRow]], out: str | os.PathLike[str]) -> None:
    """text_results.md, text_results.csv (a line per vocabulary and kind) and text_miou.png
    (mIoU against clicks 0, 1, 3: text in each vocabulary, and points only) in `out`."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "text_results.md") as tmp:
        tmp.write_text(results_markdown(tables))
    with atomic_path(folder / "text_results.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        cis = [c.replace("@", "_ci95@") for c in COLUMNS]
        writer.writerow(["vocabulary", "kind", "n", *COLUMNS, *cis])
        for name, rows in tables.items():
            for r in rows:
                means = [f"{r.miou[c][0]:.4f}" for c in COLUMNS]
                writer.writerow(
                    [name, r.kind, r.n, *means, *(f"{r.miou[c][1]:.4f}" for c in COLUMNS)]
                )
    _plot(tables, folder / "text_miou.png")


def _plot(tables: dict[str, list[TextRow]], path: Path) -> None:
    """mIoU of all phrases against clicks: a line for text in each vocabulary, one for points."""
    ticks = (0, *CLICKS)
    alls = {name: next(r for r in rows if r.kind == ALL) for name, rows in tables.items()}
    lines = []
    for name, r in alls.items():
        cells = [r.miou[f"text@{k}"] for k in ticks]
        label = f"text, {name.split()[0]} (n={r.n})"
        lines.append(Line(label, [m for m, _ in cells], [h for _, h in cells]))
    first = next(iter(alls.values()))  # the objects are the same in every vocabulary
    cells = [(math.nan, math.nan), *(first.miou[f"points@{k}"] for k in CLICKS)]
    lines.append(Line(f"points only (n={first.n})", [m for m, _ in cells], [h for _, h in cells]))
    line_plot(path, [str(k) for k in ticks], lines, x_label="clicks", y_label="mIoU")
