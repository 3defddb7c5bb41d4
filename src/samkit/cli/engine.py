"""`samkit deid`, `samkit engine` and `samkit stats`: the data engine at scale."""

from __future__ import annotations

import argparse
import sys

from ..scale.deid import SHIPPED


def add(sub: argparse._SubParsersAction) -> None:
    _add_deid(sub)
    _add_engine(sub)
    _add_stats(sub)


def _report_failures(failed: list[tuple[str, str]]) -> None:
    for path, error in failed:
        print(f"failed: {path}: {error}", file=sys.stderr)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", help="image files, folders, .txt lists of paths, or fsspec URIs"
    )
    p.add_argument("--out", required=True, help="output folder or fsspec URI (s3://b/prefix)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# -- deid ----------------------------------------------------------------------------------
def _add_deid(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deid",
        help="blur faces and licence plates in images",
        description="Detect faces and licence plates (OpenCV's Haar cascades) and blur them. "
        "Writes each blurred image under the same relative name and <name>.deid.json with "
        "the boxes found. Resumable: images whose .deid.json exists are skipped.",
        epilog="example:\n  samkit deid photos/ --out blurred/ --detectors face,plate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inputs(p)
    p.add_argument(
        "--detectors",
        default="face,plate",
        help=f"comma-separated, from {', '.join(SHIPPED)} (default face,plate)",
    )
    p.set_defaults(handler=_deid)


def _deid(args: argparse.Namespace) -> int:
    from ..scale.deid import deid_files, parse_detectors
    from ..scale.store import collect_items

    items = collect_items(args.inputs)
    if not items:
        raise ValueError(f"no images found in {', '.join(args.inputs)}")
    detectors = parse_detectors(args.detectors)
    done, skipped, failed = deid_files(items, args.out, detectors, progress=not args.no_progress)
    _report_failures(failed)
    print(f"{done} done, {skipped} skipped (output exists), {len(failed)} failed")
    return 1 if failed else 0


# -- engine --------------------------------------------------------------------------------
def _add_engine(sub: argparse._SubParsersAction) -> None:
    from .amg import amg_options

    p = sub.add_parser(
        "engine",
        help="automatic mask generation over many images on Ray (local or a cluster)",
        description="The data engine's fully automatic stage on Ray Data: an actor pool (the "
        "model loaded once per actor) writes one SA-1B JSON per image, plus manifest.json and "
        "failures.jsonl, to a folder or fsspec URI. Resumable: images whose JSON exists are "
        "skipped. Without --ray a local Ray is started. Needs the scale extra "
        "(pip install 'samkit[scale]').",
        epilog="examples:\n  samkit engine photos/ --out sa1b/ --model vit_b --deid\n"
        "  samkit engine s3://bucket/images/ --out s3://bucket/sa1b/ --ray auto "
        "--concurrency 16 --gpus-per-actor 1 --device cuda",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inputs(p)
    p.add_argument("--model", default="vit_h", help="model name or weights file (default vit_h)")
    p.add_argument("--device", default=None, help="torch device in each actor (default cpu)")
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="join this Ray cluster")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of a local Ray (default 2)")
    p.add_argument("--concurrency", type=int, default=1, help="actors (default 1)")
    p.add_argument("--batch-size", type=int, default=1, help="images per actor call (1)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="default 1")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="default 0")
    p.add_argument("--threads", type=int, default=1, help="torch threads per actor (1)")
    p.add_argument(
        "--deid",
        nargs="?",
        const="face,plate",
        default="",
        metavar="DETECTORS",
        help="blur faces and plates first; the blurred image is written beside its JSON "
        "(default detectors face,plate)",
    )
    p.add_argument(
        "--write-images",
        action="store_true",
        help="copy each image beside its JSON (an SA-1B folder that training reads)",
    )
    for name, kind, default, text in amg_options():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=default, help=text)
    p.set_defaults(handler=_engine)


def _engine(args: argparse.Namespace) -> int:
    from .amg import AMG_HELP

    try:
        import ray  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"samkit engine needs Ray: pip install 'samkit[scale]' ({err})") from err
    from ..scale.pipeline import EngineConfig, RayOptions, run_engine
    from ..scale.store import collect_items

    items = collect_items(args.inputs)
    if not items:
        raise ValueError(f"no images found in {', '.join(args.inputs)}")
    if not args.ray:  # on a cluster the file may exist only on the workers
        _check_model(args.model)
    config = EngineConfig(
        model=args.model,
        out=args.out,
        device=args.device,
        amg_options={name: getattr(args, name) for name, *_ in AMG_HELP},
        deid=args.deid,
        write_images=args.write_images,
        threads=args.threads,
    )
    options = RayOptions(
        address=args.ray,
        num_cpus=args.num_cpus,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        cpus_per_actor=args.cpus_per_actor,
        gpus_per_actor=args.gpus_per_actor,
    )
    summary = run_engine(items, config, options, progress=not args.no_progress)
    _report_failures(summary.failed)
    print(summary.line())
    return 1 if summary.failed else 0


def _check_model(model: str) -> None:
    """Fail before Ray starts for a model that is neither a name nor a file."""
    from pathlib import Path

    from ..build import sam_model_registry
    from ..checkpoints import KNOWN_WEIGHTS

    known = model in sam_model_registry or model in KNOWN_WEIGHTS
    if not known and not Path(model).is_file():
        raise FileNotFoundError(
            f"{model!r} is neither a model name ({', '.join(sam_model_registry)}) nor an "
            "existing weights file"
        )


# -- stats ---------------------------------------------------------------------------------
def _add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="SA-1B dataset statistics: masks per image, mask sizes, concentricity, groups",
        description="Read every SA-1B JSON under DIR and report, as in the SA-1B paper: "
        "images, masks, masks per image, relative mask size and concentricity distributions, "
        "and images by region / income group when the JSON's image metadata has them. "
        "Prints the markdown table; with --out also writes stats.md, stats.json and PNGs.",
        epilog="example:\n  samkit stats sa1b/ --out sa1b_stats/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", help="folder of SA-1B JSON files (searched recursively)")
    p.add_argument("--out", help="write stats.md, stats.json and PNG plots here")
    p.add_argument(
        "--group-by",
        default="region,income_group",
        help="image metadata fields to count by (default region,income_group)",
    )
    p.set_defaults(handler=_stats)


def _stats(args: argparse.Namespace) -> int:
    from ..scale.stats import collect_stats, markdown, write_report

    keys = [k.strip() for k in args.group_by.split(",") if k.strip()]
    stats = collect_stats(args.folder, keys)
    print(markdown(stats), end="")
    if args.out:
        for path in write_report(stats, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0
