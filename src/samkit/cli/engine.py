"""`samkit deid`, `samkit engine` and `samkit stats`: the data engine at scale."""

from __future__ import annotations

import argparse
import sys

from ..scale.deid import SHIPPED
from .arguments import (
    DEVICE_HELP,
    add_model_argument,
    bounded,
    existing_dir,
    out_dir,
    out_dir_or_uri,
)


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
    p.add_argument(
        "--out",
        required=True,
        type=out_dir_or_uri,
        help="output folder or fsspec URI (s3://b/prefix)",
    )
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
        "skipped, and a rerun with other settings is refused (see --overwrite). Without --ray a "
        "local Ray is started; Ctrl-C or SIGTERM stops it cleanly. Needs the scale extra "
        "(pip install 'samkit[scale]').",
        epilog="examples:\n  samkit engine photos/ --out sa1b/ --model vit_b --deid\n"
        "  samkit engine s3://bucket/images/ --out s3://bucket/sa1b/ --ray auto "
        "--concurrency 16 --gpus-per-actor 1 --device cuda\n\n"
        "The generator's options default to SamAutomaticMaskGenerator's (Meta's), except\n"
        "--min-mask-region-area: 100 here, 0 in Python (see `samkit amg --help`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inputs(p)
    add_model_argument(p)
    p.add_argument(
        "--device",
        default=None,
        help=f"torch device in each actor: {DEVICE_HELP} (with --ray only the name is checked "
        "here: the workers may have devices this machine lacks)",
    )
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="join this Ray cluster")
    whole = bounded(int, 1)
    p.add_argument("--num-cpus", type=whole, default=2, help="CPUs of a local Ray (default 2)")
    p.add_argument("--concurrency", type=whole, default=1, help="actors (default 1)")
    p.add_argument("--batch-size", type=whole, default=1, help="images per actor call (1)")
    p.add_argument(
        "--cpus-per-actor", type=bounded(float, 0, exclusive=True), default=1.0, help="default 1"
    )
    p.add_argument("--gpus-per-actor", type=bounded(float, 0), default=0.0, help="default 0")
    p.add_argument("--threads", type=whole, default=1, help="torch threads per actor (1)")
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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="OUT holds outputs made with other settings (model, options, --deid, "
        "--write-images): delete the JSON of these inputs and make them again (without it "
        "such a rerun is refused)",
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
    config = EngineConfig(
        model=args.model,
        out=args.out,
        device=args.device,
        amg_options={name: getattr(args, name) for name, *_ in AMG_HELP},
        deid=args.deid,
        write_images=args.write_images,
        threads=args.threads,
        precision=args.precision,
    )
    options = RayOptions(
        address=args.ray,
        num_cpus=args.num_cpus,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        cpus_per_actor=args.cpus_per_actor,
        gpus_per_actor=args.gpus_per_actor,
    )
    # refuses, before Ray starts, a model that is neither a name nor a file here (unless
    # joining a cluster, whose workers may have files this machine lacks) and other settings
    summary = run_engine(
        items, config, options, progress=not args.no_progress, overwrite=args.overwrite
    )
    _report_failures(summary.failed)
    print(summary.line())
    return 1 if summary.failed else 0


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
    p.add_argument(
        "folder", type=existing_dir, help="folder of SA-1B JSON files (searched recursively)"
    )
    p.add_argument("--out", type=out_dir, help="write stats.md, stats.json and PNG plots here")
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
