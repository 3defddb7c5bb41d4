"""The BSDS boundary benchmark (Arbelaez et al., "Contour Detection and Hierarchical Image
Segmentation", TPAMI 2011): precision and recall of an edge map against human boundary maps
at many thresholds, summarised as ODS, OIS, AP and R50.

For each image and threshold t, the predicted edge pixels are those with value >= t. They are
matched one to one with each annotator's boundary pixels, a pair being allowed when the two
pixels lie within `max_dist` x the image diagonal of each other (Euclidean, inclusive; the
benchmark's maxDist, 0.0075). The matching is an exact maximum-cardinality bipartite matching
on the pairs within tolerance, computed as a maximum flow (Dinic's algorithm,
`scipy.sparse.csgraph.maximum_flow`). The benchmark's own code (correspondPixels) solves a
min-cost assignment in which leaving a pixel unmatched costs far more than any allowed pair:
it maximises the same number of matches and only prefers shorter pairs among equally many,
which changes no count here.

Counts, the BSDS way: a predicted pixel is correct if it matches in any annotator's map;
recall counts every annotator's boundary pixels (sum over annotators of matched / total).
The benchmark also thins each thresholded map (MATLAB's bwmorph 'thin'); samkit's edge maps
are one pixel thin already (edge NMS) and are not thinned again.

Summaries, as the benchmark's collect_eval_bdry: ODS, the best F of the dataset's summed counts
(linearly interpolated between neighbouring thresholds in 100 steps); OIS, the F of the counts
summed over each image's own best threshold; AP, the mean precision at recall 0, 0.01, ..., 1
on the dataset's curve (linear in recall; recall outside the curve's range counts precision 0,
so a curve of a single recall, e.g. a binary map, has AP 0 as in the benchmark); R50, the
largest recall on the interpolated curve where precision is at least 0.5 (the SAM paper's
fourth column, from Dollar and Zitnick's structured edges).

scipy is optional (`pip install scipy`, or `pip install 'samkit[eval]'`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_DIST = 0.0075  # the benchmark's tolerance, a fraction of the image diagonal
N_THRESHOLDS = 99
SCIPY_HINT = "pip install scipy (or pip install 'samkit[eval]')"


def require_scipy(what: str) -> None:
    """Raise RuntimeError, saying how to install it, when scipy (which `what` needs) is not
    installed."""
    try:
        import scipy  # noqa: F401
    except ImportError:
        raise RuntimeError(f"{what} needs scipy: {SCIPY_HINT}") from None


def thresholds(n: int = N_THRESHOLDS) -> np.ndarray:
    """The benchmark's n thresholds, evenly spaced strictly inside (0, 1): 0.01 ... 0.99."""
    return np.linspace(1 / (n + 1), 1 - 1 / (n + 1), n)


@dataclass(frozen=True)
class Counts:
    """One image's counts at each threshold, each (T,) int64: matched predicted pixels (cnt_p)
    of all predicted pixels (sum_p), matched boundary pixels (cnt_r) of all annotators'
    boundary pixels (sum_r)."""

    cnt_p: np.ndarray
    sum_p: np.ndarray
    cnt_r: np.ndarray
    sum_r: np.ndarray


@dataclass(frozen=True)
class EdgeScores:
    ods: float  # best F over the dataset at one threshold
    ods_threshold: float
    ods_recall: float
    ods_precision: float
    ois: float  # F with each image at its own best threshold
    ap: float  # area under the precision-recall curve
    r50: float  # recall where precision is 50%
    thresholds: np.ndarray  # (T,)
    recall: np.ndarray  # (T,) dataset curve
    precision: np.ndarray  # (T,)


def offsets(radius: float) -> list[tuple[int, int]]:
    """Every (dy, dx) of integers with dy**2 + dx**2 <= radius**2."""
    r = int(np.floor(radius))
    return [
        (dy, dx)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
        if dy * dy + dx * dx <= radius * radius
    ]


