"""samkit in each precision against the official `segment_anything`, ONNX Runtime and OpenVINO,
on the same weights and photo, in one run.

    make bench-env
    OMP_NUM_THREADS=2 .venv-peer/bin/python benchmarks/bench_runtimes.py --model vit_b --no-amg
    OMP_NUM_THREADS=2 .venv-peer/bin/python benchmarks/bench_runtimes.py --model vit_b --amg-only
    ... --no-amg --emulate-avx2   # as on an AVX2-only CPU (instruction caps; see emulate_avx2)

Runners (each behind `set_image` / `predict`):
- official: Meta's `segment_anything` in fp32, the peer every ratio is against (vit_t,
  MobileSAM's encoder, is not in Meta's package: there samkit fp32 is the reference);
- samkit fp32, bf16 and int8 (`samkit.load(..., precision=...)`), and samkit's auto: the
  precision the CPU calls for and the encoder backend measured fastest here
  (`SamPredictor(..., backend="auto")`);
- onnxruntime on samkit's exported encoder + decoder, fp32 and int8 (its dynamic
  quantization, `samkit export-onnx --int8`);
- openvino on the same graphs: fp32, bf16 (only where the CPU multiplies bf16 natively) and
  the int8 graphs.
Parts: `set_image` on the photo resized to --size, a 1-point `predict` (3 masks), and the
automatic mask generator at its defaults (torch runners only: the ONNX predictors have none).
Each part warms every runner up once, then the runners take turns for --repeats rounds;
medians are reported with the ratio peer / runner. Accuracy: each runner's masks for
--points single points against samkit fp32's (mean IoU, largest predicted-IoU gap). The CPU's
model name and its bf16/AMX/VNNI flags head the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tools"))

from bench_speed import build_models, mask_iou, photo, prompt_points, time_rounds  # noqa: E402
from make_goldens import VARIANTS  # noqa: E402

from samkit.backend_choice import FILE, read_choices  # noqa: E402
from samkit.build import sam_model_registry, seeded_init_  # noqa: E402
from samkit.weights_cache import cache_dir  # noqa: E402

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")


def cpu() -> str:
    """The CPU's model name and which of CPU_FLAGS it has, from /proc/cpuinfo."""
    path = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in (path.read_text() if path.exists() else "").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", "").split()
    has = " ".join(f for f in CPU_FLAGS if f in flags) or "none of " + ", ".join(CPU_FLAGS)
    return f"{fields.get('model name', '?')} (model {fields.get('model', '?')}); flags: {has}"


AVX2_CAPS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN, in torch and in OpenVINO
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL's matmuls (torch fp32)
    "OV_CPU_MAX_ISA": "AVX2",  # OpenVINO's own kernels (it then reports no BF16)
}


def emulate_avx2() -> None:
    """Run this benchmark as on an AVX2-only CPU: the runtimes are capped by environment
    variables read at start-up (so the process starts again with them), and samkit's CPU
    flags lose AVX-512, AMX and AVX-VNNI, so that "auto" decides as it would there (fbgemm,
    torch's int8 engine, reads the CPU itself: its int8 rows are not capped)."""
    from samkit import devices

    if any(os.environ.get(k) != v for k, v in AVX2_CAPS.items()):
        os.environ.update(AVX2_CAPS)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    flags = devices.cpu_flags() or frozenset()
    capped = frozenset(f for f in flags if not f.startswith(("avx512", "amx", "avx_vnni")))
    devices.cpu_flags = lambda: capped  # type: ignore[assignment]
    devices.cpu_supports_bf16.cache_clear()
    devices.cpu_int8_saturates.cache_clear()


def generator(model: Any, image: np.ndarray, backend: str = "torch") -> Callable[[], Any]:
    from samkit import SamAutomaticMaskGenerator

    made = SamAutomaticMaskGenerator(model, backend=backend)  # an exported encoder: once
    return lambda: made.generate(image)


def runners(args: argparse.Namespace, image: np.ndarray, folder: Path) -> dict[str, Any]:
    """name -> predictor (set_image / predict), plus name -> AMG call for the torch ones."""
    import segment_anything as official

    import samkit
    from samkit import devices
    from samkit.checkpoints import write_safetensors
    from samkit.export import OnnxPredictor, export_decoder, export_encoder, quantize_dynamic_int8

    found: dict[str, Any] = {}
    amg: dict[str, Callable[[], Any]] = {}
    if args.model in VARIANTS or Path(args.model).is_file():
        ours, theirs = build_models(args.model)
        found["official"] = official.SamPredictor(theirs)
        amg["official"] = lambda: official.SamAutomaticMaskGenerator(theirs).generate(image)
    else:  # vit_t (MobileSAM): not in Meta's package; samkit fp32 is the reference
        ours = seeded_init_(sam_model_registry[args.model](), seed=0).eval()
    weights = folder / "weights.safetensors"  # the same weights for every samkit precision
    write_safetensors(ours.state_dict(), weights)
    skip = set(args.skip)
    for precision in ("fp32", "bf16", "int8"):
        if f"samkit {precision}" in skip:
            continue
        model = samkit.load(weights, precision=precision)
        found[f"samkit {precision}"] = samkit.SamPredictor(model)
        amg[f"samkit {precision}"] = generator(model, image)
    # samkit's auto: the precision the CPU calls for and the encoder backend that measures
    # fastest here (`samkit.backend_choice`, measured by the first predictor, then remembered)
    model = samkit.load(weights, precision="auto")
    predictor = samkit.SamPredictor(model, backend="auto")
    name = f"samkit auto ({model.precision}, {predictor.backend} encoder)"
    found[name] = predictor
    amg[name] = generator(model, image, backend="auto")
    if args.amg_only:  # the ONNX predictors have no AMG, and their sessions hold GBs
        return {"predictors": found, "amg": amg}
    encoder = export_encoder(ours, folder / "encoder.onnx")
    decoder = export_decoder(ours, folder / "decoder.onnx")
    int8 = [quantize_dynamic_int8(g, folder / f"{g.stem}.int8.onnx") for g in (encoder, decoder)]
    threads = torch.get_num_threads()
    ov = {"runtime": "openvino", "threads": threads}
    sessions: dict[str, Callable[[], Any]] = {
        "onnxruntime fp32": lambda: OnnxPredictor(encoder, decoder, threads=threads),
        "onnxruntime int8": lambda: OnnxPredictor(*int8, threads=threads),
        "openvino fp32": lambda: OnnxPredictor(encoder, decoder, precision="fp32", **ov),
        "openvino bf16": lambda: OnnxPredictor(encoder, decoder, precision="bf16", **ov),
        "openvino int8": lambda: OnnxPredictor(*int8, precision="fp32", **ov),
    }
    if not devices.cpu_supports_bf16():
        skip.add("openvino bf16")
    found.update({name: make() for name, make in sessions.items() if name not in skip})
    return {"predictors": found, "amg": amg}


