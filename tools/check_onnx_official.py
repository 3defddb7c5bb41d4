"""samkit's ONNX decoder against the official exporter's, on the same weights, in onnxruntime.

Runs in the bench venv (official `segment_anything`, samkit, onnx and onnxruntime under one
torch; `make bench-env`):

    .venv-peer/bin/python tools/check_onnx_official.py --model samkit_tiny

Exports the official `SamOnnxModel` (official model class, samkit's weights) and samkit's
decoder with the same options, runs both graphs on the same random prompts (1 to 6 points,
with and without a mask, several original sizes), and prints the largest differences as JSON.
Exits 1 if a difference exceeds the tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_goldens import VARIANTS, build_official

from samkit import load
from samkit.export import export_decoder
from samkit.export.onnx import DECODER_INPUTS, decoder_example_inputs

# (points, has_mask_input, orig_im_size). The official graph bakes the padding crop of its
# example size (1500 x 2250, as the official export script uses) into the graph: `int()` on a
# traced tensor becomes a constant. So it is only right for images of that 2:3 aspect ratio,
# and only those are compared; samkit's crop follows orig_im_size (tests/test_export.py).
CASES = ((1, 0.0, (480, 720)), (2, 1.0, (1000, 1500)), (6, 0.0, (1500, 2250)))


def export_official(
    model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, **options: bool
) -> None:
    from segment_anything.utils.onnx import SamOnnxModel

    onnx_model = SamOnnxModel(model, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            onnx_model,
            example,
            str(path),
            input_names=list(DECODER_INPUTS),
            output_names=["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=17,
            dynamo=False,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samkit_tiny")
    parser.add_argument("--atol", type=float, default=1e-3)
    args = parser.parse_args()
    ours = load(args.model).eval()
    theirs = build_official(VARIANTS[args.model])
    theirs.load_state_dict(ours.state_dict())
    theirs.eval()
    report, worst = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for single in (False, True):
            opts = {"return_single_mask": single}
            ours_path, theirs_path = Path(tmp, "ours.onnx"), Path(tmp, "theirs.onnx")
            export_decoder(ours, ours_path, **opts)
            export_official(theirs, decoder_example_inputs(ours, 3), theirs_path, **opts)
            sessions = [
                ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for p in (ours_path, theirs_path)
            ]
            for n, has_mask, size in CASES:
                inputs = list(decoder_example_inputs(ours, n))
                inputs[4] = torch.tensor([has_mask])
                inputs[5] = torch.tensor(size, dtype=torch.float32)
                feeds = {k: v.numpy() for k, v in zip(DECODER_INPUTS, inputs, strict=True)}
                a, b = (s.run(None, feeds) for s in sessions)
                diffs = [float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)]
                worst = max(worst, *diffs)
                report.append(
                    {
                        "single": single,
                        "points": n,
                        "mask": has_mask,
                        "size": size,
                        "max_abs_diff": dict(zip(["masks", "iou", "low_res"], diffs, strict=True)),
                    }
                )
    print(json.dumps({"model": args.model, "cases": report, "worst": worst}))
    return int(worst > args.atol)


if __name__ == "__main__":
    sys.exit(main())
