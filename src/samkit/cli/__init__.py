"""The `samkit` command. Thin: parse arguments, call the library, print results.

One module a command group; each has `add(sub)`, which adds its parser(s) and handler(s).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from ..interrupt import Interrupted, raise_on_signal
from . import amg, boxes, engine, evaluate, export, finetune, info, segment, serve, weights
from .arguments import Parser

EXAMPLES = """\
examples:
  samkit segment photo.jpg --model vit_b --point 420,310 --multimask --out mask.png
  samkit segment photo.jpg --model sam_vit_b_01ec64.pth --box 50,60,400,380 --out mask.png \\
      --overlay overlay.png
  samkit weights list
  samkit weights get vit_b
  samkit weights convert sam_vit_b_01ec64.pth sam_vit_b.safetensors
  samkit serve photos/ --model vit_b
  samkit info                  # versions, devices, precision, weights cache (for bug reports)

Every command defaults to the bundled samkit_default model, which runs offline; Meta's
vit_b/vit_l/vit_h weights are downloaded once with `samkit weights get NAME`.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(evaluate.route(sys.argv[1:] if argv is None else argv))
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        _check_device(args)  # before any model or data is loaded
        with raise_on_signal():
            return handler(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"samkit: error: {err}", file=sys.stderr)
        return 1
    except Interrupted as stop:  # SIGINT or SIGTERM: what is written is whole
        then = AFTER_INTERRUPT.get(args.command)
        print(f"samkit: {stop}" + (f"; {then}" if then else ""), file=sys.stderr)
        return stop.exit_code


# What to do after a command was interrupted (Interrupted.done says what it had done).
AGAIN = "run the same command again to resume"
AFTER_INTERRUPT = {
    "amg": AGAIN,
    "engine": AGAIN,
    "deid": AGAIN,
    "eval": "no results were written; run the same command again to evaluate from the start",
    **{
        f"eval-{task}": "no results were written; run the same command again to evaluate "
        "from the start"
        for task in evaluate.TASKS
    },
    "finetune": "run the same command with --resume to go on",
}


def _check_device(args: argparse.Namespace) -> None:
    """Raise ValueError, naming the devices that exist, for a --device this machine lacks.
    With --ray (joining a cluster) only the name is checked: the workers may have devices this
    machine lacks."""
    spec = getattr(args, "device", None)
    if spec is None:
        return
    from .. import devices

    if getattr(args, "ray", None):
        devices.parse_device(spec)
    else:
        devices.resolve_device(spec)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="samkit",
        description="Segment Anything: promptable segmentation, fast on CPU.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"samkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (segment, amg, evaluate, boxes, finetune, export, engine, weights, serve, info):
        group.add(sub)
    return parser
