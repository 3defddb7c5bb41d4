"""A MedSAM-style training step gives the official package's loss and gradients.

Fine-tuning scripts in the wild (MedSAM and its kin) call the three modules directly:
image_encoder -> prompt_encoder(boxes) -> mask_decoder, a dice + BCE loss on the low-res
logits, backward. `medsam_step` is that script; tools/make_train_step_golden.py runs this same
function on Meta's modules (peer venv) with the weights of tests/goldens/core.safetensors and
stores the loss, the logits and every gradient in tests/goldens/train_step.safetensors.
This module imports nothing the peer venv lacks, so the tool can import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

GOLDENS = Path(__file__).parent / "goldens"
BOXES = [[20.0, 30.0, 140.0, 150.0], [100.0, 60.0, 230.0, 200.0], [0.0, 0.0, 255.0, 255.0]]


def step_inputs(seed: int = 5) -> dict[str, torch.Tensor]:
    """A seeded 256 px uint8 image, three boxes (B, 1, 4 XYXY) and their 64 px targets."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(3, 256, 256), dtype=np.uint8)
    targets = np.zeros((3, 1, 64, 64), dtype=np.float32)
    for i, (x0, y0, x1, y1) in enumerate(BOXES):
        targets[i, 0, int(y0) // 4 + 4 : int(y1) // 4 - 4, int(x0) // 4 + 4 : int(x1) // 4 - 4] = 1
    return {
        "image": torch.from_numpy(image),
        "boxes": torch.tensor(BOXES)[:, None, :],
        "targets": torch.from_numpy(targets),
    }


def medsam_step(sam: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One forward and backward pass the way MedSAM trains; returns loss, logits and grads."""
    sam.train()
    sam.zero_grad()
    image = sam.preprocess(batch["image"].float())[None]  # (1, 3, 256, 256)
    embedding = sam.image_encoder(image)
    sparse, dense = sam.prompt_encoder(points=None, boxes=batch["boxes"], masks=None)
    logits, iou = sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    targets = batch["targets"]
    prob = torch.sigmoid(logits)
    inter = (prob * targets).flatten(1).sum(1)
    dice = 1 - 2 * inter / (prob.pow(2).flatten(1).sum(1) + targets.flatten(1).sum(1) + 1e-5)
    loss = dice.mean() + torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    loss.backward()
    out = {"loss": loss.detach()[None], "logits": logits.detach(), "iou": iou.detach()}
    for name, p in sam.named_parameters():
        if p.grad is not None:
            out[f"grad/{name}"] = p.grad.detach().clone()
    return out


def test_medsam_style_step_matches_the_official_modules() -> None:
    from samkit.build_sam import sam_model_registry

    golden = load_file(str(GOLDENS / "train_step.safetensors"))
    sam = sam_model_registry["samkit_tiny"]()
    sam.load_state_dict(load_file(str(GOLDENS / "core.safetensors")), strict=True)
    batch = {k.removeprefix("input/"): v for k, v in golden.items() if k.startswith("input/")}
    assert torch.equal(batch["image"], step_inputs()["image"])  # the golden's inputs are these
    ours = medsam_step(sam, batch)
    torch.testing.assert_close(ours["loss"], golden["loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours["logits"], golden["logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours["iou"], golden["iou"], rtol=1e-4, atol=1e-5)
    grads = sorted(k for k in golden if k.startswith("grad/"))
    assert grads == sorted(k for k in ours if k.startswith("grad/"))
    assert len(grads) > 100  # every trained tensor of encoder, prompt encoder and decoder
    for name in grads:
        # Relative to each tensor's largest gradient; key biases have a zero gradient in exact
        # arithmetic (softmax ignores a shift shared by all keys), so rounding noise (~1e-9) is
        # measured against a floor instead.
        scale = golden[name].abs().max().clamp_min(1e-4)
        torch.testing.assert_close(ours[name] / scale, golden[name] / scale, rtol=0, atol=1e-4)
