"""mIoU after k clicks over a dataset, per group with 95% confidence intervals (the paper's
fairness table), written as markdown, CSV and a PNG plot of mIoU against clicks; over several
datasets, a summary with a row (and a line) per dataset, then each dataset's groups (the
paper's per-dataset comparison, §7.1)."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..data.folders import SampleSource
from ..interrupt import Interrupted, images
from ..modeling import Sam
from .clicks import run_protocol

Z_95 = 1.959964  # two-sided 95% quantile of the normal distribution
ALL = "all"
# Under the click eval's tables: which mask each column scores (the paper's oracle, §7.1).
LEGEND = (
    "mIoU@k: mean IoU after k clicks of the mask the model picks by its predicted IoU; "
    "oracle@1: after the first click, the best of its 3 masks against the ground truth; "
    "± the 95% confidence interval; n: objects."
)


@dataclass(frozen=True)
class EvalItem:
    """One image and its targets: (H, W, 3) uint8 image, (B, H, W) bool masks, B group names."""

    image: np.ndarray
    masks: np.ndarray
    groups: Sequence[str]


@dataclass
class Scores:
    ious: np.ndarray  # (M, n_clicks) IoU after each click, predicted-IoU choice
    oracle_first: np.ndarray  # (M,) best-of-3 IoU of the first click
    groups: list[str]  # (M,) group of each target


@dataclass(frozen=True)
class Row:
    group: str
    n: int
    miou: dict[int, tuple[float, float]]  # clicks -> (mean IoU, 95% CI half-width)
    oracle_first: tuple[float, float]


def evaluate(
    model: Sam, items: Iterable[EvalItem], n_clicks: int, *, random_first_seed: int | None = None
) -> Scores:
    """Run the click protocol on every non-empty target of every item. Interrupted (SIGINT,
    SIGTERM: see `samkit.interrupt`), raises `Interrupted` saying how many images were done."""
    rng = None if random_first_seed is None else np.random.default_rng(random_first_seed)
    ious: list[np.ndarray] = []
    oracle: list[np.ndarray] = []
    groups: list[str] = []
    done = 0
    try:
        for item in items:
            keep = [i for i, m in enumerate(item.masks) if m.any()]
            if keep:
                result = run_protocol(model, item.image, item.masks[keep], n_clicks, rng=rng)
                ious.append(result.ious)
                oracle.append(result.oracle_first)
                groups.extend(str(item.groups[i]) for i in keep)
            done += 1
    except Interrupted as stop:
        raise Interrupted(stop.signum, f"{images(done)} evaluated") from None
    if not ious:
        raise ValueError("no non-empty target masks to evaluate")
    return Scores(np.concatenate(ious), np.concatenate(oracle), groups)


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% normal-approximation confidence interval."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    sd = float(values.std(ddof=1)) if n > 1 else 0.0
    return float(values.mean()), Z_95 * sd / math.sqrt(n)


def summarize(scores: Scores, clicks: Sequence[int]) -> list[Row]:
    """One row for all targets, then one per group (sorted), for the requested click counts."""
    if max(clicks) > scores.ious.shape[1] or min(clicks) < 1:
        raise ValueError(f"clicks must be within 1..{scores.ious.shape[1]}; got {list(clicks)}")
    groups = np.array(scores.groups)
    names = [ALL, *sorted(set(scores.groups) - {ALL})]
    rows = []
    for name in names:
        sel = np.ones(len(groups), bool) if name == ALL else groups == name
        rows.append(
            Row(
                name,
                int(sel.sum()),
                {k: mean_ci(scores.ious[sel, k - 1]) for k in clicks},
                mean_ci(scores.oracle_first[sel]),
            )
        )
    return rows


def to_markdown(rows: Sequence[Row], *, label: str = "group") -> str:
    """A markdown table, one line per row; `label` heads the first column."""
    clicks = list(rows[0].miou)
    head = [label, "n", *(f"mIoU@{k}" for k in clicks), "oracle@1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.group, str(r.n), *(_pm(*r.miou[k]) for k in clicks), _pm(*r.oracle_first)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[Row], path: str | os.PathLike[str]) -> None:
    """One line per row: group, n, miou@k..., ci95@k..., oracle@1, oracle_ci95@1."""
    _write_rows({"": rows}, path, named=False)


def _write_rows(
    tables: Mapping[str, Sequence[Row]], path: str | os.PathLike[str], *, named: bool
) -> None:
    """`write_csv`'s columns for each table's rows, `named`: after a "dataset" column that
    holds the table's name."""
    clicks = list(next(iter(tables.values()))[0].miou)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                *(["dataset"] if named else []),
                "group",
                "n",
                *(f"miou@{k}" for k in clicks),
                *(f"ci95@{k}" for k in clicks),
                "oracle@1",
                "oracle_ci95@1",
            ]
        )
        for name, rows in tables.items():
            for r in rows:
                writer.writerow(
                    [
                        *([name] if named else []),
                        r.group,
                        r.n,
                        *(f"{r.miou[k][0]:.4f}" for k in clicks),
                        *(f"{r.miou[k][1]:.4f}" for k in clicks),
                        f"{r.oracle_first[0]:.4f}",
                        f"{r.oracle_first[1]:.4f}",
                    ]
                )


def evaluate_datasets(
    model: Sam,
    datasets: Mapping[str, Iterable[EvalItem]],
    clicks: Sequence[int],
    *,
    random_first_seed: int | None = None,
) -> dict[str, list[Row]]:
    """`evaluate` then `summarize` each named dataset, in order: name -> its rows. Each
    dataset starts from the same `random_first_seed`, so its rows are those of a run on it
    alone. Interrupted, the `Interrupted` names the dataset in flight when there are several."""
    tables: dict[str, list[Row]] = {}
    for name, items in datasets.items():
        try:
            scores = evaluate(model, items, max(clicks), random_first_seed=random_first_seed)
        except Interrupted as stop:
            if len(datasets) == 1:
                raise
            done = f"{name}: {stop.done} ({len(tables)} of {len(datasets)} datasets done)"
            raise Interrupted(stop.signum, done) from None
        tables[name] = summarize(scores, clicks)
    return tables


