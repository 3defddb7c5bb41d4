"""The `samkit` command, run as a real subprocess on real files."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import SamAutomaticMaskGenerator, cli
from samkit.build import build_samkit_tiny, seeded_init_
from samkit.checkpoints import write_safetensors
from samkit.cli import amg

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"


def samkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "samkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_segment_writes_mask_and_overlay(tmp_path: Path) -> None:
    out, overlay = tmp_path / "m.png", tmp_path / "o.png"
    r = samkit(
        "segment",
        str(EXAMPLE),
        "--model",
        "samkit_tiny",
        "--point",
        "96,80",
        "--neg",
        "10,10",
        "--box",
        "50,40,150,140",
        "--multimask",
        "--out",
        str(out),
        "--overlay",
        str(overlay),
    )
    assert r.returncode == 0, r.stderr
    assert "seeded random weights" in r.stderr
    score = float(r.stdout.split()[1])
    assert 0 < abs(score) < 10 and "mask" in r.stdout
    mask = np.asarray(Image.open(out))
    assert mask.shape == (240, 320) and set(np.unique(mask)) <= {0, 255}
    assert np.asarray(Image.open(overlay)).shape == (240, 320, 3)


def test_segment_matches_predictor_on_weights_file(tmp_path: Path) -> None:
    """A weights file (variant found from its shapes) gives the library's own mask."""
    sam = seeded_init_(build_samkit_tiny(), seed=3)
    weights = tmp_path / "w.pth"
    torch.save(sam.state_dict(), weights)
    out = tmp_path / "m.png"
    argv = ["segment", str(EXAMPLE), "--model", str(weights), "--point", "230,90"]
    r = samkit(*argv, "--precision", "fp32", "--out", str(out))  # the library's default
    assert r.returncode == 0, r.stderr

    from samkit import SamPredictor
    from samkit.io import load_image

    p = SamPredictor(sam)
    p.set_image(load_image(EXAMPLE))
    masks, _, _ = p.predict(
        point_coords=np.array([[230.0, 90.0]]), point_labels=np.array([1]), multimask_output=False
    )
    assert np.array_equal(np.asarray(Image.open(out)) > 0, masks[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--point", "1,2,3"], "expected 2 comma-separated numbers"),
        (["--point", "nan,2"], "expected 2 comma-separated numbers"),
        (["--box", "1,2"], "expected 4 comma-separated numbers"),
        ([], "give at least one prompt"),
        (["--point", "9999,5"], "--point 9999,5 lies outside the image"),
        # negative coordinates are values, not options; the message gives the image's size
        (["--point", "-5,5"], "--point -5,5 lies outside the image: " + f"{EXAMPLE} is 320x240"),
        (["--point=-5,5"], "--point -5,5 lies outside the image"),
        (["--point", "5,5", "--neg", "-0.5,-3"], "--neg -0.5,-3 lies outside the image"),
        (["--box", "-10,-10,50,50"], "--box -10,-10,50,50 lies outside the image"),
        (["--box", "10,10,330,50"], "X must be within 0..320 and Y within 0..240"),
        (["--box", "50,50,10,10"], "X0 <= X1 and Y0 <= Y1"),
        (["--point", "5,5", "--max-pixels", "1000"], "--max-pixels 76800 on the command line"),
        (["--point", "5,5", "--model", "no_such_model"], "neither a model name"),
    ],
)
def test_segment_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    r = samkit(
        "segment", str(EXAMPLE), "--model", "samkit_tiny", *args, "--out", str(tmp_path / "m.png")
    )
    assert r.returncode != 0
    assert message in r.stderr
    assert not (tmp_path / "m.png").exists()


def test_segment_corrupt_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = samkit(
        "segment",
        str(bad),
        "--model",
        "samkit_tiny",
        "--point",
        "1,1",
        "--out",
        str(tmp_path / "m.png"),
    )
    assert r.returncode == 1 and "bad.jpg" in r.stderr


def test_weights_convert_round_trip(tmp_path: Path) -> None:
    sam = seeded_init_(build_samkit_tiny(), seed=1)
    src = tmp_path / "w.safetensors"
    write_safetensors(sam.state_dict(), src)
    dst = tmp_path / "w.pth"
    r = samkit("weights", "convert", str(src), str(dst))
    assert r.returncode == 0, r.stderr
    loaded = torch.load(dst, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in sam.state_dict().items())


def test_weights_list_and_path(tmp_path: Path) -> None:
    env = {"SAMKIT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = samkit("weights", "list", env=env)
    assert r.returncode == 0
    assert "sam_vit_b_01ec64.pth" in r.stdout and "not downloaded" in r.stdout
    r = samkit("weights", "path", "vit_b", env=env)
    assert r.returncode == 1 and "samkit weights get vit_b" in r.stderr
    (tmp_path / "weights").mkdir()
    r = samkit("weights", "path", "nope", env=env)
    assert r.returncode == 1 and "unknown weights" in r.stderr


def test_version_and_help() -> None:
    r = samkit("--version")
    assert r.returncode == 0 and r.stdout.startswith("samkit ")
    for cmd in (["--help"], ["segment", "--help"], ["weights", "--help"]):
        r = samkit(*cmd)
        assert r.returncode == 0 and "example" in r.stdout


def test_weights_get_without_network_fails_clearly(tmp_path: Path) -> None:
    """No server answers on the mirror: a one-line error, exit 1, nothing left in the cache."""
    env = {
        "SAMKIT_HOME": str(tmp_path),
        "SAMKIT_WEIGHTS_MIRROR": "http://127.0.0.1:9",
        "PATH": "/usr/bin:/bin",
        "no_proxy": "*",
    }
    r = samkit("weights", "get", "vit_b", env=env)
    assert r.returncode == 1
    assert "samkit: error:" in r.stderr and "127.0.0.1:9" in r.stderr
    assert "Traceback" not in r.stderr
    weights = tmp_path / "weights"
    assert (list(weights.iterdir()) if weights.exists() else []) == []


def _amg_defaults() -> dict[str, object]:
    params = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    return {name: params[name].default for name, *_ in amg.AMG_HELP}


# The one deliberate difference: the command line removes islands and holes under 100 px (the
# paper's post-processing), where the drop-in Python default stays Meta's 0.
CLI_ONLY = {"min_mask_region_area": 100}


@pytest.mark.parametrize("command", ["amg", "engine"])
def test_amg_option_defaults_are_the_generators(command: str) -> None:
    args = cli._parser().parse_args([command, "photos/", "--out", "masks/"])
    assert {name: getattr(args, name) for name in _amg_defaults()} == {
        **_amg_defaults(),
        **CLI_ONLY,
    }
    assert len(_amg_defaults()) == 11
    assert _amg_defaults()["min_mask_region_area"] == 0  # the Python API keeps Meta's default


def test_amg_option_defaults_are_read_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    # Were the defaults written out in cli/amg.py, a change of the generator's would leave them
    # stale.
    init = SamAutomaticMaskGenerator.__init__
    assert init.__defaults__ is not None
    changed = tuple(d + 1 if type(d) in (int, float) else d for d in init.__defaults__)
    monkeypatch.setattr(init, "__defaults__", changed)
    got = {name: default for name, _, default, _ in amg.amg_options()}
    assert got == {**_amg_defaults(), **CLI_ONLY} and got["points_per_side"] == 33
