"""Shared fixtures: a small seeded model and predictor, a test image, and the makers of test
data that several test files use (fixtures returning a function: tests never import each
other)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from samkit import SamPredictor
from samkit.build import build_samkit_tiny, seeded_init_
from samkit.data import make_scene
from samkit.io.sa1b import write_sa1b
from samkit.modeling import Sam


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_sam() -> Sam:
    return seeded_init_(build_samkit_tiny(), seed=0)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    img[30:90, 40:110] = (250, 20, 20)
    return img


@pytest.fixture
def predictor(tiny_sam: Sam, image: np.ndarray) -> SamPredictor:
    p = SamPredictor(tiny_sam)
    p.set_image(image)
    return p


# -- test data makers ------------------------------------------------------------------------


def _mask_records(masks: np.ndarray) -> list[dict[str, Any]]:
    """AMG-style records (as SamAutomaticMaskGenerator.generate gives) for (N, H, W) bool
    masks, each non-empty, with perfect scores and a 64x64 crop box."""
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append(
            {
                "segmentation": m,
                "area": int(m.sum()),
                "bbox": [
                    float(xs.min()),
                    float(ys.min()),
                    float(np.ptp(xs) + 1),
                    float(np.ptp(ys) + 1),
                ],
                "predicted_iou": 1.0,
                "point_coords": [[float(xs[0]), float(ys[0])]],
                "stability_score": 1.0,
                "crop_box": [0.0, 0.0, 64.0, 64.0],
            }
        )
    return out


def _write_sa1b_scenes(root: Path, seed: int, n: int, size: int, dilate: int = 0) -> Path:
    """An SA-1B folder of `n` synthetic scenes, masks dilated by `dilate` px if asked."""
    root.mkdir(parents=True, exist_ok=True)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
    for i in range(n):
        scene = make_scene(seed, i, size)
        masks = np.stack([cv2.dilate(m.view(np.uint8), disc).astype(bool) for m in scene.masks])
        Image.fromarray(scene.image).save(root / f"sa_{i}.png")
        write_sa1b(
            root / f"sa_{i}.json",
            _mask_records(masks),
            image={"image_id": i, "width": size, "height": size, "file_name": f"sa_{i}.png"},
        )
    return root


def _make_images(folder: Path, n: int, size: tuple[int, int] = (60, 80)) -> list[Path]:
    """`n` random PNGs with a flat box, alternately in folder/b/ and folder/a/ (img0, img1...)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        img[10:40, 20:50] = rng.integers(0, 255, 3)
        paths.append(sub / f"img{i}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def _make_image_folder(root: Path) -> Path:
    """root/a.png (120x160, a red box), root/sub/b.jpg (90x70) and root/notes.txt."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    a[30:90, 40:110] = (250, 20, 20)
    b = rng.integers(0, 255, size=(90, 70, 3), dtype=np.uint8)
    (root / "sub").mkdir(parents=True)
    Image.fromarray(a).save(root / "a.png")
    Image.fromarray(b).save(root / "sub" / "b.jpg", quality=95)
    (root / "notes.txt").write_text("not an image")
    return root


def _forward_backward(sam: torch.nn.Module) -> None:
    """One forward and backward pass with every prompt kind; every parameter the prompt uses
    gets a gradient."""
    size = sam.image_encoder.img_size
    sam.train()
    image = torch.rand(2, 3, size, size - 16) * 255
    embeddings = sam.image_encoder(sam.preprocess(image[0])[None].expand(1, -1, -1, -1))
    grid = size // 16
    assert embeddings.shape == (1, sam.prompt_encoder.embed_dim, grid, grid)
    points = (torch.tensor([[[10.0, 20.0], [30.0, 5.0]]]), torch.tensor([[1, 0]]))
    mask = torch.randn(1, 1, 4 * grid, 4 * grid)
    sparse, dense = sam.prompt_encoder(
        points=points, boxes=torch.tensor([[1.0, 2, 40, 30]]), masks=mask
    )
    masks, iou = sam.mask_decoder(
        image_embeddings=embeddings,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )
    assert masks.shape == (1, 3, 4 * grid, 4 * grid) and iou.shape == (1, 3)
    (masks.mean() + iou.mean()).backward()
    no_grad = {n for n, p in sam.named_parameters() if p.grad is None or not p.grad.any()}
    # Unused by this prompt: "not a point" (a box is given), "no mask" (a mask is given), and
    # the single-mask output's hypernetwork (multimask output).
    unused = {"prompt_encoder.not_a_point_embed.weight", "prompt_encoder.no_mask_embed.weight"}
    unused |= {n for n in no_grad if n.startswith("mask_decoder.output_hypernetworks_mlps.0.")}
    assert no_grad == unused


def _named_pipes(folder: Path, names: list[str]) -> list[Path]:
    """Named pipes folder/NAME: a command that opens one waits there until a writer comes
    (none does), so a test knows where a run is once the outputs before them exist."""
    pipes = [folder / name for name in names]
    for pipe in pipes:
        pipe.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(pipe)
    return pipes


def _wait_until(done: Callable[[], bool], proc: subprocess.Popen[Any], log: Path) -> None:
    """Poll until `done()`; fail if the process ends first. The limit only guards a hang."""
    for _ in range(6000):
        if done():
            return
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the command never reached the point the test waits for")


@pytest.fixture(scope="session")
def named_pipes() -> Callable[[Path, list[str]], list[Path]]:
    return _named_pipes


@pytest.fixture(scope="session")
def wait_until() -> Callable[[Callable[[], bool], subprocess.Popen[Any], Path], None]:
    return _wait_until


@pytest.fixture(scope="session")
def mask_records() -> Callable[[np.ndarray], list[dict[str, Any]]]:
    return _mask_records


@pytest.fixture(scope="session")
def write_sa1b_scenes() -> Callable[..., Path]:
    return _write_sa1b_scenes


@pytest.fixture(scope="session")
def make_images() -> Callable[..., list[Path]]:
    return _make_images


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """imgs/a.png (120x160, a red box), imgs/sub/b.jpg (90x70) and imgs/notes.txt."""
    return _make_image_folder(tmp_path / "imgs")


@pytest.fixture(scope="session")
def forward_backward() -> Callable[[torch.nn.Module], None]:
    return _forward_backward


@pytest.fixture
def session(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The annotator on one scene, served on 127.0.0.1, with headless Chromium on it (the
    browser tests' kit, tests/browser_kit.py)."""
    from browser_kit import annotator

    with annotator(tmp_path) as state:
        yield state
