"""TinyViT image encoder of MobileSAM (Zhang et al., 2023; TinyViT: Wu et al., 2022).

A drop-in for `ImageEncoderViT`: a normalised, padded (B, 3, S, S) image in, a
(B, 256, S/16, S/16) embedding out. Four stages: a conv stem (S/4), MBConv blocks, then three
stages of windowed attention blocks (attention biases per offset, a depthwise "local" conv
between attention and MLP), with patch merging between stages. MobileSAM's last merge keeps
the resolution (stride 1), so three merges divide by 2 * 2 * 1 and the output grid is S/16.

Parameter names equal MobileSAM's `mobile_sam.pt` (`image_encoder.layers.1.blocks.0.attn...`),
so its weights load unchanged. Its 1000-class ImageNet head (`norm_head`, `head`) is never used
by SAM and is not part of this module; `samkit.layouts` drops it when reading the file.
Stages exchange (B, C, H, W); attention blocks work channels-last, (B, H, W, C).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d
from .image_encoder import window_partition, window_unpartition


class TinyViT(nn.Module):
    """Encodes a normalised, padded (B, 3, img_size, img_size) image to
    (B, out_chans, img_size/16, img_size/16).

    embed_dims, depths, num_heads, window_sizes: one entry per stage (the first stage is
    convolutional, so its heads and window are unused). merge_strides: stride of the patch
    merging after stages 0..n-2; MobileSAM uses (2, 2, 1).
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        merge_strides: Sequence[int] = (2, 2, 1),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        n = len(embed_dims)
        if not (len(depths) == len(num_heads) == len(window_sizes) == n == len(merge_strides) + 1):
            raise ValueError(
                "embed_dims, depths, num_heads and window_sizes need one entry per stage and "
                f"merge_strides one fewer; got {n}, {len(depths)}, {len(num_heads)}, "
                f"{len(window_sizes)} and {len(merge_strides)}"
            )
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans=in_chans, embed_dim=embed_dims[0])
        layers: list[nn.Module] = []
        for i in range(n):
            merge = None
            if i < n - 1:
                merge = PatchMerging(
                    dim=embed_dims[i], out_dim=embed_dims[i + 1], stride=merge_strides[i]
                )
            if i == 0:
                layers.append(
                    ConvLayer(
                        dim=embed_dims[0],
                        depth=depths[0],
                        expand_ratio=mbconv_expand_ratio,
                        downsample=merge,
                    )
                )
            else:
                layers.append(
                    BasicLayer(
                        dim=embed_dims[i],
                        depth=depths[i],
                        num_heads=num_heads[i],
                        window_size=window_sizes[i],
                        mlp_ratio=mlp_ratio,
                        local_conv_size=local_conv_size,
                        downsample=merge,
                    )
                )
        self.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, C0, S/4, S/4)
        for layer in self.layers:
            x = layer(x)  # (B, C_next, H', W')
        return self.neck(x)  # (B, out_chans, S/16, S/16)


class Conv2dBN(nn.Sequential):
    """Convolution without bias followed by BatchNorm (children `c` and `bn`, as in TinyViT)."""

    def __init__(
        self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 conv+BN layers with GELU between: (B, 3, S, S) -> (B, D, S/4, S/4)."""

    def __init__(self, *, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, 3, stride=2),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU after each."""

    def __init__(self, *, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(x + self.conv3(y))


class PatchMerging(nn.Module):
    """1x1 conv to out_dim, strided 3x3 depthwise conv, 1x1 conv: (B, C, H, W) ->
    (B, out_dim, H/stride, W/stride), rounding up."""

    def __init__(self, *, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


class ConvLayer(nn.Module):
    """The first stage: MBConv blocks, then an optional patch merging."""

    def __init__(
        self, *, dim: int, depth: int, expand_ratio: float, downsample: nn.Module | None
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            MBConv(dim=dim, expand_ratio=expand_ratio) for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class BasicLayer(nn.Module):
    """An attention stage: TinyViT blocks on (B, H, W, C), then an optional patch merging."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(
                dim=dim,
                num_heads=num_heads,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                local_conv_size=local_conv_size,
            )
            for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)  # (B, C, H, W)
        return x if self.downsample is None else self.downsample(x)


class TinyViTBlock(nn.Module):
    """Windowed attention (zero-padded windows), residual; depthwise local conv; MLP, residual.
    The attention and the MLP normalise their own input (pre-norm inside each)."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.window_size = window_size
        self.attn = Attention(dim=dim, num_heads=num_heads, window_size=window_size)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, local_conv_size, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1], x.shape[2]
        windows, padded_hw = window_partition(x, self.window_size)  # (B*nW, ws, ws, C)
        x = x + window_unpartition(self.attn(windows), self.window_size, padded_hw, (h, w))
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, C)
        return x + self.mlp(x)


class Attention(nn.Module):
    """Multi-head self-attention inside a ws x ws window, with a learned bias per head for each
    (|dy|, |dx|) offset between two positions (LeViT-style attention biases).

    qkv's output is laid out per head as [q, k, v] (TinyViT's order), not [q | k | v]."""

    attention_bias_idxs: torch.Tensor

    def __init__(self, *, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # Offsets (|dy|, |dx|) number ws * ws; offset (a, b) has index a * ws + b.
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        ys, xs = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        idxs = (ys[:, None] - ys[None, :]).abs() * window_size + (xs[:, None] - xs[None, :]).abs()
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)  # (N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ws_h, ws_w, c = x.shape
        n = ws_h * ws_w
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=3)  # each (B, nh, N, hd)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)  # (nh, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, nh, N, hd)
        return self.proj(out.transpose(1, 2).reshape(b, ws_h, ws_w, c))


class Mlp(nn.Module):
    """LayerNorm, then two linear layers with GELU between (TinyViT's pre-normed MLP)."""

    def __init__(self, *, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))
