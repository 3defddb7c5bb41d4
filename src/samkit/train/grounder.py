"""Train a text grounder (`samkit.text.grounding`) for a frozen model on synthetic scenes.

    python -m samkit.train.grounder --out runs/text_grounder [--config configs/text_grounder.json]

Two phases, both resumable (run the same command again after a kill):

1. **Proposals.** Each training scene is embedded once; the model proposes masks for a click
   inside every object and for random clicks (`samkit.text.ground.propose`), and each
   proposal's `region_features`, its IoU with every object and the colour and shape of the
   object it covers are kept (`proposals.pt`, written every 100 scenes).
2. **Matching.** The grounder learns to score, for each phrase of a scene
   (`samkit.data.phrases`), the proposals that cover its object best above the others
   (softmax cross-entropy over the scene's proposals, plus the IoU its scores expect), to
   name each proposal's colour and shape (a denser signal than one phrase's target), and to
   read which colour and shape each phrase names. A checkpoint every 500 steps.

With `pretrain_steps`, the grounder first learns, between the two, to name the colour and
shape of the exact object masks of `pretrain_scenes` more scenes (`exact_regions.pretrain_data`:
no proposals, ~0.03 s a scene), which are cheap where proposals are not
(`pretrain_checkpoint.pt`; matching then starts from it).

The grounder's weights go to OUT/grounder.safetensors (keys `text_grounder.*`, metadata naming
the text encoder), which `samkit.load` attaches to the model: the shipped `samkit_text` is
`samkit_default` with this file (`make train-text`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .._atomic import atomic_path
from ..build import variant_registry
from ..checkpoints import write_safetensors
from ..data.phrases import COLOUR_NAMES, scene_phrases, words
from ..data.synthetic import Scene, make_scene
from ..eval.clicks import first_click
from ..loading import GROUNDER_PREFIX, TEXT_ENCODER_KEY, VARIANT_KEY, load
from ..masks import mask_iou_matrix
from ..predictor import SamPredictor
from ..text import encode_cached, get_text_encoder
from ..text.ground import propose
from ..text.grounding import (
    ATTRIBUTE_PARTS,
    N_COLOURS,
    SHAPE_CLASSES,
    ShapeInputs,
    TextGrounder,
    shape_inputs,
)
from .exact_regions import exact_loss, exact_record, object_classes, pretrain_data, pretrain_loss
from .one_cycle import optimise

SAVE_SCENES = 100
# phrase kinds (`samkit.data.phrases.KINDS`) that name their object's colour, and its shape
NAMES_COLOUR = ("colour+shape", "colour", "group")
NAMES_SHAPE = ("colour+shape", "shape", "group")


@dataclass(frozen=True)
class GrounderConfig:
    model: str = "samkit_default"  # the frozen model whose proposals are matched
    text_encoder: str = "minilm"
    scene_seed: int = 28  # training scenes 0..scenes-1 of this seed (evaluation uses 3)
    scenes: int = 2000
    scene_size: int = 128  # px, the model's input size for the bundled model
    random_points: int = 32  # random clicks a scene besides one inside each object
    phrase_draws: int = 2  # phrasings of each scene (synonyms and word orders differ)
    steps: int = 4000
    scenes_per_step: int = 8
    lr: float = 2e-3  # peak of a one-cycle schedule
    weight_decay: float = 0.01
    attribute_weight: float = 1.0  # the colour and shape losses beside the matching one
    # minus the IoU with the phrase's object expected under the scores' softmax: rewards
    # near misses by how near they are, where the cross-entropy counts them as plain misses
    expected_iou_weight: float = 1.0
    positive_margin: float = 0.03  # proposals within this IoU of the best one are targets
    min_target_iou: float = 0.5  # phrases whose object no proposal covers this well are skipped
    label_iou: float = 0.6  # a proposal covering an object this well is named as that object
    # the losses on each scene's exact object masks (`exact_regions`) beside the proposals':
    # ~45% more phase 2 time; the shipped config's 1.0 lifted the text alone (docs/training.md)
    exact_weight: float = 0.0
    # before matching, the grounder learns to name the colour and shape of the exact object
    # masks of this many more scenes (`exact_regions.pretrain_data`) in this many steps
    pretrain_scenes: int = 0
    pretrain_steps: int = 0
    width: int = 128
    seed: int = 0

    @classmethod
    def from_json(cls, path: Path) -> GrounderConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        given = json.loads(path.read_text())
        unknown = sorted(set(given) - fields - {"notes"})
        if unknown:
            raise ValueError(f"{path}: unknown fields {unknown}; known: {sorted(fields)}")
        config = cls(**{k: v for k, v in given.items() if k != "notes"})
        for name in ("scenes", "steps", "scenes_per_step", "scene_size", "width"):
            if getattr(config, name) < 1:
                raise ValueError(f"{path}: {name} must be >= 1")
        for name in ("pretrain_scenes", "pretrain_steps"):
            if getattr(config, name) < 0:
                raise ValueError(f"{path}: {name} must be >= 0")
        if config.pretrain_steps and not config.pretrain_scenes:
            raise ValueError(f"{path}: pretrain_steps needs pretrain_scenes >= 1")
        return config


def scene_record(
    predictor: SamPredictor, config: GrounderConfig, index: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Scene `index`'s proposals, their features, IoUs and colour/shape labels (its phrases are
    `phrase_labels`, a pure function of the scene)."""
    scene = make_scene(config.scene_seed, index, config.scene_size)
    predictor.set_image(scene.image)
    targets = scene.masks
    clicks = [first_click(t) for t in targets if t.any()]
    size = config.scene_size
    points = np.concatenate(
        [
            np.array(clicks, np.float32).reshape(-1, 2),
            rng.uniform(0, size, (config.random_points, 2)),
        ]
    )
    resized = predictor.transform.apply_coords(points, (size, size))
    found = propose(predictor, torch.as_tensor(resized, dtype=torch.float32))
    assert found.masks is not None  # at the working size, which is the scene's
    iou = mask_iou_matrix(torch.from_numpy(targets), found.masks)  # (objects, K)
    classes = object_classes(scene)
    colour = torch.cat([classes[0], torch.tensor([N_COLOURS])])
    shape = torch.cat([classes[1], torch.tensor([len(SHAPE_CLASSES)])])
    # the object each proposal covers; -1 (the classes' last entry, "none") for no object
    best = iou.argmax(0) if len(iou) else torch.full((len(found.masks),), -1)
    if len(iou):
        best[iou.max(0).values < config.label_iou] = -1
    return {
        "numbers": found.numbers,
        "crops": found.crops.half(),
        "iou": iou.half(),
        "colour": colour[best],
        "shape": shape[best],
    }


