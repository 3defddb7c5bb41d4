"""Zero-shot edge detection and the BSDS boundary benchmark (`samkit eval edges`).

The benchmark is checked on edge maps whose scores are known by hand: the ground truth itself,
lines shifted within and beyond the tolerance (0.0075 x the image diagonal), a doubled line
(one-to-one matching), several annotators, and two images whose best thresholds differ (ODS
against OIS, AP and R50). The edge maps of the bundled model are checked on a scene of flat
rectangles and a disc whose exact boundaries are known; the command on BSDS folders with PNG
and .mat ground truth, and with bad inputs.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

import samkit
from samkit.cli import main
from samkit.eval import edge_match, edges
from samkit.eval.edge_match import image_counts, summarize, thresholds

T = thresholds()
MISSING_MODEL = "no_such_weights.pth"  # had a model been loaded first, the error would name it


def scores(edge_maps: list[np.ndarray], truths: list[np.ndarray]) -> edge_match.EdgeScores:
    """The benchmark over images: edge_maps[i] (H, W), truths[i] (K, H, W) bool."""
    counts = [image_counts(e, t, T) for e, t in zip(edge_maps, truths, strict=True)]
    return summarize(counts, T)


def lines(size: int, *segments: tuple[int, int, int, int]) -> np.ndarray:
    """(size, size) bool with the pixels of axis-aligned segments (y0, x0, y1, x1) inclusive."""
    out = np.zeros((size, size), dtype=bool)
    for y0, x0, y1, x1 in segments:
        out[y0 : y1 + 1, x0 : x1 + 1] = True
    return out


def shapes_scene(h: int = 160, w: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image of two flat rectangles and a disc on a flat background, and its exact
    boundary map: the pixels whose region differs from their right or lower neighbour's."""
    image = np.full((h, w, 3), (40, 60, 90), np.uint8)
    regions = np.zeros((h, w), np.uint8)
    for k, (colour, draw) in enumerate(
        [
            ((230, 200, 40), lambda a, c: cv2.rectangle(a, (20, 30), (90, 120), c, -1)),
            ((200, 40, 40), lambda a, c: cv2.circle(a, (145, 80), 35, c, -1)),
            ((60, 200, 90), lambda a, c: cv2.rectangle(a, (40, 130), (170, 150), c, -1)),
        ],
        start=1,
    ):
        draw(image, colour)
        draw(regions, k)
    boundary = np.zeros((h, w), dtype=bool)
    boundary[:, :-1] |= regions[:, :-1] != regions[:, 1:]
    boundary[:-1, :] |= regions[:-1, :] != regions[1:, :]
    return image, boundary


# -- the benchmark, on edge maps of known score -------------------------------------------
def test_the_ground_truth_as_the_prediction_scores_one() -> None:
    _, boundary = shapes_scene()
    binary = scores([boundary.astype(np.float32)], [boundary[None]])
    assert binary.ods == binary.ois == binary.r50 == 1.0
    # The benchmark's AP needs two distinct recalls: a binary map has one (recall 1 at every
    # threshold), so its AP is 0, as in BSDS's collect_eval_bdry.
    assert binary.ap == 0.0
    # Graded strengths (0.02 ... 1) on the boundary: precision 1 at every recall.
    graded = boundary.astype(np.float32)
    graded[boundary] = np.random.default_rng(0).uniform(0.02, 1.0, int(boundary.sum()))
    result = scores([graded], [boundary[None]])
    assert result.ods == result.ois == 1.0
    assert 0.97 < result.ap <= 1.0  # precision 1 from the lowest recall (~0.01) up to 1


@pytest.mark.parametrize(
    ("size", "shift", "f"),
    [(200, 2, 1.0), (200, 3, 0.0), (400, 4, 1.0), (400, 5, 0.0)],
)
def test_a_line_shifted_within_the_tolerance_matches_and_beyond_it_does_not(
    size: int, shift: int, f: float
) -> None:
    # The tolerance is 0.0075 x the diagonal: 2.12 pixels at 200 x 200, 4.24 at 400 x 400.
    truth = lines(size, (20, 100, 179, 100))
    shifted = lines(size, (20, 100 + shift, 179, 100 + shift))
    result = scores([shifted.astype(np.float32)], [truth[None]])
    assert result.ods == pytest.approx(f)