def dataset_summary(tables: Mapping[str, Sequence[Row]]) -> list[Row]:
    """One row per dataset: its "all" row, named after the dataset."""
    return [
        dataclasses.replace(next(r for r in rows if r.group == ALL), group=name)
        for name, rows in tables.items()
    ]


def results_markdown(tables: Mapping[str, Sequence[Row]]) -> str:
    """The click eval's results.md: one dataset's table, or for several a summary table (a
    row per dataset) then each dataset's table under its name; `LEGEND` under the first."""
    if len(tables) == 1:
        return to_markdown(next(iter(tables.values()))) + f"\n{LEGEND}\n"
    parts = [to_markdown(dataset_summary(tables), label="dataset"), f"\n{LEGEND}\n"]
    for name, rows in tables.items():
        parts.append(f"\n## {name}\n\n{to_markdown(rows)}")
    return "".join(parts)


def write_results(tables: Mapping[str, Sequence[Row]], out: str | os.PathLike[str]) -> None:
    """results.md, results.csv and miou.png in the folder `out`: one dataset's groups, or for
    several datasets every dataset's groups (a "dataset" column first) and one line each."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "results.md") as tmp:
        tmp.write_text(results_markdown(tables))
    if len(tables) == 1:
        rows = next(iter(tables.values()))
        write_csv(rows, folder / "results.csv")
        plot_png(rows, folder / "miou.png")
    else:
        _write_rows(tables, folder / "results.csv", named=True)
        plot_png(dataset_summary(tables), folder / "miou.png")


def _pm(mean: float, half: float) -> str:
    return f"{mean:.3f} ± {half:.3f}"


PLOT_COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
]


def plot_png(
    rows: Sequence[Row], path: str | os.PathLike[str], size: tuple[int, int] = (640, 420)
) -> None:
    """mIoU (with 95% CI bars) against clicks, one line per group, drawn with Pillow."""
    clicks = list(rows[0].miou)
    lines = [
        Line(
            f"{row.group} (n={row.n})",
            [row.miou[k][0] for k in clicks],
            [row.miou[k][1] for k in clicks],
        )
        for row in rows
    ]
    line_plot(path, [str(k) for k in clicks], lines, x_label="clicks", y_label="mIoU", size=size)


@dataclass(frozen=True)
class Line:
    """One line of `line_plot`: its legend text, a value in 0..1 at each x tick (NaN: none
    there), and the half-height of an error bar at each (None: no bars)."""

    label: str
    values: Sequence[float]
    errors: Sequence[float] | None = None


def line_plot(
    path: str | os.PathLike[str],
    ticks: Sequence[str],
    lines: Sequence[Line],
    *,
    x_label: str,
    y_label: str,
    size: tuple[int, int] = (640, 420),
) -> None:
    """Lines of values in 0..1 at evenly spaced x ticks, with a legend on the right, drawn
    with Pillow and written as a PNG."""
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 60, 150, 20, 50
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    xs = [left + (w - left - right) * (i / max(1, len(ticks) - 1)) for i in range(len(ticks))]

    def y_of(v: float) -> float:
        return top + (h - top - bottom) * (1.0 - v)

    draw.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    for tick in np.linspace(0, 1, 6):
        draw.line([(left - 4, y_of(tick)), (left, y_of(tick))], fill="black")
        draw.text((left - 34, y_of(tick) - 6), f"{tick:.1f}", fill="black")
    for tick, x in zip(ticks, xs, strict=True):
        draw.text((x - 3 * len(tick), h - bottom + 6), tick, fill="black")
    draw.text(((left + w - right) / 2 - 3 * len(x_label), h - 22), x_label, fill="black")
    draw.text((4, top - 14), y_label, fill="black")
    for i, line in enumerate(lines):
        colour = PLOT_COLOURS[i % len(PLOT_COLOURS)]
        points = [
            (x, y_of(v)) if math.isfinite(v) else None for x, v in zip(xs, line.values, strict=True)
        ]
        for a, b in itertools.pairwise(points):
            if a is not None and b is not None:
                draw.line([a, b], fill=colour, width=2)
        for j, point in enumerate(points):
            if point is None:
                continue
            x, y = point
            if line.errors is not None:
                v, half = line.values[j], line.errors[j]
                draw.line([(x, y_of(v - half)), (x, y_of(v + half))], fill=colour)
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        draw.text((w - right + 10, top + 16 * i), line.label, fill=colour)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def synthetic_items(seed: int, n: int, size: int) -> Iterable[EvalItem]:
    """Held-out synthetic scenes, each target grouped by its kind (object, part, group)."""
    from ..data.synthetic import make_scene

    for i in range(n):
        scene = make_scene(seed, i, size)
        yield EvalItem(scene.image, scene.masks, [o.kind for o in scene.objects])


def dataset_items(dataset: SampleSource, group_by: str | None) -> Iterable[EvalItem]:
    """Samples of an SA1BFolder / CocoInstances; the group is the annotation field `group_by`
    (e.g. category_id), or "all" when None."""
    for index in range(len(dataset)):
        sample = dataset[index]
        groups = [
            ALL if group_by is None else str(a.get(group_by, "missing")) for a in sample.attributes
        ]
        yield EvalItem(sample.image, sample.masks, groups)
