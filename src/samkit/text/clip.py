"""CLIP as the SAM paper used it for text prompts: open_clip's text tower at inference, its
image tower on object crops at training time (both land in CLIP's shared embedding space).

Needs `open_clip_torch` (which itself needs torchvision, so it is no dependency of samkit).
Weights are never downloaded here: name a model and a local weights file
(`clip:ViT-B-32:/path/open_clip_model.safetensors`) or a tag open_clip finds in its cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import check_texts

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's image normalisation
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipTextEncoder:
    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        """model: an open_clip CLIP (with encode_text/encode_image); tokenizer: its tokenizer
        (called on a list of strings, with a `context_length`)."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_tokens = int(tokenizer.context_length)
        with torch.no_grad():
            self.dim = int(self.model.encode_text(tokenizer(["a"])).shape[-1])

    @classmethod
    def from_name(cls, name: str) -> ClipTextEncoder:
        """`clip:<model>[:<pretrained>]`: an open_clip architecture and a weights tag or file."""
        try:
            import open_clip
        except ImportError:
            raise RuntimeError(
                f"text encoder {name!r} needs open_clip: pip install open_clip_torch "
                "(it brings torchvision, which must match your torch build)"
            ) from None
        _, arch, *rest = name.split(":", 2)
        if not arch:
            raise ValueError(f"text encoder {name!r}: name an open_clip model, e.g. clip:ViT-B-32")
        model = open_clip.create_model(arch, pretrained=rest[0] if rest else None)
        return cls(model, open_clip.get_tokenizer(arch), name)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        texts = check_texts(texts)
        if not texts:
            return torch.zeros(0, self.dim)
        for i, text in enumerate(texts):
            n = len(self.tokenizer.encode(text)) + 2  # with the start and end tokens
            if n > self.max_tokens:
                raise ValueError(
                    f"text {i} is {n} tokens long; the {self.name} text encoder reads at most "
                    f"{self.max_tokens}: give a shorter phrase"
                )
        return F.normalize(self.model.encode_text(self.tokenizer(texts)).float(), dim=-1)

    @torch.no_grad()
    def encode_crops(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, dim) CLIP image embeddings of (h, w, 3) uint8 RGB crops, each resized to the
        image tower's input square: the paper's training-time prompt for an object."""
        size = self.model.visual.image_size
        side = size[0] if isinstance(size, (tuple, list)) else int(size)
        mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
        batch = []
        for crop in crops:
            if crop.ndim != 3 or crop.shape[2] != 3 or min(crop.shape[:2]) < 1:
                raise ValueError(f"a crop must be (h, w, 3) with h, w >= 1; got {crop.shape}")
            x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255
            batch.append(F.interpolate(x, (side, side), mode="bicubic", align_corners=False))
        images = (torch.cat(batch).clamp(0, 1) - mean) / std
        return F.normalize(self.model.encode_image(images).float(), dim=-1)