def phrase_labels(
    config: GrounderConfig, index: int, scene: Scene
) -> list[tuple[str, int, int, int]]:
    """Scene `index`'s phrases in `config.phrase_draws` phrasings: (text, target object, the
    colour it names, the shape it names), the colour and shape as indices into COLOUR_NAMES
    and SHAPE_CLASSES, or the class after the last when the phrase names none (a part's
    phrase names its whole's colour and shape, not the part's)."""
    look = [words(o, scene.image.shape[0] * scene.image.shape[1]) for o in scene.objects]
    out = []
    for draw in range(config.phrase_draws):
        rng = np.random.default_rng([config.scene_seed, index, draw])
        for p in scene_phrases(scene, rng):
            w = look[p.target]
            colour = COLOUR_NAMES.index(w.colour) if p.kind in NAMES_COLOUR else N_COLOURS
            shape = SHAPE_CLASSES.index(w.shape) if p.kind in NAMES_SHAPE else len(SHAPE_CLASSES)
            out.append((p.text, p.target, colour, shape))
    return out


class ScenePhrases(NamedTuple):
    """A scene's phrases as training reads them: (P, D) text vectors, (P,) target objects and
    (P, 2) the colour and shape each names (`phrase_labels`)."""

    vectors: torch.Tensor
    targets: torch.Tensor
    named: torch.Tensor


