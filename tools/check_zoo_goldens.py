"""Replay the model-zoo goldens (MobileSAM vit_t, transformers' SamModel) with samkit.

    python tools/check_zoo_goldens.py tests/goldens/zoo_vit_t.npz     # one line per case

The seeded weights are rebuilt, written in the reference's file layout (a MobileSAM-style
.pt with its ImageNet head, or an HF-layout safetensors) and read back with `samkit.load`, so
the check covers layout detection and key mapping as well as the model.
`tests/test_zoo.py` asserts on the same numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from check_goldens import Diff, _diff, print_report
from golden_cases import run_case
from zoo_cases import (
    array_sha256,
    mobile_sam_head,
    sample_embedding,
    sample_outputs,
    seeded_weights,
    unpack_masks,
    weights_sha256,
    zoo_images,
)

from samkit import SamPredictor, load
from samkit.checkpoints import write_safetensors
from samkit.layouts import to_hf
from samkit.modeling import Sam


def load_as_reference(manifest: dict, folder: Path) -> Sam:
    """The golden's seeded weights, written in the reference's layout, loaded by samkit."""
    weights = seeded_weights(manifest["variant"], manifest["seed"])
    if manifest["layout"] == "hf":
        path = folder / "model.safetensors"
        write_safetensors(to_hf(weights), path)
    else:
        path = folder / "mobile_sam.pt"
        torch.save({**weights, **mobile_sam_head(manifest["seed"])}, path)
    return load(path)


def compare(path: str | Path) -> list[Diff]:
    gold = np.load(path)
    manifest = json.loads(gold["manifest"].tobytes())
    with tempfile.TemporaryDirectory() as tmp:
        sam = load_as_reference(manifest, Path(tmp))
    expected = gold["weights_sha256"].tobytes().decode()
    if weights_sha256(sam.state_dict()) != expected:
        raise AssertionError(
            "samkit's seeded weights are not the ones the goldens were made with (seeded_init_ "
            "or the variant changed); remake them with `make zoo-goldens`"
        )
    images = zoo_images(manifest["images"])
    for i, img in enumerate(images):
        if array_sha256(img) != gold[f"image_sha256/{i}"].tobytes().decode():
            raise AssertionError(f"golden image {i} is not the one the goldens were made with")
    predictor = SamPredictor(sam)
    diffs = []
    with torch.no_grad():
        for i, img in enumerate(images):
            predictor.set_image(img)
            emb = sample_embedding(predictor.get_image_embedding().numpy())
            emb_max = float(np.abs(emb - gold[f"embedding/{i}"]).max())
            diffs.append(Diff(f"{i}/embedding", 0.0, emb_max, 0.0))
            outputs: dict[str, dict] = {}
            for case in manifest["cases"]:
                key = f"{i}/{case['name']}"
                mask_input = None
                if "mask_from" in case:  # refine with samkit's own previous output
                    prev = outputs[case["mask_from"]]
                    mask_input = prev["low_res"][np.argmax(prev["scores"])][None]
                outputs[case["name"]] = run_case(predictor, case, mask_input)
                got = sample_outputs(outputs[case["name"]])
                got["masks"] = unpack_masks(got["masks"], got["masks_shape"])
                want = {k: gold[f"{key}/{k}"] for k in ("scores", "low_res")}
                want["masks"] = unpack_masks(gold[f"{key}/masks"], gold[f"{key}/masks_shape"])
                del got["masks_shape"]
                diffs.append(_diff(key, got, want))
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a tests/goldens/zoo_*.npz file")
    print_report(compare(parser.parse_args().path))


if __name__ == "__main__":
    main()
