"""Devices and precisions: what this machine has, the errors for what it lacks, and autocast.

These run on whatever machine runs the tests; the expectations are read from the machine
itself (torch's CUDA and MPS checks, /proc/cpuinfo), so they hold on a CPU box and a GPU box.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from samkit import SamPredictor
from samkit.devices import (
    _cpuinfo_flags,
    autocast,
    available_devices,
    cpu_supports_bf16,
    default_device,
    resolve_device,
    resolve_precision,
)
from samkit.modeling import Sam

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = torch.backends.mps.is_available()


def test_available_devices_list_what_torch_sees() -> None:
    found = available_devices()
    assert found[0] == "cpu"
    assert [d for d in found if d.startswith("cuda")] == [
        f"cuda:{i}" for i in range(torch.cuda.device_count() if HAS_CUDA else 0)
    ]
    assert ("mps" in found) == HAS_MPS


def test_default_device_is_cuda_when_there_is_one_else_cpu() -> None:
    assert default_device().type == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device(None) == default_device()


def test_cpu_resolves_and_tensors_can_go_there() -> None:
    for spec in ("cpu", torch.device("cpu")):
        device = resolve_device(spec)
        assert device == torch.device("cpu")
        assert torch.zeros(1, device=device).device == device


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device")
def test_cuda_without_a_cuda_device_names_the_devices_here() -> None:
    here = ", ".join(available_devices())
    for spec in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match=f"no CUDA device.*devices here: {re.escape(here)}"):
            resolve_device(spec)


def test_a_cuda_index_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="cuda:5") as raised:
        resolve_device("cuda:5")
    if HAS_CUDA and torch.cuda.device_count() <= 5:
        assert "only cuda:0" in str(raised.value)


@pytest.mark.skipif(HAS_MPS, reason="this machine has MPS")
def test_mps_without_mps_is_refused() -> None:
    with pytest.raises(ValueError, match=r"MPS.*not available.*devices here: cpu"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "", "xla", "meta"])
def test_unknown_or_unsupported_names_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="devices here: cpu"):
        resolve_device(spec)


def test_cpuinfo_flags_are_read_from_x86_and_arm_lines() -> None:
    x86 = "processor\t: 0\nflags\t\t: fpu sse avx512_bf16 amx_tile\nbugs\t\t: spectre\n"
    assert _cpuinfo_flags(x86) == {"fpu", "sse", "avx512_bf16", "amx_tile"}
    assert _cpuinfo_flags("processor : 0\nFeatures : fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert _cpuinfo_flags("processor : 0\n") is None


def test_auto_precision_follows_the_device_and_the_cpu_flags() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set()
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.partition(":")[2].split())
                break
        assert cpu_supports_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})
    expected = "bf16" if cpu_supports_bf16() else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    for device in ("cpu", "cuda", "mps"):
        for given in ("fp32", "bf16"):
            assert resolve_precision(given, torch.device(device)) == given


@pytest.mark.parametrize("bad", ["fp16", "BF16", "float32", ""])
def test_unknown_precisions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_precision(bad, torch.device("cpu"))


def test_autocast_runs_matmuls_in_the_chosen_precision() -> None:
    cpu = torch.device("cpu")
    a = torch.randn(4, 4)
    with autocast(cpu, "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert (a @ a).dtype == torch.float32
    with autocast(cpu, "auto"):
        assert (a @ a).dtype == (torch.bfloat16 if cpu_supports_bf16() else torch.float32)
    with pytest.raises(ValueError, match="precision"):
        autocast(cpu, "half")


def test_the_predictor_autocasts_through_devices(tiny_sam: Sam) -> None:
    a = torch.randn(4, 4)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        with SamPredictor(tiny_sam, precision=precision).autocast():
            assert (a @ a).dtype == dtype