def make_proposals(
    config: GrounderConfig, out: Path, predictor: SamPredictor, log: Any
) -> list[dict[str, Any]]:
    """Phase 1, resumed from OUT/proposals.pt when it holds some scenes."""
    path = out / "proposals.pt"
    records: list[dict[str, Any]] = torch.load(path, weights_only=True) if path.is_file() else []
    if len(records) >= config.scenes:
        return records[: config.scenes]
    start = time.monotonic()
    for index in range(len(records), config.scenes):
        rng = np.random.default_rng([config.seed, index])
        records.append(scene_record(predictor, config, index, rng))
        if (index + 1) % SAVE_SCENES == 0 or index + 1 == config.scenes:
            with atomic_path(path) as tmp:
                torch.save(records, tmp)
            log({"scenes": index + 1, "s": round(time.monotonic() - start)})
    return records


def _attribute_loss(
    logits: torch.Tensor, colour: torch.Tensor, shape: torch.Tensor
) -> torch.Tensor:
    """Cross-entropies of (N, N_ATTRIBUTES) attribute logits naming (N,) colour and shape
    classes."""
    colours, shapes = ATTRIBUTE_PARTS
    return F.cross_entropy(logits[:, colours], colour) + F.cross_entropy(logits[:, shapes], shape)


def _matching_loss(
    grounder: TextGrounder,
    record: dict[str, Any],
    shapes: ShapeInputs,
    phrases: ScenePhrases | None,
    exact: dict[str, Any] | None,
    config: GrounderConfig,
    device: torch.device,
    rng: np.random.Generator,
) -> torch.Tensor:
    """One scene's attribute losses (of its proposals, and of its `phrases`: the colour and
    shape each names), plus its matching loss for the phrases whose object some proposal
    covers. The proposals' pictures (`shapes`, their `shape_inputs`) turn by a random quarter
    and flip (`rng`): what a shape is called does not depend on how it lies."""
    numbers = record["numbers"].to(device)
    turn = (int(rng.integers(4)), bool(rng.random() < 0.5))
    pictures = torch.rot90(shapes.pictures.to(device), turn[0], (2, 3))
    if turn[1]:
        pictures = pictures.flip(3)
    regions = grounder.describe(numbers, ShapeInputs(pictures, shapes.spectra.to(device)))
    attributes = grounder.attributes(regions)
    loss = config.attribute_weight * _attribute_loss(
        attributes, record["colour"].to(device), record["shape"].to(device)
    )
    embedded = targets = None
    if phrases is not None:
        embedded = grounder.text(phrases.vectors.to(device))
        read = grounder.text_attributes(embedded)
        named = phrases.named.to(device)
        loss = loss + config.attribute_weight * _attribute_loss(read, named[:, 0], named[:, 1])
        targets = phrases.targets
        iou = record["iou"].float()[targets].to(device)  # (P, K)
        best = iou.max(1, keepdim=True).values
        positive = (iou >= best - config.positive_margin) & (best >= config.min_target_iou)
        covered = positive.any(1)
        if covered.any():
            scores = grounder.score(embedded, regions)[covered]
            positive = positive[covered]
            hits = scores.masked_fill(~positive, -torch.inf).logsumexp(1)
            loss = loss + (scores.logsumexp(1) - hits).mean()
            expected = (scores.softmax(1) * iou[covered]).sum(1).mean()
            loss = loss - config.expected_iou_weight * expected
    if exact is not None:
        loss = loss + config.exact_weight * exact_loss(
            grounder,
            exact,
            turn,
            embedded,
            targets,
            lambda a, c, s: config.attribute_weight * _attribute_loss(a, c, s),
            config.positive_margin,
            device,
        )
    return loss


