"""`samkit info`: versions, devices, precision and the weights cache, for a bug report."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="versions, devices, bf16 and int8 support and the weights cache (for bug reports)",
        description="Print the samkit, torch and Python versions, the devices torch can use "
        "here (what --device takes), whether this CPU multiplies bf16 natively (AVX-512 BF16 "
        "or AMX), whether int8 runs here (--precision int8: torch's dynamic int8 kernel), the "
        "precision `auto` picks on each device, and the weights cache.",
        epilog="example:\n  samkit info",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    import os
    import platform
    import sys

    import torch

    from .. import __version__, devices
    from ..checkpoints import KNOWN_WEIGHTS, cache_dir, cached_path
    from ..loading import BUNDLED, BUNDLED_GROUNDED, bundled_path
    from ..weights_cache import MIRROR_ENV

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
    bf16 = devices.cpu_supports_bf16()
    lines = [
        f"samkit {__version__}",
        f"python {platform.python_version()} ({sys.executable})",
        f"torch {torch.__version__} ({build})",
        f"cpu: {platform.machine()}, native bf16 (AVX-512 BF16 or AMX): {'yes' if bf16 else 'no'}",
        _int8_line(),
        *_backend_lines(),
        "devices (--device):",
    ]
    for name in devices.available_devices():
        device = torch.device(name)
        what = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
        precision = devices.resolve_precision("auto", device)
        lines.append(f"  {name:8s} precision auto = {precision}" + (f"  ({what})" if what else ""))
    cached = [name for name in KNOWN_WEIGHTS if cached_path(name) is not None]
    lines.append(
        f"weights cache: {cache_dir() / 'weights'} "
        f"(downloaded: {', '.join(cached) if cached else 'none'})"
    )
    lines.append(f"{MIRROR_ENV}: {os.environ.get(MIRROR_ENV) or 'not set'}")
    for name in BUNDLED:
        lines.append(f"bundled model: {name} ({bundled_path(name)})")
    for name, (base, grounder) in BUNDLED_GROUNDED.items():
        lines.append(f"bundled model: {name} ({base} + text grounder {bundled_path(grounder)})")
    print("\n".join(lines))
    return 0


def _backend_lines() -> list[str]:
    """The encoder runtimes installed besides torch, and what backend "auto" measured here."""
    from ..backend_choice import FILE, candidates, describe_choices
    from ..weights_cache import cache_dir

    runtimes = candidates("fp32")
    path = cache_dir() / FILE
    decisions = describe_choices(path)
    return [
        f"encoder runtimes besides torch: {', '.join(runtimes) if runtimes else 'none'}; "
        f"backend auto measured {len(decisions)} model(s) ({path})",
        *(f"  {line}" for line in decisions),
    ]


def _int8_line() -> str:
    """Whether --precision int8 runs here, with what kernel and activations."""
    import torch

    from .. import devices
    from ..quantize import INT8_KERNEL, int8_available

    if not int8_available():
        return f"int8 (CPU): no ({INT8_KERNEL} does not run in this torch)"
    bits = "7-bit weights: no VNNI" if devices.cpu_int8_saturates() else "8-bit weights"
    engine = torch.backends.quantized.engine
    return f"int8 (CPU): yes ({INT8_KERNEL}, engine {engine}, {bits})"
