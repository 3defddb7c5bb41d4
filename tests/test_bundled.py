"""The bundled default model: shipped in the package, found by name, and a real segmenter."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from samkit import load
from samkit.checkpoints import read_metadata
from samkit.data import make_scene
from samkit.eval import report
from samkit.loading import VARIANT_KEY, bundled_path, detect_variant


def test_bundled_weights_ship_small_and_named() -> None:
    path = bundled_path("samkit_default")
    assert path.stat().st_size < 25 * 2**20
    assert read_metadata(path)[VARIANT_KEY] == "samkit_default"
    model = load("samkit_default")
    assert detect_variant(model.state_dict()) == "samkit_default"
    assert model.img_size == 128


def test_bundled_model_segments_held_out_scenes_far_better_than_untrained_weights() -> None:
    # A floor, not the quality claim (that is `samkit eval` on 50 scenes, in the README):
    # trained weights must beat the seeded initialisation of the same architecture by far.
    torch.set_num_threads(1)
    scenes = [make_scene(31, i, 128) for i in range(4)]
    items = [report.EvalItem(s.image, s.masks, ["all"] * len(s.masks)) for s in scenes]

    def miou(model: torch.nn.Module) -> float:
        return float(np.mean(report.evaluate(model, items, 3).ious[:, 2]))

    from samkit.build import sam_model_registry, seeded_init_

    untrained = sam_model_registry["samkit_default"]()
    seeded_init_(untrained, 0)
    trained = miou(load("samkit_default"))
    assert trained > 0.3 and trained > 3 * miou(untrained.eval())


def test_missing_bundled_weights_say_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import samkit.loading as loading

    monkeypatch.setitem(loading.BUNDLED, "samkit_default", "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="make train-default"):
        load("samkit_default")


README = Path(__file__).resolve().parents[1] / "README.md"
# The README's line after its headline table, whitespace collapsed: the command, then mIoU
# after 1 / 3 clicks, then the same with a random first click.
CI_SUBSET = re.compile(
    r"CI re-measures the first (\d+) of these scenes \(`samkit eval --model (\S+) --synthetic "
    r"(\d+) --n (\d+) --clicks 1,3`, to within 0\.02 in `tests/test_bundled\.py`\): "
    r"(0\.\d{3}) / (0\.\d{3}), and (0\.\d{3}) / (0\.\d{3}) with `--random-first (\d+)`"
)


def test_readme_figures_hold_on_the_ci_subset() -> None:
    # The README states these figures; they are parsed from it, so the two cannot drift.
    found = CI_SUBSET.search(" ".join(README.read_text().split()))
    assert found, "README.md lost its 'CI re-measures the first N of these scenes' line"
    first, name, seed, n, *stated, random_seed = found.groups()
    assert first == n
    items = list(report.synthetic_items(int(seed), int(n), 128))
    model = load(name)
    plain = report.evaluate(model, items, 3)
    random_first = report.evaluate(model, items, 3, random_first_seed=int(random_seed))
    measured = [scores.ious[:, k].mean() for scores in (plain, random_first) for k in (0, 2)]
    assert measured == pytest.approx([float(x) for x in stated], abs=0.02)