def train_grounder(config: GrounderConfig, out: Path, device: torch.device, log: Any) -> Path:
    """Both phases. Writes OUT/grounder.safetensors (the grounder alone) and
    OUT/model.safetensors (the model with it, what `samkit.load` and `--model` take); returns
    the latter's path."""
    torch.manual_seed(config.seed)
    model = load(config.model, device)
    grounder = TextGrounder(get_text_encoder(config.text_encoder).dim, config.width)
    model.text_grounder = grounder  # so that the predictor keeps the pixels it describes
    records = make_proposals(config, out, SamPredictor(model), log)
    # each scene made once (~8 ms) for its phrases and, when trained on, its exact masks
    labels: list[list[tuple[str, int, int, int]]] = []
    exact: list[dict[str, Any] | None] = []
    for index, record in enumerate(records):
        scene = make_scene(config.scene_seed, index, config.scene_size)
        labels.append(phrase_labels(config, index, scene))
        exact.append(
            exact_record(scene, record, config.label_iou) if config.exact_weight > 0 else None
        )
    texts = sorted({text for scene in labels for text, _, _, _ in scene})
    vectors = dict(zip(texts, encode_cached(config.text_encoder, texts), strict=True))
    phrases = [
        ScenePhrases(
            torch.stack([vectors[text] for text, _, _, _ in scene]),
            torch.tensor([target for _, target, _, _ in scene]),
            torch.tensor([[colour, shape] for _, _, colour, shape in scene]),
        )
        if scene
        else None
        for scene in labels
    ]
    shapes = [shape_inputs(r["crops"].float()) for r in records]  # once, not at every step
    numbers = torch.cat([r["numbers"] for r in records])
    grounder.feature_mean.copy_(numbers.mean(0))
    grounder.feature_std.copy_(numbers.std(0).clamp(min=1e-6))
    grounder.to(device)
    if config.pretrain_steps and not (out / "grounder_checkpoint.pt").is_file():
        data: list[dict[str, Any]] = []  # made at the first step left to take

        def pretrain_step(rng: np.random.Generator) -> torch.Tensor:
            if not data:  # the exact masks described with the proposals' median score
                data.extend(pretrain_data(config, float(numbers[:, -1].median()), log))
            return pretrain_loss(grounder, data, config, _attribute_loss, device, rng)

        pretrained = out / "pretrain_checkpoint.pt"
        optimise(grounder, config.pretrain_steps, pretrain_step, pretrained, config, log)
        data.clear()  # ~1.4 GB for 10000 scenes, which matching does not read

    def step_loss(rng: np.random.Generator) -> torch.Tensor:
        loss = torch.zeros((), device=device)
        for index in rng.integers(0, len(records), config.scenes_per_step):
            loss = loss + _matching_loss(
                grounder,
                records[index],
                shapes[index],
                phrases[index],
                exact[index],
                config,
                device,
                rng,
            )
        return loss / config.scenes_per_step

    optimise(grounder, config.steps, step_loss, out / "grounder_checkpoint.pt", config, log)
    meta = {TEXT_ENCODER_KEY: config.text_encoder}
    weights = {GROUNDER_PREFIX + k: v for k, v in grounder.state_dict().items()}
    write_safetensors(weights, out / "grounder.safetensors", meta)
    if config.model in variant_registry:
        meta[VARIANT_KEY] = config.model
    write_safetensors(model.state_dict(), out / "model.safetensors", meta)
    return out / "model.safetensors"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from .. import devices

    parser = argparse.ArgumentParser(
        prog="python -m samkit.train.grounder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="run folder (resumed if it holds a run)"
    )
    parser.add_argument(
        "--config", type=Path, help="JSON naming the GrounderConfig fields it changes"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    try:
        config = GrounderConfig.from_json(args.config) if args.config else GrounderConfig()
        device = devices.resolve_device(args.device)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1; got {args.threads}")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out} exists and is not a folder")
    except (ValueError, OSError) as err:
        parser.error(str(err))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    recorded = args.out / "config.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != dataclasses.asdict(config):
        parser.error(f"{args.out} holds a run of another config ({recorded}); use another --out")
    with atomic_path(recorded) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    def log(entry: dict[str, Any]) -> None:
        print(json.dumps(entry), file=sys.stderr, flush=True)

    try:
        path = train_grounder(config, args.out, device, log)
    except ValueError as err:  # a run folder holding another design's files
        parser.error(str(err))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