def _pairs(pred: np.ndarray, gt: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols): every pair of a predicted pixel (index into pred.nonzero()) and a boundary
    pixel (index into gt.nonzero()) within `radius` pixels. pred, gt: (H, W) bool."""
    h, w = pred.shape
    pred_id = np.full((h, w), -1, dtype=np.int64)
    pred_id[pred] = np.arange(int(pred.sum()))
    gt_id = np.full((h, w), -1, dtype=np.int64)
    gt_id[gt] = np.arange(int(gt.sum()))
    rows, cols = [], []
    for dy, dx in offsets(radius):
        # predicted pixel at (y, x), boundary pixel at (y + dy, x + dx)
        p = pred_id[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
        g = gt_id[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
        both = (p >= 0) & (g >= 0)
        rows.append(p[both])
        cols.append(g[both])
    return np.concatenate(rows), np.concatenate(cols)


def _max_matching(
    rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows, (n_rows,) bool, and which columns, (n_cols,) bool, a maximum matching of
    the bipartite graph with edges (rows[i], cols[i]) matches.

    Solved as a maximum flow with unit capacities, source -> row -> column -> sink, by Dinic's
    algorithm (O(E sqrt(V)) here, as Hopcroft-Karp). Not scipy's maximum_bipartite_matching:
    its depth-first search never marks dead ends, and the layered graphs that chains of edge
    pixels make take it exponential time (scipy issue 26147; minutes for one threshold of a
    160 x 240 image)."""
    matched_rows = np.zeros(n_rows, dtype=bool)
    matched_cols = np.zeros(n_cols, dtype=bool)
    if len(rows) == 0:
        return matched_rows, matched_cols
    require_scipy("edge matching")
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    source, sink = 0, n_rows + n_cols + 1  # rows are 1..n_rows, columns follow
    used_rows, used_cols = np.unique(rows), np.unique(cols)
    tail = np.concatenate([np.full(len(used_rows), source), 1 + rows, 1 + n_rows + used_cols])
    head = np.concatenate([1 + used_rows, 1 + n_rows + cols, np.full(len(used_cols), sink)])
    capacity = csr_matrix(
        (np.ones(len(tail), dtype=np.int32), (tail, head)), shape=(sink + 1, sink + 1)
    )
    flow = maximum_flow(capacity, source, sink, method="dinic").flow.tocsr()
    matched_rows[used_rows] = flow[source, 1 + used_rows].toarray().ravel() > 0
    matched_cols[used_cols] = flow[1 + n_rows + used_cols, sink].toarray().ravel() > 0
    return matched_rows, matched_cols


