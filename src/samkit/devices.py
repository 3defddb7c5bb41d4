"""Where a model runs and in what precision: the one place that checks a device the user names,
picks the default device, and turns a precision ("auto", "fp32", "bf16", "int8") into what
runs: an autocast for bf16, int8 Linear layers (`samkit.quantize`) for int8.

Library code takes a device from its caller or reads it from the model or its input; only the
command-line entry points call `default_device` (CUDA when there is one, else the CPU).
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path
from typing import Any

import torch

# autocast precisions, for training and inference
PRECISIONS = ("auto", "fp32", "bf16")
# what `samkit.load` takes: the autocast ones, and int8 (inference only, on the CPU)
MODEL_PRECISIONS = (*PRECISIONS, "int8")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# /proc/cpuinfo flags of CPUs with native bf16 matmuls (AVX-512 BF16; AMX tiles)
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# /proc/cpuinfo flags of x86 CPUs that sum u8 x s8 products in 32 bits (VNNI; AMX tiles)
VNNI_CPU_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})


def available_devices() -> list[str]:
    """The devices torch can use here, e.g. ["cpu", "cuda:0", "cuda:1"] or ["cpu", "mps"]."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def default_device() -> torch.device:
    """CUDA when available, else the CPU (MPS only when asked for)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """The device `spec` names ("cpu", "cuda", "cuda:1", "mps"; None: `default_device()`),
    checked to exist here, so a bad --device fails before any work starts.

    Raises ValueError naming the devices that exist."""
    if spec is None:
        return default_device()
    here = _devices_here()
    device = parse_device(spec)
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch is built without CUDA; install a CUDA build of torch"
                if torch.version.cuda is None
                else "torch finds no CUDA driver or GPU"
            )
            raise ValueError(f"device {spec}: this machine has no CUDA device ({why}); {here}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            exist = "only cuda:0 exists" if count == 1 else f"only cuda:0..cuda:{count - 1} exist"
            raise ValueError(f"device {spec}: {exist}; {here}")
        return device
    if not torch.backends.mps.is_available():  # mps, the one type left (parse_device)
        raise ValueError(f"device {spec}: MPS (Apple GPU) is not available here; {here}")
    return device


def parse_device(spec: str | torch.device) -> torch.device:
    """The device `spec` names ("cpu", "cuda", "cuda:1", "mps"), without checking that it
    exists here (`resolve_device` does): for devices of other machines, such as a cluster's
    workers. Raises ValueError for anything else, naming the devices that exist here."""
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as e:
        names = "cpu, cuda, cuda:N or mps"
        raise ValueError(
            f"device {str(spec)!r} is not a device name ({names}); {_devices_here()}"
        ) from e
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {spec}: samkit runs on cpu, cuda[:N] or mps; {_devices_here()}")
    return device


def _devices_here() -> str:
    return f"devices here: {', '.join(available_devices())}"


def _cpuinfo_value(text: str, keys: tuple[str, ...]) -> str | None:
    """The value of the first line of /proc/cpuinfo's `text` whose field is one of `keys`."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return None


@functools.cache
def _cpuinfo() -> str:
    """The text of /proc/cpuinfo; "" where there is none (macOS, Windows)."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.read_text() if cpuinfo.is_file() else ""


def _cpuinfo_flags(text: str) -> set[str] | None:
    """The CPU feature flags in the text of /proc/cpuinfo (x86 "flags" or ARM "Features"
    lines); None when the text has none."""
    value = _cpuinfo_value(text, ("flags", "Features"))
    return None if value is None else set(value.split())


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags from /proc/cpuinfo; None where there is none (macOS, Windows)."""
    flags = _cpuinfo_flags(_cpuinfo())
    return None if flags is None else frozenset(flags)


@functools.cache
def cpu_name() -> str:
    """This CPU's model name from /proc/cpuinfo, else what the platform module says."""
    name = _cpuinfo_value(_cpuinfo(), ("model name",))
    return name or platform.processor() or platform.machine() or "unknown CPU"


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX), which is what makes
    bf16 autocast faster than fp32 on a CPU. Read from /proc/cpuinfo where there is one, else
    from torch's own CPU feature check (`torch.backends.cpu.get_cpu_capability()` says
    "AVX512" with or without BF16, so it cannot tell)."""
    flags = cpu_flags()
    if flags is not None:
        return bool(flags & BF16_CPU_FLAGS)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@functools.cache
def cpu_int8_saturates() -> bool:
    """Whether int8 matmuls here add pairs of u8 x s8 products in 16 bits with saturation:
    x86 CPUs without VNNI (AVX2; AVX-512 before Cascade Lake). False with VNNI or AMX and off
    x86; True on an x86 CPU whose flags cannot be read."""
    if platform.machine().lower() not in X86_MACHINES:
        return False
    flags = cpu_flags()
    return flags is None or not flags & VNNI_CPU_FLAGS


def resolve_precision(precision: str, device: torch.device) -> str:
    """What `precision` means on `device`, "fp32", "bf16" or "int8": "auto" is bf16 on CUDA and
    on CPUs with native bf16 (AVX-512 BF16 / AMX), fp32 elsewhere (MPS included); the others
    are taken as given, except int8 off the CPU (torch's dynamic int8 kernels are CPU ones).
    Raises ValueError for anything else."""
    if precision not in MODEL_PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(MODEL_PRECISIONS)}; got {precision!r}"
        )
    if precision == "int8" and device.type != "cpu":
        raise ValueError(
            f"precision int8 runs on the CPU only (torch's dynamic int8 kernels), not on "
            f"{device}: use bf16 or fp32 there, or int8 on the cpu device"
        )
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16()):
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """torch.autocast to bfloat16 on `device`'s type for bf16 (outputs of matmuls and
    convolutions become bf16; the caller casts back where it needs float32), a no-op for fp32
    and for int8 (whose Linear layers are int8 themselves, the rest fp32); "auto" is resolved
    first (`resolve_precision`)."""
    if resolve_precision(precision, device) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES["bf16"])
