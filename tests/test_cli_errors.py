"""What a user meets when things go wrong on the command line: a device that is not there, an
option out of range, a path that cannot be written, a held-out image without masks. Each ends
in one message and a non-zero exit, never a traceback, and before any model loads. Also
`samkit info`, and the command line's segment-everything clean-up on the demo image."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import devices
from samkit.cli import main
from samkit.data import make_scene
from samkit.rle import decode_coco_rle
from samkit.train.__main__ import main as train_main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shapes.png"
MISSING_MODEL = "no_such_weights.pth"  # had a model been loaded first, the error would name it


def run(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    entry: Callable[[Sequence[str]], int] = main,
) -> tuple[int, str]:
    """Exit code and stderr of the real command line, run in this process. A usage error
    (argparse's SystemExit) gives its code; any other exception fails the test, as a traceback
    would."""
    try:
        code = entry(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    return code, capsys.readouterr().err


# -- --device ------------------------------------------------------------------------------
def device_commands(tmp: Path) -> dict[str, list[str]]:
    """Every command that takes --device, with a model that does not exist: a device error,
    not a model error, shows the device was checked first."""
    commands = {
        "segment": ["segment", str(EXAMPLE), "--point", "5,5", "--out", str(tmp / "m.png")],
        "amg": ["amg", str(EXAMPLE), "--out", str(tmp / "amg"), "--no-progress"],
        "eval": ["eval", "--synthetic", "1", "--n", "1", "--out", str(tmp / "ev")],
        "finetune": ["finetune", "--sa1b", str(tmp), "--out", str(tmp / "run")],
        "serve": ["serve", str(tmp)],
        "engine": ["engine", str(EXAMPLE), "--out", str(tmp / "sa1b"), "--no-progress"],
    }
    return {name: [*argv, "--model", MISSING_MODEL] for name, argv in commands.items()}


def absent_devices() -> list[str]:
    """Device names that do not exist here: the same ones on a CPU machine, fewer elsewhere."""
    names = ["gpu", "tpu:0"]
    if not torch.cuda.is_available():
        names.append("cuda")
    if torch.cuda.device_count() <= 7:
        names.append("cuda:7")
    if not torch.backends.mps.is_available():
        names.append("mps")
    return names


@pytest.mark.parametrize("device", absent_devices())
@pytest.mark.parametrize(
    "command", ["segment", "amg", "eval", "finetune", "serve", "engine", "train"]
)
def test_a_device_that_is_not_here_fails_first_naming_those_that_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, device: str
) -> None:
    if command == "train":  # python -m samkit.train
        argv = ["--config", str(tmp_path / "missing.json"), "--out", str(tmp_path / "run")]
        code, err = run([*argv, "--device", device], capsys, train_main)
    else:
        code, err = run([*device_commands(tmp_path)[command], "--device", device], capsys)
    assert code in (1, 2) and "Traceback" not in err
    here = ", ".join(devices.available_devices())
    assert f"device {device}" in err.replace("'", "") and f"devices here: {here}" in err, err
    assert MISSING_MODEL not in err and "missing.json" not in err  # nothing was loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was written


def test_engine_on_a_cluster_checks_the_device_name_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The workers may have GPUs this machine lacks: joining a cluster (--ray), a device name
    # is accepted if it is one; a misspelt one still fails before Ray starts.
    argv = [*device_commands(tmp_path)["engine"], "--ray", "127.0.0.1:1", "--device", "gpu"]
    code, err = run(argv, capsys)
    assert code == 1 and "device 'gpu' is not a device name" in err


def test_a_wrong_device_prints_no_traceback_from_a_real_process(tmp_path: Path) -> None:
    # Before, the first CUDA call raised torch's AssertionError with a traceback.
    argv = [sys.executable, "-m", "samkit.cli", *device_commands(tmp_path)["segment"]]
    r = subprocess.run([*argv, "--device", "cuda:7"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("samkit: error: device cuda:7") and "devices here: " in r.stderr


# -- the default model, and Meta's weights offline -----------------------------------------
def offline(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """An empty weights cache, and a mirror where nothing answers: no download can happen."""
    monkeypatch.setenv("SAMKIT_HOME", str(home))
    monkeypatch.setenv("SAMKIT_WEIGHTS_MIRROR", "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "*")


def test_every_command_defaults_to_the_bundled_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from samkit.cli import _parser

    commands = {
        "segment": ["segment", "x.png", "--out", "m.png"],
        "amg": ["amg", "x.png", "--out", "o"],
        "engine": ["engine", "x.png", "--out", "o"],
        "eval": ["eval", "--synthetic", "1"],
        "finetune": ["finetune", "--sa1b", "d", "--out", "o"],
        "export-onnx": ["export-onnx", "--out", "d.onnx"],
        "serve": ["serve"],
    }
    for name, argv in commands.items():
        assert _parser().parse_args(argv).model == "samkit_default", name
        with pytest.raises(SystemExit):
            main([name, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert "default samkit_default" in help_text, name
        assert (
            "vit_b/vit_l/vit_h: Meta's weights, downloaded once with `samkit weights get vit_b`"
            in help_text
        ), name
    # and it runs offline
    offline(monkeypatch, tmp_path / "home")
    argv = ["segment", str(EXAMPLE), "--point", "100,90", "--out", str(tmp_path / "m.png")]
    assert main(argv) == 0 and (tmp_path / "m.png").is_file()


def test_missing_official_weights_say_how_to_get_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    offline(monkeypatch, tmp_path)
    argv = ["segment", str(EXAMPLE), "--point", "100,90", "--out", str(tmp_path / "m.png")]
    code, err = run([*argv, "--model", "vit_b"], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.startswith("samkit: error: model vit_b needs Meta's weights sam_vit_b_01ec64.pth")
    assert "could not fetch http://127.0.0.1:9/sam_vit_b_01ec64.pth" in err  # why
    assert "run `samkit weights get vit_b`" in err and "set SAMKIT_WEIGHTS_MIRROR" in err
    assert "(--model /path/to/sam_vit_b_01ec64.pth)" in err
    assert not (tmp_path / "m.png").exists()


def test_eval_help_prints_percent_signs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert "95% confidence intervals" in " ".join(out.split()) and "%%" not in out


# -- samkit info ---------------------------------------------------------------------------
def test_info_says_versions_devices_precision_and_the_weights_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    import samkit

    assert f"samkit {samkit.__version__}" in out and f"torch {torch.__version__}" in out
    assert f"python {sys.version.split()[0]}" in out
    bf16 = "yes" if devices.cpu_supports_bf16() else "no"
    assert f"native bf16 (AVX-512 BF16 or AMX): {bf16}" in out
    for name in devices.available_devices():
        auto = devices.resolve_precision("auto", torch.device(name))
        assert any(line.split()[:4] == [name, "precision", "auto", "="] and line.split()[4]
                   == auto for line in out.splitlines()), out  # fmt: skip
    assert f"weights cache: {tmp_path / 'weights'} (downloaded: none)" in out


# -- wrong invocations ---------------------------------------------------------------------
def wrong_invocations(tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, what the message says) for mistakes a user makes, each caught before work."""
    image, out = str(EXAMPLE), str(tmp / "out")
    a_file = tmp / "a_file"
    a_file.write_text("not a folder")
    unwritable = str(a_file / "sub" / "m.png")  # below a file: no folder can be made there
    seg = ["segment", image, "--point", "5,5"]
    return [
        ([*seg[:1], str(tmp / "missing.png"), *seg[2:], "--out", out], "missing.png: file not"),
        ([*seg, "--out", unwritable], f"cannot write {unwritable}: {a_file} is a file"),
        ([*seg, "--out", str(tmp)], "is a folder; give the name of a file"),
        ([*seg, "--out", out, "--max-pixels", "0"], "--max-pixels: expected a whole number >= 1"),
        (["amg", image, "--out", str(a_file)], f"{a_file} exists and is not a folder"),
        (["amg", image, "--out", unwritable], "is a file, not a folder"),
        (["amg", image, "--out", out, "--points-per-side", "0"], "expected a whole number >= 1"),
        (["amg", image, "--out", out, "--points-per-batch", "-3"], "expected a whole number"),
        (["amg", image, "--out", out, "--box-nms-thresh", "1.5"], "a number from 0 to 1"),
        (["amg", image, "--out", out, "--stability-score-thresh", "nan"], "from 0 to 1"),
        (["amg", image, "--out", out, "--crop-n-layers", "-1"], "a whole number >= 0"),
        (["amg", image, "--out", out, "--min-mask-region-area", "-1"], "whole number >= 0"),
        (["amg", str(tmp / "nothing_here"), "--out", out], "does not exist"),
        (["engine", image, "--out", out, "--concurrency", "0"], "expected a whole number >= 1"),
        (["engine", image, "--out", out, "--cpus-per-actor", "0"], "expected a number > 0"),
        (["eval", "--synthetic", "1", "--clicks", "0"], "positive whole numbers"),
        (["eval", "--synthetic", "1", "--n", "0"], "--n: expected a whole number >= 1"),
        (["eval", "--synthetic", "1", "--size", "8"], "--size: expected a whole number >= 32"),
        (["eval", "--synthetic", "-1"], "--synthetic: expected a whole number >= 0"),
        (["eval", "--sa1b", str(tmp / "nothing_here")], "nothing_here does not exist"),
        (["eval", "--coco", str(tmp / "none.json"), "--images", str(tmp)], "none.json"),
        (["finetune", "--sa1b", str(tmp), "--out", out, "--holdout", "1"], "strictly between"),
        (["finetune", "--sa1b", str(tmp), "--out", out, "--lr", "0"], "a number > 0"),
        (["finetune", "--sa1b", str(tmp / "nothing_here"), "--out", out], "does not exist"),
        (["weights", "get", "nope"], "unknown weights 'nope'"),
        (["weights", "convert", str(tmp / "none.pth"), f"{out}.pth"], "does not exist"),
        (["serve", str(tmp), "--port", "99999"], "--port: expected a whole number from 1 to"),
        (["serve", str(tmp / "nothing_here")], "nothing_here does not exist"),
        (["serve", str(tmp), "--host", "no.such.host.invalid"], "--host no.such.host.invalid"),
        (["export-onnx", "--out", unwritable], "is a file, not a folder"),
        (["export-onnx", "--out", out, "--opset", "9"], "--opset: expected a whole number >= 14"),
        (["stats", str(tmp / "nothing_here")], "nothing_here does not exist"),
        (["deid", str(tmp / "missing.png"), "--out", out], "missing.png does not exist"),
    ]


def test_wrong_invocations_end_in_one_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in wrong_invocations(tmp_path):
        code, err = run(argv, capsys)
        assert code in (1, 2) and message in err and "Traceback" not in err, (argv, err)
        assert not (tmp_path / "out").exists(), argv  # refused before any work


def test_serve_refuses_a_port_in_use_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        argv = ["serve", str(tmp_path), "--port", str(port), "--model", MISSING_MODEL]
        code, err = run(argv, capsys)
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert MISSING_MODEL not in err


# -- fine-tuning on data with images without masks -----------------------------------------
def finetune(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    torch.set_num_threads(1)
    base = ["finetune", "--model", "samkit_tiny", "--out", str(out), "--steps", "1"]
    base += ["--threads", "1", "--freeze-encoder", "--device", "cpu", "--precision", "fp32"]
    code = main([*base, *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_finetune_skips_held_out_images_without_masks_and_counts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_sa1b_scenes: Any
) -> None:
    # 4 images, half held out (images 1 and 2 with this seed); image 2's JSON has no
    # annotations. Before, such an image was dropped silently, and a held-out set of only such
    # images ended in "no non-empty target masks to evaluate".
    folder = write_sa1b_scenes(tmp_path / "data", seed=4, n=4, size=128)
    record = json.loads((folder / "sa_2.json").read_text())
    (folder / "sa_2.json").write_text(json.dumps({**record, "annotations": []}))
    code, text = finetune(["--sa1b", str(folder), "--holdout", "0.5"], tmp_path / "run", capsys)
    assert code == 0, text
    assert "held-out images: 2, 1 without masks skipped" in text
    report = json.loads((tmp_path / "run" / "finetune_report.json").read_text())
    assert report["held_out_images"] == 2 and report["held_out_without_masks"] == 1
    # only image 2 held out (a quarter of 4): nothing to measure, said plainly
    code, text = finetune(["--sa1b", str(folder), "--holdout", "0.25"], tmp_path / "r2", capsys)
    assert code == 1 and "Traceback" not in text
    assert "none of the 1 held-out images has a mask to measure" in text and "--holdout" in text


def test_finetune_on_a_coco_file_with_unannotated_and_empty_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A COCO export: image 1 has no annotations (left out before the split, and counted);
    # image 3, held out, has one annotation with an empty polygon list (no mask: skipped in
    # the held-out measurement, and counted).
    images, annotations = [], []
    for i in range(5):
        scene = make_scene(5, i, 128)
        Image.fromarray(scene.image).save(tmp_path / f"im{i}.png")
        images.append({"id": i, "width": 128, "height": 128, "file_name": f"im{i}.png"})
        for mask in scene.masks[:4] if i != 1 else []:
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
            polygon = [x0, y0, x1, y0, x1, y1, x0, y1] if i != 3 else []
            segmentation = [polygon] if polygon else []
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1,
                                "segmentation": segmentation, "iscrowd": 0})  # fmt: skip
            if i == 3:
                break
    coco = tmp_path / "instances.json"
    categories = [{"id": 1, "name": "thing"}]
    coco.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))  # fmt: skip
    argv = ["--coco", str(coco), "--images", str(tmp_path), "--holdout", "0.5"]
    code, text = finetune(argv, tmp_path / "run", capsys)
    assert code == 0, text
    assert f"images without annotations: 1 of 5 in {coco}" in text
    assert "held-out images: 2, 1 without masks skipped" in text
    report = json.loads((tmp_path / "run" / "finetune_report.json").read_text())
    assert report["images_without_annotations"] == 1 and report["held_out_without_masks"] == 1