def test_partly_wrong_predictions_score_what_is_counted_by_hand() -> None:
    horizontal = (50, 20, 50, 179)  # 160 pixels
    vertical = (100, 150, 179, 150)  # 80 pixels, far from the horizontal line
    truth = lines(200, horizontal, vertical)
    # The vertical line 5 pixels off (beyond 2.12): 160 of 240 predicted pixels match, and
    # 160 of 240 boundary pixels are found.
    off = lines(200, horizontal, (100, 155, 179, 155)).astype(np.float32)
    result = scores([off], [truth[None]])
    assert (result.ods_precision, result.ods_recall) == pytest.approx((2 / 3, 2 / 3))
    assert result.ods == pytest.approx(2 / 3)
    # Every line twice, one pixel apart: each boundary pixel takes one predicted pixel only
    # (one-to-one), so half the 480 predicted pixels are unmatched.
    doubled = lines(200, horizontal, vertical, (51, 20, 51, 179), (100, 151, 179, 151))
    result = scores([doubled.astype(np.float32)], [truth[None]])
    assert (result.ods_precision, result.ods_recall) == pytest.approx((0.5, 1.0))
    assert result.ods == pytest.approx(2 / 3)


def test_several_annotators_count_the_bsds_way() -> None:
    a = lines(200, (50, 20, 50, 179))  # 160 pixels
    b = lines(200, (100, 150, 179, 150))  # 80 pixels
    # Precision: a predicted pixel is right if it matches any annotator's boundary.
    # Recall: every annotator's pixels count, here 160 of 160 + 80.
    result = scores([a.astype(np.float32)], [np.stack([a, b])])
    assert (result.ods_precision, result.ods_recall) == pytest.approx((1.0, 160 / 240))
    assert result.ods == pytest.approx(0.8)
    result = scores([(a | b).astype(np.float32)], [np.stack([a, a | b])])
    assert (result.ods_precision, result.ods_recall) == pytest.approx((1.0, 1.0))


def two_images(noise_rows: list[int]) -> edge_match.EdgeScores:
    """Image 1: its boundary (a 160-pixel line) at strength 0.305 and 160-pixel noise lines
    (far from it) at 0.205; image 2: its boundary at 0.105. The best threshold of image 1 is
    above 0.205, of image 2 below 0.105."""
    truth = lines(200, (50, 20, 50, 179))
    first = truth * 0.305 + lines(200, *[(y, 20, y, 179) for y in noise_rows]) * 0.205
    return scores([first, truth * 0.105], [truth[None], truth[None]])


def test_ods_ois_ap_and_r50_of_two_images_with_different_best_thresholds() -> None:
    one_noise = two_images([150])
    # Thresholds <= 0.105: all 320 boundary pixels, 320 of 480 predicted: F = 0.8 (the ODS).
    # (0.105, 0.205]: recall 1/2, precision 160/320; (0.205, 0.305]: recall 1/2, precision 1.
    assert one_noise.ods == pytest.approx(0.8)
    assert one_noise.ods_threshold == pytest.approx(T[0])  # the first of the equal best
    assert one_noise.ois == pytest.approx(1.0)  # each image at its best: all right
    assert one_noise.r50 == pytest.approx(1.0)  # precision 2/3 >= 1/2 at recall 1
    # AP: the curve's points (recall, precision) are (0, 0), (1/2, 1/2) (the lowest
    # threshold of that recall) and (1, 2/3): precision r up to 1/2, then 1/2 + (r - 1/2)/3.
    r = np.linspace(0, 1, 101)
    expected = 0.01 * np.where(r <= 0.5, r, 0.5 + (r - 0.5) / 3).sum()
    assert one_noise.ap == pytest.approx(expected) and expected == pytest.approx(0.42)

    three_noise = two_images([120, 150, 180])
    # Thresholds <= 0.105: precision 320/800 = 0.4, recall 1; (0.105, 0.205]: 160/640, 1/2;
    # (0.205, 0.305]: precision 1, recall 1/2 -> precision crosses 1/2 at recall 1/2.
    assert three_noise.r50 == pytest.approx(0.5)
    assert three_noise.ods == pytest.approx(2 / 3)
    assert three_noise.ois == pytest.approx(1.0)


