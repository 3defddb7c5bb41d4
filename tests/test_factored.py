"""The factored decoder path (prompts without a mask on a prepared image) against the plain one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samkit.build import _build_sam
from samkit.modeling import mask_decoder
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


def _chunk_prompts(monkeypatch: pytest.MonkeyPatch, prompts: int | None) -> None:
    """Make the factored path split a batch into chunks of `prompts` (None: one chunk)."""
    if prompts is not None:  # the test decoders' image tokens: 8x8 pixels of 32 floats
        monkeypatch.setattr(mask_decoder, "CACHE_BYTES", prompts * 4 * 8 * 8 * 32)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompts_per_chunk", [2, None])
def test_factored_decoder_equals_plain(
    depth: int, multimask: bool, prompts_per_chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _chunk_prompts(monkeypatch, prompts_per_chunk)
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
        masks, iou = decoder.predict_prepared(
            image_pe=pe,
            sparse_prompt_embeddings=sparse,
            prepared=prepared,
            multimask_output=multimask,
        )
    assert masks.shape == plain_masks.shape == (5, 3 if multimask else 1, 32, 32)
    assert plain_masks.abs().max() > 0.1  # a real signal, not all zeros
    torch.testing.assert_close(masks, plain_masks, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(iou, plain_iou, atol=2e-5, rtol=1e-4)


def test_plain_upscaling_equals_the_transposed_convolutions() -> None:
    """The channels-last matmul form of `output_upscaling` and the mask tokens' dot products
    equal running the modules and then the dot product in image layout."""
    decoder, _ = _decoder(2, seed=7)
    src = torch.randn(3, 8 * 8, 32)  # (B, HW, C) image tokens after the transformer
    hyper_in = torch.randn(3, 4, 4)  # (B, T, C/8)
    with torch.no_grad():
        upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(3, 32, 8, 8))
        want = torch.einsum("btc,bchw->bthw", hyper_in, upscaled)  # (B, T, 32, 32)
        conv1 = decoder.output_upscaling[0]
        weight = conv1.weight.permute(0, 2, 3, 1).reshape(32, -1)
        first = src @ weight + conv1.bias.repeat(4)
        got = decoder._upscale_and_project(first, hyper_in, 8, 8)
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompts_per_chunk", [4, None])
def test_confident_masks_are_the_plain_masks_above_the_threshold(
    multimask: bool, prompts_per_chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`predict_confident` returns every output's IoU, and exactly the plain decoder's masks of
    the outputs whose IoU is above the threshold (none, some or all of them)."""
    _chunk_prompts(monkeypatch, prompts_per_chunk)
    decoder, prompts = _decoder(2, seed=11)
    image = torch.randn(1, 32, 8, 8)
    coords = torch.rand(6, 1, 2) * 32
    labels = torch.ones(6, 1, dtype=torch.int)
    with torch.no_grad():
        sparse, dense = prompts(points=(coords, labels), boxes=None, masks=None)
        pe = prompts.get_dense_pe()
        plain_masks, plain_iou = decoder(image, pe, sparse, dense, multimask_output=multimask)
        prepared = decoder.prepare(image, pe, dense)
        ranked = plain_iou.flatten().sort().values  # a threshold between two outputs' IoU
        threshold = (ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]).item() / 2
        for min_iou in (plain_iou.max().item() + 1, threshold, -float("inf")):
            masks, iou, index = decoder.predict_confident(
                image_pe=pe,
                sparse_prompt_embeddings=sparse,
                prepared=prepared,
                multimask_output=multimask,
                min_iou=min_iou,
            )
            torch.testing.assert_close(iou, plain_iou, atol=2e-5, rtol=1e-4)
            want = torch.nonzero(plain_iou > min_iou)
            assert torch.equal(index, want)
            assert masks.shape == (len(want), 32, 32)
            torch.testing.assert_close(
                masks, plain_masks[want[:, 0], want[:, 1]], atol=2e-5, rtol=1e-4
            )
    assert 0 < (plain_iou > threshold).sum() < plain_iou.numel()  # the middle case is partial