def image_counts(
    edges: np.ndarray,
    boundaries: np.ndarray,
    thresholds: np.ndarray,
    *,
    max_dist: float = MAX_DIST,
) -> Counts:
    """Counts of one image at each threshold.

    edges: (H, W) edge strengths, in [0, 1] for the thresholds to mean anything.
    boundaries: (K, H, W) bool, one boundary map per annotator (K >= 1).
    thresholds: (T,) increasing; a pixel is predicted at t when its strength is >= t.
    max_dist: match tolerance as a fraction of the image diagonal.
    """
    if boundaries.ndim != 3 or boundaries.shape[1:] != edges.shape:
        raise ValueError(
            f"boundaries must be (K, H, W) with (H, W) = {edges.shape}, the edge map's; got "
            f"shape {boundaries.shape}"
        )
    h, w = edges.shape
    radius = max_dist * float(np.hypot(h, w))
    pred = edges >= thresholds.min()  # every pixel predicted at some threshold
    strength = edges[pred]  # (P,) in pred.nonzero() order
    n_t = len(thresholds)
    cnt_r = np.zeros(n_t, dtype=np.int64)
    matched_any = np.zeros((n_t, len(strength)), dtype=bool)
    for gt in boundaries.astype(bool):
        rows, cols = _pairs(pred, gt, radius)
        n_gt = int(gt.sum())
        for i, t in enumerate(thresholds):
            on = strength[rows] >= t
            found, _ = _max_matching(rows[on], cols[on], len(strength), n_gt)
            cnt_r[i] += int(found.sum())  # one boundary pixel for each matched prediction
            matched_any[i] |= found
    return Counts(
        cnt_p=matched_any.sum(axis=1).astype(np.int64),
        sum_p=(strength[None, :] >= thresholds[:, None]).sum(axis=1).astype(np.int64),
        cnt_r=cnt_r,
        sum_r=np.full(n_t, int(boundaries.astype(bool).sum()), dtype=np.int64),
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (the benchmark's convention)."""
    return num / np.where(den == 0, 1, den)


def fmeasure(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Harmonic mean of recall and precision, 0 where both are 0."""
    total = recall + precision
    return _ratio(2 * precision * recall, total)


def _interpolated(
    t: np.ndarray, recall: np.ndarray, precision: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The curve with 100 linear steps between each pair of neighbouring thresholds, as the
    benchmark's maxF walks it: (t, recall, precision), each ((T - 1) * 100,) or (1,)."""
    if len(t) == 1:
        return t, recall, precision
    d = np.linspace(0, 1, 100)[None, :]  # (1, 100)

    def walk(v: np.ndarray) -> np.ndarray:
        return (v[1:, None] * d + v[:-1, None] * (1 - d)).ravel()

    return walk(t), walk(recall), walk(precision)


def summarize(counts: Sequence[Counts], thresholds: np.ndarray) -> EdgeScores:
    """ODS, OIS, AP and R50 of images' counts (all made at `thresholds`)."""
    if not counts:
        raise ValueError("no images to summarise")
    total = {f: sum(getattr(c, f) for c in counts) for f in ("cnt_p", "sum_p", "cnt_r", "sum_r")}
    recall = _ratio(total["cnt_r"], total["sum_r"])
    precision = _ratio(total["cnt_p"], total["sum_p"])
    t_i, r_i, p_i = _interpolated(thresholds, recall, precision)
    f_i = fmeasure(r_i, p_i)
    best = int(np.argmax(f_i))  # the first of equal maxima, as the benchmark's strict ">"

    best_counts = np.zeros(4, dtype=np.int64)  # cnt_r, sum_r, cnt_p, sum_p at each image's best
    for c in counts:
        f = fmeasure(_ratio(c.cnt_r, c.sum_r), _ratio(c.cnt_p, c.sum_p))
        k = int(np.argmax(f))
        best_counts += (c.cnt_r[k], c.sum_r[k], c.cnt_p[k], c.sum_p[k])
    ois = fmeasure(
        _ratio(best_counts[0:1], best_counts[1:2]), _ratio(best_counts[2:3], best_counts[3:4])
    )

    return EdgeScores(
        ods=float(f_i[best]),
        ods_threshold=float(t_i[best]),
        ods_recall=float(r_i[best]),
        ods_precision=float(p_i[best]),
        ois=float(ois[0]),
        ap=average_precision(recall, precision),
        r50=float(r_i[p_i >= 0.5].max(initial=0.0)),
        thresholds=thresholds,
        recall=recall,
        precision=precision,
    )


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """The benchmark's AP: precision interpolated linearly in recall at 0, 0.01, ..., 1 (0
    outside the curve's recall range; duplicate recalls keep the first threshold's precision),
    averaged as sum * 0.01. 0 for a curve with fewer than two distinct recalls."""
    unique, first = np.unique(recall, return_index=True)
    if len(unique) < 2:
        return 0.0
    grid = np.linspace(0, 1, 101)
    p = np.interp(grid, unique, precision[first], left=np.nan, right=np.nan)
    return float(np.nan_to_num(p, nan=0.0).sum() * 0.01)
