"""Layouts of SAM weights files, and the key maps between them.

samkit's modules use the official `segment_anything` parameter names, so two layouts exist:

- "samkit": the official checkpoints (`sam_vit_b_01ec64.pth`), MobileSAM's `mobile_sam.pt`
  (less its unused ImageNet head, dropped on reading) and files samkit writes;
- "hf": Hugging Face `transformers`' `SamModel` (`facebook/sam-vit-base` and friends).

`to_samkit` turns a state dict of either layout into samkit's; `to_hf` writes samkit's in the
`SamModel` layout. The map is one table of key-prefix pairs used in both directions, plus the
MLPs, whose first and last layers `SamModel` names `proj_in` and `proj_out`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

StateDict = dict[str, torch.Tensor]

LAYOUTS = ("samkit", "hf")

# TinyViT's 1000-class ImageNet head, stored in mobile_sam.pt but never used by SAM.
MOBILE_SAM_HEAD = (
    "image_encoder.norm_head.weight",
    "image_encoder.norm_head.bias",
    "image_encoder.head.weight",
    "image_encoder.head.bias",
)

# (samkit key prefix, SamModel key prefix); {i} and {j} stand for layer numbers. The first
# rule whose prefix matches a key wins, so specific rules come before general ones.
_PREFIXES: list[tuple[str, str]] = [
    ("image_encoder.patch_embed.proj.", "vision_encoder.patch_embed.projection."),
    ("image_encoder.pos_embed", "vision_encoder.pos_embed"),
    ("image_encoder.blocks.{i}.norm{j}.", "vision_encoder.layers.{i}.layer_norm{j}."),
    ("image_encoder.blocks.", "vision_encoder.layers."),
    ("image_encoder.neck.0.", "vision_encoder.neck.conv1."),
    ("image_encoder.neck.1.", "vision_encoder.neck.layer_norm1."),
    ("image_encoder.neck.2.", "vision_encoder.neck.conv2."),
    ("image_encoder.neck.3.", "vision_encoder.neck.layer_norm2."),
    (
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "shared_image_embedding.positional_embedding",
    ),
    ("prompt_encoder.point_embeddings.", "prompt_encoder.point_embed."),
    ("prompt_encoder.mask_downscaling.0.", "prompt_encoder.mask_embed.conv1."),
    ("prompt_encoder.mask_downscaling.1.", "prompt_encoder.mask_embed.layer_norm1."),
    ("prompt_encoder.mask_downscaling.3.", "prompt_encoder.mask_embed.conv2."),
    ("prompt_encoder.mask_downscaling.4.", "prompt_encoder.mask_embed.layer_norm2."),
    ("prompt_encoder.mask_downscaling.6.", "prompt_encoder.mask_embed.conv3."),
    (
        "mask_decoder.transformer.layers.{i}.norm{j}.",
        "mask_decoder.transformer.layers.{i}.layer_norm{j}.",
    ),
    (
        "mask_decoder.transformer.norm_final_attn.",
        "mask_decoder.transformer.layer_norm_final_attn.",
    ),
    ("mask_decoder.output_upscaling.0.", "mask_decoder.upscale_conv1."),
    ("mask_decoder.output_upscaling.1.", "mask_decoder.upscale_layer_norm."),
    ("mask_decoder.output_upscaling.3.", "mask_decoder.upscale_conv2."),
]
# SamModel keeps a second copy of the positional-encoding matrix in its prompt encoder
# (tied to shared_image_embedding); files may hold either copy or both.
_HF_TIED = "prompt_encoder.shared_embedding.positional_embedding"
_HF_MARKERS = ("vision_encoder.", "shared_image_embedding.", "mask_decoder.upscale_conv1.")
# The decoder's MLPs: samkit's layers.0 .. layers.{n-1}; SamModel's proj_in, layers.0 ..
# layers.{n-3}, proj_out.
_MLP = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.")


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile("^" + pattern)


_TO_HF = [(_compile(ours), hf) for ours, hf in _PREFIXES]
_FROM_HF = [(_compile(hf), ours) for ours, hf in _PREFIXES]


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """ "hf" for a `transformers` `SamModel` state dict, else "samkit"."""
    if any(key.startswith(_HF_MARKERS) for key in state_dict):
        return "hf"
    return "samkit"


def to_samkit(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, str]:
    """`state_dict` in samkit's layout, and the layout it came in.

    MobileSAM's unused ImageNet head (`MOBILE_SAM_HEAD`) is dropped; other keys are kept as
    they are (after renaming), so a file of another model still fails strict loading.
    """
    layout = detect_layout(state_dict)
    if layout == "hf":
        return _from_hf(state_dict), layout
    return {k: v for k, v in state_dict.items() if k not in MOBILE_SAM_HEAD}, layout


def to_hf(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """samkit's (official) layout -> `transformers` `SamModel`'s, loadable with strict=True.

    Only ViT encoders exist in `SamModel`; a TinyViT (vit_t) state dict is refused."""
    if any(k.startswith("image_encoder.layers.") for k in state_dict):
        raise ValueError(
            "transformers' SamModel has no TinyViT encoder, so vit_t (MobileSAM) weights "
            "cannot be written in the Hugging Face layout; write them as samkit safetensors"
        )
    depths = _mlp_depths(state_dict)
    out: StateDict = {}
    for key, value in state_dict.items():
        out[_rename(key, _TO_HF, depths, hf=False)] = value
    out[_HF_TIED] = out["shared_image_embedding.positional_embedding"]
    return out


def _from_hf(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    given = dict(state_dict)
    tied = given.pop(_HF_TIED, None)
    main = "shared_image_embedding.positional_embedding"
    if tied is not None:
        if main not in given:
            given[main] = tied
        elif tied is not given[main] and not tied.is_meta and not torch.equal(given[main], tied):
            raise ValueError(
                f"{main} and {_HF_TIED} differ; SamModel ties them, so the file is inconsistent"
            )
    depths = _mlp_depths(given)
    return {_rename(key, _FROM_HF, depths, hf=True): value for key, value in given.items()}


def _rename(
    key: str, rules: list[tuple[re.Pattern[str], str]], depths: dict[str, int], *, hf: bool
) -> str:
    """`key` in the other layout; keys no rule covers are left unchanged."""
    if found := _MLP.match(key):
        return (
            found.group(1)
            + "."
            + _rename_mlp_layer(key[found.end() :], depths[found.group(1)], hf=hf)
        )
    for pattern, template in rules:
        if found := pattern.match(key):
            return template.format(**found.groupdict()) + key[found.end() :]
    return key


def _rename_mlp_layer(rest: str, depth: int, *, hf: bool) -> str:
    """'layers.2.weight' <-> 'proj_out.weight' etc. for an MLP of `depth` linear layers."""
    if not hf:
        index, _, tail = rest.removeprefix("layers.").partition(".")
        i = int(index)
        name = "proj_in" if i == 0 else "proj_out" if i == depth - 1 else f"layers.{i - 1}"
        return f"{name}.{tail}"
    head, _, tail = rest.partition(".")
    if head == "proj_in":
        return f"layers.0.{tail}"
    if head == "proj_out":
        return f"layers.{depth - 1}.{tail}"
    index, _, tail = tail.partition(".")
    return f"layers.{int(index) + 1}.{tail}"


def _mlp_depths(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Number of linear layers of each decoder MLP, by its key prefix."""
    layers: dict[str, set[str]] = {}
    for key in state_dict:
        if found := _MLP.match(key):
            rest = key[found.end() :]
            head, _, tail = rest.partition(".")
            name = f"{head}.{tail.partition('.')[0]}" if head == "layers" else head
            layers.setdefault(found.group(1), set()).add(name)
    return {prefix: len(names) for prefix, names in layers.items()}