def chains_scene(h: int, w: int, n_lines: int) -> tuple[np.ndarray, np.ndarray]:
    """An edge map and a boundary map of long crossing lines and scattered pixels
    (deterministic): chains of pixels within the tolerance of each other."""
    truth = np.zeros((h, w), dtype=bool)
    for k in range(n_lines):
        y, x0 = (k * 7919) % h, (k * 104729) % (w // 2)
        truth[y, x0 : x0 + w // 2] = True
        x, y0 = (k * 6007 + 13) % w, (k * 15485863) % (h // 2)
        truth[y0 : y0 + h // 2, x] = True
    yy, xx = np.mgrid[:h, :w]
    scatter = (yy * 73856093 ^ xx * 19349663) % 1000  # 5% of the pixels below 50
    edges = np.where(scatter < 50, scatter / 50.0, 0.0)
    edges[truth] = 0.3 + 0.7 * ((yy * 31 + xx * 17) % 101 / 101.0)[truth]
    return edges, truth


def test_the_matching_is_maximum_and_fast_on_chains_of_pixels() -> None:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    edges, truth = chains_scene(160, 240, 20)
    counts = image_counts(edges, truth[None], T)
    # scipy's Hopcroft-Karp as the reference where it is quick; at T[33] (0.34) it takes
    # about 10 s on this scene (scipy issue 26147) and found 3863 matches.
    pred = edges >= T[0]
    rows, cols = edge_match._pairs(pred, truth, 0.0075 * np.hypot(160, 240))
    strength = edges[pred]
    for i in range(0, 99, 7):
        on = strength[rows] >= T[i]
        graph = csr_matrix(
            (np.ones(int(on.sum()), np.int8), (rows[on], cols[on])),
            shape=(len(strength), int(truth.sum())),
        )
        assert counts.cnt_r[i] == (maximum_bipartite_matching(graph, "column") >= 0).sum()
    assert counts.cnt_r[33] == 3863
    assert np.array_equal(counts.cnt_p, counts.cnt_r)  # one annotator: pairs, one to one


# -- edge maps -------------------------------------------------------------------------------
def test_edge_nms_keeps_the_ridge_across_the_gradient() -> None:
    band = np.zeros((9, 9), dtype=np.float32)
    band[:, 3], band[:, 4], band[:, 5] = 0.5, 1.0, 0.7  # a 3-pixel-wide vertical ridge
    gx, gy = np.ones_like(band), np.zeros_like(band)  # gradient along x: across the ridge
    thin = edges.edge_nms(band, gx, gy)
    assert np.array_equal(np.nonzero(thin.any(axis=0))[0], [4]) and thin[:, 4].min() == 1.0
    # Along the ridge (gradient along y), no pixel has a stronger neighbour: nothing goes.
    assert np.array_equal(edges.edge_nms(band, gy, gx), band)


def test_mask_gradients_are_kept_on_the_outer_boundary_only() -> None:
    logits = torch.full((1, 12, 12), -8.0)
    logits[0, 4:8, 3:9] = 8.0  # a 4 x 6 mask: rows 4..7, columns 3..8
    index, flat, magnitude, gx, gy = edges.boundary_gradients(logits)
    ring = np.zeros((12, 12), dtype=bool)
    ring[3:9, 2:10] = True
    ring[4:8, 3:9] = False  # the 8-connected pixels around the mask, outside it
    assert sorted(flat) == list(np.flatnonzero(ring)) and set(index) == {0}
    assert magnitude.min() > 0
    y, x = np.divmod(flat, 12)
    assert (gx[x == 2] > 0).all() and (gx[x == 9] < 0).all()  # pointing into the mask
    assert (gy[y == 3] > 0).all() and (gy[y == 8] < 0).all()


def test_the_bundled_model_finds_the_edges_of_flat_shapes() -> None:
    image, boundary = shapes_scene()
    model = samkit.load("samkit_default")
    edge_map = edges.edge_map(model, image, points_per_side=3)
    assert edge_map.shape == boundary.shape and edge_map.dtype == np.float32
    assert edge_map.min() == 0.0 and edge_map.max() == 1.0
    assert scores([edge_map], [boundary[None]]).ods > 0.8
    # A model with random weights (samkit_tiny) finds no such edges: the score can fail.
    random_map = edges.edge_map(samkit.load("samkit_tiny"), image, points_per_side=3)
    assert scores([random_map], [boundary[None]]).ods < 0.5


# -- BSDS folders and the command ------------------------------------------------------------
def write_png(path: Path, boundary: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(boundary.astype(np.uint8) * 255).save(path)


def write_mat(path: Path, boundaries: list[np.ndarray]) -> None:
    """A BSDS500 ground-truth file: groundTruth{k}.Boundaries (and .Segmentation)."""
    cells = np.empty((1, len(boundaries)), dtype=object)
    for k, b in enumerate(boundaries):
        cells[0, k] = {"Boundaries": b.astype(np.uint8), "Segmentation": np.ones(b.shape)}
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"groundTruth": cells})


def bsds_folder(root: Path, n: int = 2) -> Path:
    """n scenes: image 0 with two PNG annotators (<stem>_1.png, <stem>_2.png), image 1 with a
    .mat of two annotators, the next with one <stem>.png each."""
    image, boundary = shapes_scene(96, 128)
    (root / "images").mkdir(parents=True)
    for i in range(n):
        stem = f"scene{i}"
        Image.fromarray(np.roll(image, 4 * i, axis=1)).save(root / "images" / f"{stem}.png")
        truth = np.roll(boundary, 4 * i, axis=1)
        if i == 0:
            write_png(root / "groundTruth" / f"{stem}_1.png", truth)
            write_png(root / "groundTruth" / f"{stem}_2.png", truth & (np.arange(128) < 64))
        elif i == 1:
            write_mat(root / "groundTruth" / f"{stem}.mat", [truth, truth])
        else:
            write_png(root / "groundTruth" / f"{stem}.png", truth)
    return root


@pytest.fixture
def bsds(tmp_path: Path) -> Path:
    return bsds_folder(tmp_path / "bsds")


def test_ground_truth_is_read_from_pngs_and_mat_files(bsds: Path) -> None:
    items = edges.find_items(bsds)
    assert [(i.stem, [p.name for p in i.ground_truth]) for i in items] == [
        ("scene0", ["scene0_1.png", "scene0_2.png"]),
        ("scene1", ["scene1.mat"]),
    ]
    _, boundary = shapes_scene(96, 128)
    pngs = edges.read_boundaries(items[0].ground_truth)
    assert np.array_equal(pngs, [boundary, boundary & (np.arange(128) < 64)])
    mat = edges.read_boundaries(items[1].ground_truth)
    assert np.array_equal(mat, [np.roll(boundary, 4, axis=1)] * 2)
    assert len(edges.find_items(bsds, limit=1)) == 1


def test_eval_edges_writes_results_and_prints_the_table(
    bsds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["eval", "edges", str(bsds), "--out", str(out), "--points-per-side", "2"]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    header, _, row = printed.strip().splitlines()
    assert header == "| model | images | ODS | ODS threshold | OIS | AP | R50 |"
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:2] == ["samkit_default", "2"]
    assert all(0.0 <= float(v) <= 1.0 for v in cells[2:])
    assert (out / "results.md").read_text() == printed
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["ods"] == cells[2] and rows[0]["ap"] == cells[5]
    with open(out / "pr_curve.csv") as f:
        curve = list(csv.DictReader(f))
    assert len(curve) == 99 and curve[0]["threshold"] == "0.0100"
    with Image.open(out / "pr_curve.png") as img:
        assert img.format == "PNG" and img.size == (480, 480)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of the command line, run in this process."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    return code, capsys.readouterr().err


BAD_INPUTS: dict[str, tuple[Callable[[Path], Any], str]] = {
    "no groundTruth folder": (lambda d: shutil.rmtree(d / "groundTruth"), "no groundTruth/"),
    "an image without ground truth": (
        lambda d: (d / "groundTruth" / "scene1.mat").unlink(),
        r"no ground truth for image 'scene1': expected .*scene1\.mat",
    ),
    "a ground truth of another size": (
        lambda d: write_png(d / "groundTruth" / "scene0_2.png", np.ones((96, 120), bool)),
        r"scene0_2\.png is 120x96 but .*scene0_1\.png is 128x96",
    ),
    "a .mat of another size": (
        lambda d: write_mat(d / "groundTruth" / "scene1.mat", [np.ones((90, 128), bool)]),
        r"scene1\.png is 128x96 but its ground truth .*scene1\.mat is 128x90",
    ),
    "a corrupt .mat": (
        lambda d: (d / "groundTruth" / "scene1.mat").write_bytes(b"MATLAB 5.0 but no"),
        r"scene1\.mat: not a readable MATLAB \.mat file",
    ),
    "a .mat without groundTruth": (
        lambda d: scipy.io.savemat(d / "groundTruth" / "scene1.mat", {"x": np.ones(3)}),
        r"scene1\.mat: no 'groundTruth' variable",
    ),
    "no images": (lambda d: [p.unlink() for p in (d / "images").iterdir()], "images: no images"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_folders_fail_with_one_message_before_the_model_loads(
    case: str, bsds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spoil, message = BAD_INPUTS[case]
    spoil(bsds)
    code, err = run(["eval", "edges", str(bsds), "--model", MISSING_MODEL], capsys)
    assert code == 1
    assert err.startswith("samkit: error: ") and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err


def test_a_missing_folder_and_bad_options_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(["eval", "edges", str(tmp_path / "nowhere")], capsys)
    assert code == 1 and "nowhere: no such folder" in err
    code, err = run(["eval", "edges", str(tmp_path), "--points-per-side", "0"], capsys)
    assert code == 2 and "--points-per-side: expected a whole number from 1 to 128" in err


def test_without_scipy_the_error_says_how_to_install_it(
    bsds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "scipy", None)  # `import scipy` fails, as uninstalled
    with pytest.raises(RuntimeError, match=r"scene1\.mat needs scipy: pip install scipy"):
        edges.read_boundaries([bsds / "groundTruth" / "scene1.mat"])


def test_sigint_midway_stops_cleanly_and_writes_nothing(tmp_path: Path, wait_until: Any) -> None:
    data = bsds_folder(tmp_path / "bsds", n=3)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "samkit.cli", "eval", "edges", str(data), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [*cmd, "--points-per-side", "2"], stdout=f, stderr=subprocess.STDOUT, env=env
        )
    # Once the folder is checked (the bar shows 0/3), the last image's ground truth becomes a
    # named pipe: the run waits there, after two images, until the signal comes.
    wait_until(lambda: "0/3" in log.read_text(), proc, log)
    last = data / "groundTruth" / "scene2.png"
    last.unlink()
    os.mkfifo(last)
    wchan = Path(f"/proc/{proc.pid}/wchan")
    wait_until(lambda: wchan.read_text().strip() == "wait_for_partner", proc, log)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 130 and "Traceback" not in text
    last_line = text.strip().splitlines()[-1]
    assert last_line.startswith("samkit: interrupted (SIGINT): 2 images evaluated"), text
    assert not out.exists()
