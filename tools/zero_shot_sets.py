"""Synthetic stand-ins for the zero-shot datasets, made from held-out scenes, so that the guide's
figures for the bundled model can be regenerated:

    python tools/zero_shot_sets.py /tmp/zs
    samkit eval edges /tmp/zs/edges --out /tmp/zs/edges_out
    samkit eval proposals /tmp/zs/proposals/instances.json /tmp/zs/proposals/images \
        --out /tmp/zs/proposals_out

`edges/` is in the BSDS layout `samkit eval edges` reads: images/<name>.png and two annotators
in groundTruth/<name>_1.png (object boundaries) and <name>_2.png (object and part boundaries).
`proposals/` is a COCO instances file whose categories are the scene kinds, with LVIS
frequencies standing in: object = frequent, part = common, group = rare.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from samkit.data import make_scene
from samkit.masks import encode_coco_rle

SEED = 3  # held out: training draws its scenes from other seeds
KINDS = {"object": "f", "part": "c", "group": "r"}


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour lies on the other side of the mask's edge."""
    edge = np.zeros_like(mask)
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    return edge


def write_edges(root: Path, scenes: int, size: int) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "groundTruth").mkdir(exist_ok=True)
    for i in range(scenes):
        scene = make_scene(SEED, i, size)
        name = f"s{i:03d}"
        Image.fromarray(scene.image).save(root / "images" / f"{name}.png")
        objects = np.zeros(scene.image.shape[:2], dtype=bool)
        parts = objects.copy()
        for o in scene.objects:
            if o.kind == "object":
                objects |= boundary(o.mask)
            elif o.kind == "part":
                parts |= boundary(o.mask)
        for k, edges in ((1, objects), (2, objects | parts)):
            Image.fromarray(edges.astype(np.uint8) * 255).save(
                root / "groundTruth" / f"{name}_{k}.png"
            )


def write_proposals(root: Path, scenes: int, size: int) -> int:
    """Write the COCO set; returns how many objects it holds."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    categories = [
        {"id": c + 1, "name": k, "frequency": f} for c, (k, f) in enumerate(KINDS.items())
    ]
    category = {k: c + 1 for c, k in enumerate(KINDS)}
    images, annotations = [], []
    for i in range(scenes):
        scene = make_scene(SEED, i, size)
        name = f"s{i:03d}.png"
        Image.fromarray(scene.image).save(root / "images" / name)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for o in scene.objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": category[o.kind],
                    "segmentation": encode_coco_rle(o.mask),
                    "area": int(o.mask.sum()),
                    "iscrowd": 0,
                }
            )
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "instances.json").write_text(json.dumps(data))
    return len(annotations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for edges/ and proposals/")
    parser.add_argument("--edge-scenes", type=int, default=6, help="scenes in edges/ (6)")
    parser.add_argument("--proposal-scenes", type=int, default=10, help="in proposals/ (10)")
    parser.add_argument("--size", type=int, default=256, help="scene side in pixels (256)")
    args = parser.parse_args(argv)
    if min(args.edge_scenes, args.proposal_scenes) < 1 or args.size < 32:
        parser.error("scene counts must be >= 1 and --size >= 32")
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty; give a new folder")
    write_edges(args.out / "edges", args.edge_scenes, args.size)
    objects = write_proposals(args.out / "proposals", args.proposal_scenes, args.size)
    print(f"{args.out}/edges: {args.edge_scenes} scenes; {args.out}/proposals: {objects} objects")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
