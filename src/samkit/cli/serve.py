"""`samkit serve`: the web annotator and its HTTP API."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import (
    DEVICE_HELP,
    add_max_pixels_argument,
    add_model_argument,
    bounded,
    existing_dir,
)

if TYPE_CHECKING:
    from ..serve.importer import Document


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="interactive web annotator and HTTP API over a folder of images",
        description="Serve the annotator page and its JSON API (OpenAPI schema at /openapi.json). "
        "Annotations are autosaved in FOLDER/.samkit/; exports go to FOLDER/.samkit/export/.",
        epilog="examples:\n  samkit serve photos/ --model vit_b\n"
        "  samkit serve photos/ --model samkit_tiny --port 8080 --host 0.0.0.0\n"
        "  samkit serve photos/ --import instances.json   # continue a COCO dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "folder",
        nargs="?",
        default=".",
        type=existing_dir,
        help="folder of images (default: here)",
    )
    add_model_argument(p)
    p.add_argument("--port", type=bounded(int, 1, 65535), default=8000, help="port (default 8000)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name browsers may reach the server by, besides 127.0.0.1, localhost, "
        "[::1] and --host (repeatable; others get 421, against DNS rebinding)",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="NAMES",
        help='the label set, comma-separated ("cat,dog,car"): keys 1-9 choose them, COCO export '
        "numbers them 1.. in this order; replaces the set stored in FOLDER/.samkit/labels.json",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="FILE",
        help="import a COCO instances or SA-1B image JSON before serving: images matched by "
        "file name, masks an image has already skipped, the rest reported (repeatable)",
    )
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    add_max_pixels_argument(p)
    p.add_argument(
        "--max-body-mb", type=bounded(int, 1), default=64, help="largest request body (MiB)"
    )
    p.add_argument(
        "--cache-mb",
        type=bounded(int, 0),
        default=1024,
        help="image embeddings kept, with the decoder's per-image tensors (MiB)",
    )
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .. import load

    try:
        from ..serve import create_app, run
        from ..serve.importer import import_document
        from ..serve.labelset import Progress, parse_labels
    except ImportError as err:
        raise RuntimeError(
            f"samkit serve needs the serve extra: pip install 'samkit[serve]' ({err})"
        ) from err

    labels = None if args.labels is None else parse_labels(args.labels)  # before the model loads
    imports = [_read_import(path) for path in args.imports]  # likewise
    _check_port(args.host, args.port)
    model = load(args.model, device=args.device, precision=args.precision)
    app = create_app(
        args.folder,
        model,
        model_name=args.model,
        max_body_bytes=args.max_body_mb << 20,
        max_pixels=args.max_pixels,
        cache_bytes=args.cache_mb << 20,
        allowed_hosts=[args.host, *args.allow_host],
        labels=labels,
    )
    project = app.state.project
    for path, doc in zip(args.imports, imports, strict=True):  # after --labels replaced the set
        report = import_document(project, Progress(project.state_dir), doc)
        print("\n".join(report.lines(path)))
    print(f"samkit annotator: http://{args.host}:{args.port}/  (API schema at /openapi.json)")
    run(app, host=args.host, port=args.port)
    return 0


def _read_import(path: str) -> Document:
    """The parsed document of `--import path` (`importer.parse_document`); ValueError for a
    missing file or one that is not COCO or SA-1B JSON."""
    from ..serve.importer import parse_document

    if not Path(path).is_file():
        raise ValueError(f"--import {path}: no such file")
    return parse_document(Path(path).read_bytes(), f"--import {path}")


def _check_port(host: str, port: int) -> None:
    """Raise ValueError unless this process can listen on host:port now (the port is let go
    at once; the server binds it again moments later)."""
    import os
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except OSError as err:
        raise ValueError(f"--host {host}: no such address ({err.strerror or err})") from None
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as err:
        why = os.strerror(err.errno) if err.errno else str(err)
        raise ValueError(
            f"cannot listen on {host}:{port} ({why}): is another server using the port? "
            "Pick another with --port"
        ) from None
