"""The `samkit` command. Thin: parse arguments, call the library, print results.

One module a command group; each has `add(sub)`, which adds its parser(s) and handler(s).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from . import amg, engine, evaluate, export, finetune, segment, serve, weights

EXAMPLES = """\
examples:
  samkit segment photo.jpg --model vit_b --point 420,310 --multimask --out mask.png
  samkit segment photo.jpg --model sam_vit_b_01ec64.pth --box 50,60,400,380 --out mask.png \\
      --overlay overlay.png
  samkit weights list
  samkit weights get vit_b
  samkit weights convert sam_vit_b_01ec64.pth sam_vit_b.safetensors
  samkit serve photos/ --model vit_b
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"samkit: error: {err}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samkit",
        description="Segment Anything: promptable segmentation, fast on CPU.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"samkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (segment, amg, evaluate, finetune, export, engine, weights, serve):
        group.add(sub)
    return parser
