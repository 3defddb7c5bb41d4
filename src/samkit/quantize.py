"""int8 inference on the CPU: the image encoder's and mask decoder's Linear layers with int8
weights (one scale per output channel; 7-bit on x86 CPUs without VNNI, `weight_levels`) and
8-bit activations, quantized afresh at every call with one scale per tensor (dynamic
quantization). The rest of the model (convolutions, attention, norms) stays fp32.

The matmuls run in torch's dynamic int8 linear kernel, `torch.ops.quantized.linear_dynamic`
(FBGEMM / oneDNN under torch's "x86" engine, QNNPACK on ARM): the one that
`torch.ao.quantization.quantize_dynamic` puts in its modules. That function is not used: it is
deprecated (a DeprecationWarning at every call), and its modules have no `weight` tensor, which
the mask decoder's factored path reads (`modeling/factored.py`). `Int8Linear` keeps the int8
weights and scales as buffers (so `embedding_cache.model_digest` tells an int8 model from its
fp32 source) and gives `weight` as the dequantized float32 tensor to code that reads it.
The other int8 matmuls of torch 2.13 were slower here (a 4096x768 @ 768x3072 Linear, 2 threads,
a Xeon with AMX, one run on a shared machine: fp32 150 ms, this kernel 77 ms): `torch._int_mm`
with the quantize and rescale passes around it 160 ms (rescaling its int32 output alone costs
more than the matmul); oneDNN's `qlinear_pointwise` 80 ms, but 225 ms against fp32's 200 ms
with oneDNN limited to AVX2.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import devices

if TYPE_CHECKING:
    from .modeling import Sam

INT8_KERNEL = "torch.ops.quantized.linear_dynamic"


class Int8Linear(nn.Module):
    """An `nn.Linear` for inference with int8 weights, symmetric per output channel (within
    +-`weight_levels()`), and activations quantized dynamically per call; outputs are in the
    input's dtype."""

    weight_int8: torch.Tensor  # (out_features, in_features) int8
    weight_scale: torch.Tensor  # (out_features,) float32: weight = weight_int8 * scale
    bias: torch.Tensor | None  # (out_features,) float32

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float().cpu()
        scale = (weight.abs().amax(dim=1) / weight_levels()).clamp_min(1e-12)  # 0 rows stay 0
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().float().cpu().clone()
        self.register_buffer("bias", bias)
        self._pack()
        self.train(False)  # inference only: `model.train()` makes forward refuse to run
        # load_state_dict changes the buffers: the packed copy the kernel reads must follow
        self.register_load_state_dict_post_hook(_repack)

    def _pack(self) -> None:
        """The kernel's own layout of the weights and bias (FBGEMM / QNNPACK packed)."""
        zero = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # torch deprecates making quantized tensors; none escapes
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(
                self.weight.cpu(), self.weight_scale.cpu().double(), zero, 0, torch.qint8
            )
            bias = None if self.bias is None else self.bias.cpu()
            self._packed = torch.ops.quantized.linear_prepack(qweight, bias)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized (out_features, in_features) float32 weight, for code that reads the
        weights instead of calling the layer (the mask decoder's factored path)."""
        return self.weight_int8.float() * self.weight_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features), in x's dtype."""
        if self.training:
            raise ValueError(
                "an int8 model is for inference only (its Linear layers have no gradients): "
                "train a model loaded with precision fp32 (or bf16 autocast)"
            )
        if x.device.type != "cpu":
            raise ValueError(
                f"int8 layers run on the CPU only; the input is on {x.device}: load the model "
                "with precision fp32 or bf16 for that device"
            )
        # reduce_range False: 8-bit activations (`weight_levels` keeps them from saturating)
        y = torch.ops.quantized.linear_dynamic(x.float(), self._packed, False)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, int8 weights per channel, dynamic int8 activations"
        )


def _repack(module: nn.Module, incompatible_keys: object) -> None:
    if isinstance(module, Int8Linear):
        module._pack()


def quantize_int8(model: Sam) -> Sam:
    """Replace, in place, every `nn.Linear` of `model.image_encoder` and `model.mask_decoder`
    by an `Int8Linear`; the prompt encoder (a few small layers) stays fp32. Returns `model`, in
    eval mode, with `model.precision` "int8" (what `SamPredictor` follows).

    CPU only: raises ValueError for a model on another device, and RuntimeError when this
    torch has no dynamic int8 kernel (`int8_available`)."""
    if model.device.type != "cpu":
        raise ValueError(
            f"precision int8 runs on the CPU only (torch's dynamic int8 kernels); the model is "
            f"on {model.device}: use bf16 or fp32 there"
        )
    if not int8_available():
        raise RuntimeError(
            f"this torch ({torch.__version__}, quantized engine "
            f"{torch.backends.quantized.engine}) cannot run {INT8_KERNEL}, which precision int8 "
            "needs: use bf16 or fp32, or a torch build with FBGEMM or QNNPACK"
        )
    for part in (model.image_encoder, model.mask_decoder):
        for module in list(part.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(module, name, Int8Linear(child))
    model.precision = "int8"
    return model.eval()


def weight_levels() -> int:
    """The largest int8 weight magnitude: 127, or 63 where int8 matmuls saturate
    (`devices.cpu_int8_saturates`: x86 without VNNI adds pairs of u8 x s8 products in 16 bits;
    255 * 63 * 2 fits, 255 * 127 * 2 does not). torch's own dynamic modules keep 127 and make
    the activations 7-bit everywhere instead, which loses more: samkit_default's point masks
    (tests/test_precision.py) agree with fp32's at mean IoU 0.978 with 7-bit weights (FBGEMM
    limited to AVX2), 0.962 with 7-bit activations, 0.979 with both 8-bit (VNNI), and 0.934
    with both 8-bit where the sums saturate."""
    return 63 if devices.cpu_int8_saturates() else 127


@functools.cache
def int8_available() -> bool:
    """Whether this torch runs `Int8Linear` here (its dynamic int8 kernel; `samkit info`)."""
    try:
        layer = Int8Linear(nn.Linear(8, 8)).eval()
        return tuple(layer(torch.ones(2, 8)).shape) == (2, 8)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
