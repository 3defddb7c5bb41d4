"""`samkit serve`: the web annotator and its HTTP API."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="interactive web annotator and HTTP API over a folder of images",
        description="Serve the annotator page and its JSON API (OpenAPI schema at /docs). "
        "Annotations are autosaved in FOLDER/.samkit/; exports go to FOLDER/.samkit/export/.",
        epilog="examples:\n  samkit serve photos/ --model vit_b\n"
        "  samkit serve photos/ --model samkit_tiny --port 8080 --host 0.0.0.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", nargs="?", default=".", help="folder of images (default: here)")
    p.add_argument(
        "--model", default="samkit_default", help="model name or weights file (samkit_default)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("--max-pixels", type=int, default=200_000_000, help="largest image (pixels)")
    p.add_argument("--max-body-mb", type=int, default=64, help="largest request body (MiB)")
    p.add_argument("--cache-mb", type=int, default=1024, help="image embedding cache (MiB)")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .. import load

    try:
        from ..serve import create_app, run
    except ImportError as err:
        raise RuntimeError(
            f"samkit serve needs the serve extra: pip install 'samkit[serve]' ({err})"
        ) from err

    model = load(args.model, device=args.device)
    app = create_app(
        args.folder,
        model,
        model_name=args.model,
        max_body_bytes=args.max_body_mb << 20,
        max_pixels=args.max_pixels,
        cache_bytes=args.cache_mb << 20,
    )
    print(f"samkit annotator: http://{args.host}:{args.port}/  (API docs at /docs)")
    run(app, host=args.host, port=args.port)
    return 0
