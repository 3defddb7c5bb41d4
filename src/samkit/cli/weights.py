"""`samkit weights`: list, download, locate and convert model weights."""

from __future__ import annotations

import argparse
import sys


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "weights",
        help="list, download, locate and convert model weights",
        description="Official SAM weights are cached under $SAMKIT_HOME (default "
        "~/.cache/samkit). Set SAMKIT_WEIGHTS_MIRROR to fetch them from another server.",
        epilog="examples:\n  samkit weights list\n  samkit weights get vit_b\n"
        "  samkit weights path vit_b\n  samkit weights convert in.pth out.safetensors\n"
        "  samkit weights convert in.pth model.safetensors --to hf",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wsub = p.add_subparsers(dest="weights_command", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    wsub.add_parser(
        "list",
        help="known weights and whether each is cached",
        epilog="example:\n  samkit weights list",
        formatter_class=raw,
    ).set_defaults(handler=_weights_list)
    for name, handler, text in (
        ("path", _weights_path, "print the cached file's path (exit 1 if absent)"),
        ("get", _weights_get, "download into the cache, verifying sha256"),
    ):
        wp = wsub.add_parser(
            name, help=text, epilog=f"example:\n  samkit weights {name} vit_b", formatter_class=raw
        )
        wp.add_argument("name", help="weights name, e.g. vit_b")
        wp.set_defaults(handler=handler)
    cp = wsub.add_parser(
        "convert",
        help="convert .pth <-> .safetensors, and between the samkit and Hugging Face layouts",
        epilog="examples:\n  samkit weights convert sam_vit_b_01ec64.pth sam_vit_b.safetensors\n"
        "  samkit weights convert sam_vit_b_01ec64.pth model.safetensors --to hf",
        formatter_class=raw,
    )
    cp.add_argument("src", help="input weights (.pth/.pt or .safetensors), any layout")
    cp.add_argument("dst", help="output file; .safetensors or .pth")
    cp.add_argument(
        "--to",
        choices=["samkit", "hf"],
        default=None,
        help="key names to write: samkit (official/MobileSAM) or hf (transformers SamModel); "
        "default: keep the input's",
    )
    cp.set_defaults(handler=_weights_convert)


def _weights_list(args: argparse.Namespace) -> int:
    from ..checkpoints import KNOWN_WEIGHTS, cached_path

    for name, info in KNOWN_WEIGHTS.items():
        where = cached_path(name)
        state = str(where) if where else "not downloaded"
        print(f"{name:10s} {info.filename:28s} {state}")
    return 0


def _weights_path(args: argparse.Namespace) -> int:
    from ..checkpoints import KNOWN_WEIGHTS, cache_dir, cached_path

    if args.name not in KNOWN_WEIGHTS:
        raise ValueError(f"unknown weights {args.name!r}; known: {', '.join(KNOWN_WEIGHTS)}")
    where = cached_path(args.name)
    if where is None:
        print(
            f"samkit: {args.name} is not in {cache_dir() / 'weights'}; run "
            f"`samkit weights get {args.name}`",
            file=sys.stderr,
        )
        return 1
    print(where)
    return 0


def _weights_get(args: argparse.Namespace) -> int:
    from ..checkpoints import download

    print(download(args.name))
    return 0


def _weights_convert(args: argparse.Namespace) -> int:
    from ..checkpoints import convert

    convert(args.src, args.dst, layout=args.to)
    print(f"wrote {args.dst}")
    return 0
