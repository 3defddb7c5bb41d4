"""`samkit stats`: the SA-1B paper's dataset analysis for any folder of SA-1B JSON files.

Per mask, as in the paper's figures: the relative size sqrt(mask area / image area), and the
centre (centroid of the mask's pixels) in image-relative coordinates (x / W, y / H) in [0, 1],
whose distance from the image centre (0.5, 0.5) is the concentricity (0 = centred; at most
sqrt(0.5) ~ 0.707 in a corner). Per image: the number of masks, and any metadata fields named
in `group_keys` (e.g. region, income_group) counted by value.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path

GROUP_KEYS = ("region", "income_group")
NOT_SA1B = ("manifest.json", "failures.jsonl")
# The paper's bins for masks per image, and for relative mask size / concentricity.
PER_IMAGE_BINS = [1, 11, 51, 101, 201]  # 1-10, 11-50, 51-100, 101-200, >200 (and 0)
SIZE_BINS = np.linspace(0.0, 1.0, 11)
CENTRE_BINS = np.linspace(0.0, np.sqrt(0.5), 11)
HEAT = 32  # cells per side of the mask-centre heat map


@dataclass
class DatasetStats:
    images: int = 0
    masks: int = 0
    masks_per_image: list[int] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)  # sqrt(mask area / image area)
    concentricity: list[float] = field(default_factory=list)
    centres: np.ndarray = field(default_factory=lambda: np.zeros((HEAT, HEAT), dtype=np.int64))
    groups: dict[str, Counter[str]] = field(default_factory=dict)  # key -> value -> images
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, error)


def collect_stats(
    root: str | os.PathLike[str], group_keys: Sequence[str] = GROUP_KEYS
) -> DatasetStats:
    """Read every SA-1B JSON under `root` (recursively); files that are not are listed."""
    from ..io.sa1b import read_sa1b, sa1b_masks

    stats = DatasetStats(groups={k: Counter() for k in group_keys})
    if not Path(root).is_dir():
        raise FileNotFoundError(f"SA-1B folder {root} does not exist")
    files = sorted(Path(root).rglob("*.json"))
    for path in files:
        if path.name in NOT_SA1B or path.name.endswith(".deid.json") or path.name[0] == ".":
            continue  # the engine's own files, de-id records, hidden (.samkit_settings.json)
        try:
            info, annotations = read_sa1b(path)
            masks = sa1b_masks(annotations, name=str(path))
        except ValueError as err:
            stats.unreadable.append((str(path), str(err)))
            continue
        h, w = info["height"], info["width"]
        stats.images += 1
        stats.masks += len(masks)
        stats.masks_per_image.append(len(masks))
        for key in group_keys:
            if key in info:
                stats.groups[key][str(info[key])] += 1
        for mask in masks:
            area = int(mask.sum())
            if area == 0:
                continue
            cx = float(mask.sum(0) @ np.arange(w)) / area + 0.5  # pixel centres
            cy = float(mask.sum(1) @ np.arange(h)) / area + 0.5
            u, v = cx / w, cy / h
            stats.sizes.append(float(np.sqrt(area / (h * w))))
            stats.concentricity.append(float(np.hypot(u - 0.5, v - 0.5)))
            stats.centres[min(HEAT - 1, int(v * HEAT)), min(HEAT - 1, int(u * HEAT))] += 1
    return stats


def per_image_counts(stats: DatasetStats) -> list[tuple[str, int]]:
    counts = np.array(stats.masks_per_image, dtype=np.int64)
    edges = [0, *PER_IMAGE_BINS]
    labels = ["0"] + [f"{a}-{b - 1}" for a, b in itertools.pairwise(edges[1:])]
    labels.append(f">{PER_IMAGE_BINS[-1] - 1}")
    index = np.searchsorted(np.array(PER_IMAGE_BINS), counts, side="right")
    return [(label, int((index == i).sum())) for i, label in enumerate(labels)]


def histogram(values: Sequence[float], edges: np.ndarray) -> list[tuple[str, int]]:
    counts, _ = np.histogram(np.asarray(values, dtype=float), bins=edges)
    return [(f"{a:.2f}-{b:.2f}", int(c)) for a, b, c in zip(edges, edges[1:], counts, strict=False)]


def summary(stats: DatasetStats) -> dict[str, Any]:
    per = np.array(stats.masks_per_image or [0], dtype=float)
    sizes = np.array(stats.sizes or [np.nan])
    conc = np.array(stats.concentricity or [np.nan])
    return {
        "images": stats.images,
        "masks": stats.masks,
        "masks_per_image": {"mean": float(per.mean()), "median": float(np.median(per))},
        "relative_mask_size": {"mean": _num(sizes.mean()), "median": _num(np.median(sizes))},
        "concentricity": {"mean": _num(conc.mean()), "median": _num(np.median(conc))},
        "masks_per_image_bins": dict(per_image_counts(stats)),
        "relative_mask_size_bins": dict(histogram(stats.sizes, SIZE_BINS)),
        "concentricity_bins": dict(histogram(stats.concentricity, CENTRE_BINS)),
        "groups": {k: dict(sorted(c.items())) for k, c in stats.groups.items() if c},
        "unreadable": [{"file": f, "error": e} for f, e in stats.unreadable],
    }


def _num(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def markdown(stats: DatasetStats) -> str:
    s = summary(stats)
    lines = [
        "# Dataset statistics",
        "",
        "| | value |",
        "|---|---|",
        f"| images | {s['images']} |",
        f"| masks | {s['masks']} |",
        f"| masks per image (mean / median) | {s['masks_per_image']['mean']:.1f} / "
        f"{s['masks_per_image']['median']:.1f} |",
        f"| relative mask size (mean / median) | {_fmt(s['relative_mask_size'])} |",
        f"| concentricity (mean / median) | {_fmt(s['concentricity'])} |",
    ]
    tables = [
        ("masks per image", "images", s["masks_per_image_bins"]),
        ("relative mask size sqrt(area / image area)", "masks", s["relative_mask_size_bins"]),
        (
            "concentricity (distance of mask centre from image centre)",
            "masks",
            s["concentricity_bins"],
        ),
    ]
    tables += [(f"images by {k}", "images", v) for k, v in s["groups"].items()]
    for title, unit, rows in tables:
        lines += ["", f"| {title} | {unit} |", "|---|---|"]
        lines += [f"| {label} | {count} |" for label, count in rows.items()]
    if stats.unreadable:
        lines += ["", f"{len(stats.unreadable)} JSON files were not SA-1B and were skipped."]
    return "\n".join(lines) + "\n"


def _fmt(pair: dict[str, float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.3f}" for v in pair.values())


def write_report(stats: DatasetStats, out: str | os.PathLike[str]) -> list[Path]:
    """stats.md, stats.json and PNG plots in `out`; returns the files written."""
    from .plots import bar_chart_png, heat_map_png

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "stats.md", folder / "stats.json"]
    with atomic_path(written[0]) as tmp:
        tmp.write_text(markdown(stats))
    with atomic_path(written[1]) as tmp:
        tmp.write_text(json.dumps(summary(stats), indent=1))
    charts = [
        ("masks_per_image.png", "masks per image", per_image_counts(stats)),
        ("mask_size.png", "relative mask size", histogram(stats.sizes, SIZE_BINS)),
        ("concentricity.png", "concentricity", histogram(stats.concentricity, CENTRE_BINS)),
    ]
    charts += [
        (f"groups_{k}.png", f"images by {k}", sorted(c.items()))
        for k, c in stats.groups.items()
        if c
    ]
    for name, title, rows in charts:
        bar_chart_png(rows, title, folder / name)
        written.append(folder / name)
    heat_map_png(stats.centres, "mask centres (image-relative)", folder / "centres.png")
    written.append(folder / "centres.png")
    return written