# -- segment everything: the command line's clean-up ---------------------------------------
def duplicate_pairs(masks: list[np.ndarray], tolerance: int = 50) -> list[tuple[int, int]]:
    """Pairs of masks that are one region up to `tolerance` differing pixels."""
    return [
        (i, j)
        for i in range(len(masks))
        for j in range(i + 1, len(masks))
        if int((masks[i] ^ masks[j]).sum()) <= tolerance
    ]


@pytest.mark.parametrize("clean_up", [[], ["--min-mask-region-area", "0"]])
def test_amg_defaults_give_each_region_once_on_the_demo_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_up: list[str]
) -> None:
    # `make demo`: without the clean-up (the Python default, Meta's), the red disc comes twice,
    # once with a stray pixel whose wider box gets past box NMS.
    argv = ["amg", str(EXAMPLE), "--model", "samkit_default", "--out", str(tmp_path)]
    assert main([*argv, "--no-progress", *clean_up]) == 0
    records = json.loads((tmp_path / "shapes.json").read_text())["annotations"]
    masks = [decode_coco_rle(r["segmentation"]) for r in records]
    assert len(masks) >= 2
    if clean_up:
        assert duplicate_pairs(masks), "the stray pixel is gone: this test cannot fail"
    else:
        assert duplicate_pairs(masks) == []