def accuracy(predictors: dict[str, Any], image: np.ndarray, n: int) -> dict[str, dict]:
    """Each runner's masks for n single points against samkit fp32's."""
    points = prompt_points(image, n)
    answers = {}
    for name, predictor in predictors.items():
        predictor.set_image(image)
        answers[name] = [
            predictor.predict(point_coords=p[None], point_labels=np.array([1]))[:2] for p in points
        ]
    reference = answers["samkit fp32"]
    out = {}
    for name, got in answers.items():
        ious = [
            mask_iou(a, b)
            for (ga, _), (ra, _) in zip(got, reference, strict=True)
            for a, b in zip(ga, ra, strict=True)
        ]
        gaps = [
            float(np.abs(gs - rs).max()) for (_, gs), (_, rs) in zip(got, reference, strict=True)
        ]
        out[name] = {
            "mean_iou": round(float(np.mean(ious)), 4),
            "max_iou_score_gap": round(max(gaps), 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", help="variant name (seeded weights) or file")
    parser.add_argument("--image", default="astronaut", choices=["astronaut", "coffee", "chelsea"])
    parser.add_argument("--size", type=int, default=1024, help="longest image side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--points", type=int, default=8, help="single points for accuracy")
    amg = parser.add_mutually_exclusive_group()
    amg.add_argument("--no-amg", action="store_true", help="skip the AMG part")
    amg.add_argument(
        "--amg-only",
        action="store_true",
        help="only the AMG part, with the torch runners (vit_b with every runner and AMG in "
        "one process peaked above 22 GB)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--skip",
        type=lambda text: [name.strip() for name in text.split(",")],
        default=[],
        metavar="NAMES",
        help='runners to leave out, comma-separated, as the table names them ("samkit int8, '
        'onnxruntime int8"); each ONNX session holds GBs for vit_b',
    )
    parser.add_argument(
        "--emulate-avx2",
        action="store_true",
        help="cap every runtime at AVX2 (torch, oneDNN, MKL, OpenVINO) and hide the CPU's "
        "AVX-512/AMX flags from samkit: an AVX2-only CPU's instructions, not its timings",
    )
    args = parser.parse_args()
    if args.emulate_avx2:
        emulate_avx2()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    image = photo(args.image, args.size)
    point = prompt_points(image, 1)
    with tempfile.TemporaryDirectory() as tmp:
        # a fresh samkit cache: backend "auto" measures in this run, and the report shows it
        os.environ["SAMKIT_HOME"] = str(Path(tmp) / "home")
        built = runners(args, image, Path(tmp))
        predictors = built["predictors"]
        report: dict[str, Any] = {
            "cpu": cpu() + (" (capped at AVX2)" if args.emulate_avx2 else ""),
            "model": args.model,
            "image": [args.image, *image.shape[:2]],
            "threads": args.threads,
            "torch": torch.__version__,
        }

        def set_image(p: Any) -> Callable[[], Any]:
            return lambda: p.set_image(image)

        def predict(p: Any) -> Callable[[], Any]:
            return lambda: p.predict(point_coords=point, point_labels=np.array([1]))

        parts: dict[str, dict[str, Callable[[], Any]]] = {}
        if not args.amg_only:
            parts["set_image"] = {n: set_image(p) for n, p in predictors.items()}
            for p in predictors.values():
                p.set_image(image)
            parts["predict"] = {n: predict(p) for n, p in predictors.items()}
        if not args.no_amg:
            parts["amg"] = built["amg"]
        peer = "official" if "official" in predictors else "samkit fp32"
        report["peer"] = peer
        for part, fns in parts.items():
            median, _, _ = time_rounds(fns, args.repeats)
            report[part] = {
                name: {"s": round(t, 4), "speedup": round(median[peer] / t, 2)}
                for name, t in median.items()
            }
        report["accuracy_vs_samkit_fp32"] = accuracy(predictors, image, args.points)
        report["backend_choice"] = list(read_choices(cache_dir() / FILE).values())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
