"""`samkit.load`: one call from a model name or a weights file to a ready `Sam`."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from . import devices
from .build import sam_model_registry, seeded_init_, training_only_registry, variant_registry
from .modeling import Sam

# Variants with no trained weights: `load` fills them with these seeds.
SEEDED_VARIANTS = {"samkit_tiny": 0}
# Variants whose trained weights ship inside the package (src/samkit/weights/).
BUNDLED = {"samkit_default": "samkit_default.safetensors"}
# Bundled models that are another bundled model plus a text grounder shipped on its own
# (`samkit.text.grounding`): name -> (base model, the grounder's weights file).
BUNDLED_GROUNDED = {"samkit_text": ("samkit_default", "samkit_text_grounder.safetensors")}
# Metadata key in samkit-written safetensors naming the variant.
VARIANT_KEY = "samkit_variant"
# Metadata key naming the text encoder a text head was trained on (`samkit.text`).
TEXT_ENCODER_KEY = "samkit_text_encoder"
# State-dict entries of the optional text head: no official checkpoint has them.
TEXT_HEAD_PREFIX = "prompt_encoder.text_projection."
# State-dict entries of the optional text grounder (`Sam.text_grounder`).
GROUNDER_PREFIX = "text_grounder."
TEXT_PREFIXES = (TEXT_HEAD_PREFIX, GROUNDER_PREFIX)


def load(
    name_or_path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    precision: str = "fp32",
) -> Sam:
    """Return an eval-mode `Sam` on `device` (CPU when None).

    name_or_path: a registry name ("vit_b", "vit_l", "vit_h", "vit_t", "default",
    "samkit_tiny") or a `KNOWN_WEIGHTS` name ("hf_vit_b"), resolved to cached or downloaded
    weights (seeded weights for the small variants); or a path to a weights file (.pth, .pt or
    .safetensors) in the official, MobileSAM, Hugging Face or samkit layout, whose variant is
    found from its shapes.
    precision: how the model computes, recorded as `model.precision`, which `SamPredictor` and
    `SamAutomaticMaskGenerator` follow unless given their own. "fp32" (the default, so that
    `load` gives Meta's numbers, a drop-in); "bf16": bfloat16 autocast, the weights staying
    fp32 (faster on GPUs and on CPUs with AVX-512 BF16 or AMX); "int8": the image encoder's and
    mask decoder's Linear layers with int8 weights and dynamically quantized int8 activations,
    on the CPU only (`samkit.quantize`); "auto": bf16 on CUDA and on CPUs with native bf16,
    else fp32 (`devices.resolve_precision`; the command line's default). Checked before any
    weights are read: ValueError for another value, or for int8 on another device.
    """
    from .checkpoints import KNOWN_WEIGHTS, load_weights, read_state_dict
    from .layouts import to_samkit

    target = torch.device(device or "cpu")
    precision = devices.resolve_precision(precision, target)
    key = os.fspath(name_or_path)
    if key in BUNDLED_GROUNDED and not Path(key).is_file():
        base, grounder = BUNDLED_GROUNDED[key]
        model = load(base, device, precision=precision)
        path = bundled_path(grounder)
        add_text_head(model, read_state_dict(path), path)
        return model
    if key in training_only_registry and not Path(key).is_file():
        raise _unknown_model(key)
    if (key in sam_model_registry or key in KNOWN_WEIGHTS) and not Path(key).is_file():
        name = "vit_h" if key == "default" else key
        variant = KNOWN_WEIGHTS[name].variant if name in KNOWN_WEIGHTS else name
        model = sam_model_registry[variant]()
        if name in SEEDED_VARIANTS:
            seeded_init_(model, SEEDED_VARIANTS[name])
        elif name in BUNDLED:
            path = bundled_path(name)
            state_dict = read_state_dict(path)
            add_text_head(model, state_dict, path)
            load_weights(model, state_dict, variant=variant)
        elif name in KNOWN_WEIGHTS:
            state_dict, _ = to_samkit(read_state_dict(_download(name)))
            load_weights(model, state_dict, variant=variant)
        else:
            raise _unknown_model(key)
    else:
        path = Path(key)
        if not path.is_file():
            raise _unknown_model(key)
        state_dict, _ = to_samkit(read_state_dict(path))
        variant = detect_variant(
            {k: v for k, v in state_dict.items() if not k.startswith(TEXT_PREFIXES)}, path
        )
        model = variant_registry[variant]()
        add_text_head(model, state_dict, path)
        load_weights(model, state_dict, variant=variant)
    model = model.to(target).eval()
    if precision == "int8":
        from .quantize import quantize_int8

        return quantize_int8(model)
    model.precision = precision
    return model


def add_text_head(model: Sam, state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Give `model` the text head that `state_dict` (read from `path`) holds weights for, if
    any: a text token (`TEXT_HEAD_PREFIX`) or a text grounder (`GROUNDER_PREFIX`, whose
    weights are loaded here, strictly), with the text encoder the file's metadata names
    ("minilm" when it names none)."""
    from .checkpoints import read_metadata
    from .text import DEFAULT_TEXT_ENCODER

    first = state_dict.get(TEXT_HEAD_PREFIX + "layers.0.weight")
    grounder = {
        k[len(GROUNDER_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(GROUNDER_PREFIX)
    }
    if first is None and not grounder:
        return
    if first is not None:
        model.prompt_encoder.enable_text(int(first.shape[1]))
    if grounder:
        from .text.grounding import TextGrounder

        text, width = grounder.get("text.0.weight"), grounder.get("text.2.weight")
        if text is None or width is None:
            raise ValueError(
                f"{path}: text grounder weights without {GROUNDER_PREFIX}text.0.weight "
                f"and {GROUNDER_PREFIX}text.2.weight"
            )
        module = TextGrounder(int(text.shape[1]), int(width.shape[0]))
        try:
            module.load_state_dict(grounder)
        except RuntimeError as err:
            # grounders made before the colour silhouettes (2026-12-07) have no
            # silhouette_polar.* weights, and nothing reads them now
            hint = (
                " (a grounder of an earlier samkit design: train it again with"
                " `python -m samkit.train.grounder`)"
                if "silhouette_polar.0.weight" not in grounder
                else ""
            )
            raise ValueError(
                f"{path}: the text grounder's weights do not fit{hint}: {err}"
            ) from None
        model.text_grounder = module.to(model.device).eval()
    model.text_encoder = read_metadata(path).get(TEXT_ENCODER_KEY, DEFAULT_TEXT_ENCODER)


def model_identity(name_or_path: str | os.PathLike[str], *, local: bool = True) -> dict[str, str]:
    """What tells apart the weights `load(name_or_path)` gives, without loading them:
    {"model": the name or path as given, "weights": a fingerprint}. The fingerprint is
    "sha256:HEX" for a weights file (hashed) and for the named weights whose digest is pinned
    or bundled, "seeded:N" for seeded variants and "url:URL" for hub weights without a pinned
    digest. Fails as `load` would for what is neither a name nor a file, unless `local` is
    False (a file that exists only on a cluster's workers): then "file:PATH"."""
    from .checkpoints import KNOWN_WEIGHTS

    key = os.fspath(name_or_path)
    name = "vit_h" if key == "default" else key
    path = Path(key)
    if path.is_file():
        fingerprint = "sha256:" + file_sha256(path)
    elif name in SEEDED_VARIANTS:
        fingerprint = f"seeded:{SEEDED_VARIANTS[name]}"
    elif name in BUNDLED:
        fingerprint = "sha256:" + file_sha256(bundled_path(name))
    elif name in BUNDLED_GROUNDED:
        base, grounder = BUNDLED_GROUNDED[name]
        digests = (file_sha256(bundled_path(base)), file_sha256(bundled_path(grounder)))
        fingerprint = "sha256:" + "+".join(digests)
    elif name in KNOWN_WEIGHTS:
        info = KNOWN_WEIGHTS[name]
        fingerprint = f"sha256:{info.sha256}" if info.sha256 else f"url:{info.url}"
    elif not local:
        fingerprint = f"file:{key}"
    else:
        raise _unknown_model(key)
    return {"model": key, "weights": fingerprint}


def _unknown_model(key: str) -> Exception:
    """Why `key`, which is not a file, names no weights `load` can give."""
    from .checkpoints import KNOWN_WEIGHTS

    if key in training_only_registry:
        return ValueError(
            f"{key} is an architecture only training builds (a stage of the bundled model's "
            "training, configs/default_model.json) and has no weights to load by name; pass a "
            "weights file of it, e.g. runs/default_stage3/model.safetensors"
        )
    if key in sam_model_registry:
        return ValueError(f"no weights are known for model {key!r}; pass a weights file")
    return FileNotFoundError(
        f"{key!r} is neither a model name ({', '.join(sam_model_registry)}, "
        f"{', '.join(n for n in KNOWN_WEIGHTS if n not in sam_model_registry)}) "
        "nor an existing weights file"
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read 1 MiB at a time."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download(name: str) -> Path:
    """The cached weights of `name`, downloaded first if needed; when that fails, the
    DownloadError says every way to get them."""
    from .checkpoints import KNOWN_WEIGHTS, download
    from .weights_cache import MIRROR_ENV, DownloadError

    try:
        return download(name)
    except DownloadError as err:
        filename = KNOWN_WEIGHTS[name].filename
        raise DownloadError(
            f"model {name} needs Meta's weights {filename}, which are not in the cache, and "
            f"getting them failed: {err}\nTo use {name}: run `samkit weights get {name}` once "
            f"where there is a network (later runs use the cache); or set {MIRROR_ENV} to a "
            f"server that serves {filename}; or pass the path of a local copy as the model "
            f"(--model /path/to/{filename}). The bundled samkit_default needs no download."
        ) from err


def bundled_path(name: str) -> Path:
    """The weights file of a bundled model (or a file name in the bundled weights), which
    must exist."""
    path = Path(__file__).parent / "weights" / BUNDLED.get(name, name)
    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled {name} weights ({path}) are missing from this install; "
            "reinstall samkit, or train them in a samkit checkout with `make train-default`"
        )
    return path


@functools.cache
def _variant_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of a registry variant (built once, on the meta device)."""
    with torch.device("meta"):
        model = variant_registry[name]()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def detect_variant(state_dict: dict[str, torch.Tensor], path: Path | None = None) -> str:
    """Name of the registry variant whose parameter names and shapes equal `state_dict`'s: the
    one the file's metadata names when it fits (a file from before a variant was renamed, such
    as a 2M-parameter `samkit_default`, now `samkit_narrow`, is found by its shapes)."""
    from .checkpoints import read_metadata

    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    if path is not None:
        named = read_metadata(path).get(VARIANT_KEY)
        if named in variant_registry and _variant_shapes(named) == shapes:
            return named
    for name in variant_registry:
        if name != "default" and _variant_shapes(name) == shapes:
            return name
    where = f" in {path}" if path is not None else ""
    sample = ", ".join(list(state_dict)[:3])
    raise ValueError(
        f"the weights{where} ({len(state_dict)} tensors: {sample}, ...) match none of the known "
        f"SAM variants ({', '.join(n for n in variant_registry if n != 'default')}) in the "
        "official, MobileSAM, Hugging Face (transformers SamModel) or samkit layout; "
        "is this a checkpoint of another model?"
    )
