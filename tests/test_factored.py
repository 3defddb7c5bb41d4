"""The factored decoder path (prompts without a mask on a prepared image) against the plain one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samkit.build import _build_sam
from samkit.modeling.mask_decoder import MaskDecoder
from samkit.modeling.prompt_encoder import PromptEncoder


def _decoder(depth: int, seed: int) -> tuple[MaskDecoder, PromptEncoder]:
    """A small decoder whose every LayerNorm gain and bias and every bias is random: with the
    default ones and zeros the factored algebra's gain/bias terms would go untested."""
    torch.manual_seed(seed)
    sam = _build_sam(
        encoder_embed_dim=16,
        encoder_depth=1,
        encoder_num_heads=1,
        encoder_global_attn_indexes=(0,),
        image_size=32,
        patch_size=4,  # an 8x8 embedding grid
        window_size=8,
        prompt_embed_dim=32,
        decoder_depth=depth,
        decoder_num_heads=4,
        decoder_mlp_dim=64,
        mask_in_chans=4,
        iou_head_hidden_dim=32,
    )
    decoder, prompts = sam.mask_decoder, sam.prompt_encoder
    with torch.no_grad():
        for module in decoder.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.3)
            elif isinstance(module, (nn.Linear, nn.ConvTranspose2d)) and module.bias is not None:
                module.bias.normal_(0, 0.3)
        for p in prompts.parameters():
            p.normal_(0, 0.5)
    return decoder.eval(), prompts.eval()


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("multimask", [True, False])
def test_factored_decoder_equals_plain(depth: int, multimask: bool) -> None:
    decoder, prompts = _decoder(depth, seed=depth)
    image = torch.randn(1, 32, 8, 8)
    coords = torch.rand(5, 2, 2) * 32  # 5 prompts of 2 points
    labels = torch.tensor([[1, 0], [1, 1], [0, 1], [1, -1], [1, 1]], dtype=torch.int)
    boxes = torch.tensor([[2.0, 3.0, 20.0, 25.0]]).repeat(5, 1)
    with torch.no_grad():
        sparse, dense = prompts(points=(coords, labels), boxes=boxes, masks=None)
        pe = prompts.get_dense_pe()
        prepared = decoder.prepare(image, pe, dense)
        args = dict(
            image_embeddings=image,
            image_pe=pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        plain_masks, plain_iou = decoder(**args)
        masks, iou = decoder(**args, prepared=prepared)
    assert masks.shape == plain_masks.shape == (5, 3 if multimask else 1, 32, 32)
    assert plain_masks.abs().max() > 0.1  # a real signal, not all zeros
    torch.testing.assert_close(masks, plain_masks, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(iou, plain_iou, atol=2e-5, rtol=1e-4)


def test_plain_upscaling_equals_the_transposed_convolutions() -> None:
    """The channels-last matmul form of `output_upscaling` equals running its modules."""
    decoder, _ = _decoder(2, seed=7)
    src = torch.randn(3, 8 * 8, 32)  # (B, HW, C) image tokens after the transformer
    with torch.no_grad():
        want = decoder.output_upscaling(src.transpose(1, 2).reshape(3, 32, 8, 8))  # (B, 4, 32, 32)
        conv1 = decoder.output_upscaling[0]
        weight = conv1.weight.permute(0, 2, 3, 1).reshape(32, -1)
        got = decoder._upscale_rest(src @ weight + conv1.bias.repeat(4), 8, 8)  # (B, 1024, 4)
    torch.testing.assert_close(got.transpose(1, 2).reshape(want.shape), want, atol=1e-5, rtol=1e-5)
