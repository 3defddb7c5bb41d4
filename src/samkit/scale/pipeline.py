"""`samkit engine`: the fully automatic stage of the data engine on Ray Data.

The driver lists the inputs, drops those whose output exists (resume), and streams the rest
through `map_batches` over a pool of actors; each actor loads the model once and, per image,
reads it, optionally de-identifies it, runs the automatic mask generator and writes the SA-1B
JSON (and the image, when asked or blurred) atomically. The JSON is written last, so its
presence means the image is done. Failures come back to the driver, which records them in
`failures.jsonl` and goes on; `manifest.json` counts inputs, outputs and failures at the end.

Without a Ray address the driver starts a local Ray with `num_cpus` CPUs; with one it joins
that cluster, and every worker must reach the inputs and the output (shared disk or URIs).

The settings that decide the outputs (the model's weights, the generator's options, de-id,
whether images are written) are recorded in `.samkit_settings.json` before any work, and a
rerun with other settings is refused unless `overwrite` (see `samkit.runner.check_settings`).
SIGINT or SIGTERM stops the job: Ray is shut down, half-written files are removed, and
`Interrupted` says how many images are done.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..interrupt import SIGNALS, Interrupted, images, raise_on_signal
from ..runner import SETTINGS, Summary
from .store import EngineItem, OutputStore, read_bytes

FAILURES = "failures.jsonl"
MANIFEST = "manifest.json"
MAX_BLOCKS = 10_000


@dataclass(frozen=True)
class EngineConfig:
    """What each actor builds: the model, the generator's options, de-identification."""

    model: str
    out: str
    device: str | None = None
    amg_options: dict[str, Any] = field(default_factory=dict)
    deid: str = ""  # comma-separated shipped detectors ("face,plate"); empty: no de-id
    write_images: bool = False  # also write each image beside its JSON (always with deid)
    threads: int = 1  # torch threads per actor
    precision: str = "fp32"  # `samkit.load`'s, resolved ("auto") on each actor's device

    def __post_init__(self) -> None:
        """Check the precision before Ray starts: a name `load` takes, and int8 on the CPU
        (the workers load onto the CPU when device is None)."""
        from ..devices import parse_device, resolve_precision

        resolve_precision(self.precision, parse_device(self.device or "cpu"))


@dataclass
class EngineSummary(Summary):
    """`samkit amg`'s summary, plus the number of inputs and of de-identified boxes."""

    inputs: int = 0
    detections: int = 0


class ImageWorker:
    """Everything one image needs, built once: generator, detectors, output store."""

    def __init__(self, config: EngineConfig) -> None:
        import torch

        from .. import SamAutomaticMaskGenerator, load
        from .deid import parse_detectors

        torch.set_num_threads(config.threads)
        self.config = config
        self.store = OutputStore(config.out)
        self.detectors = parse_detectors(config.deid) if config.deid else []
        model = load(config.model, device=config.device, precision=config.precision)
        self.generator = SamAutomaticMaskGenerator(
            model, output_mode="coco_rle", **config.amg_options
        )

    def process(self, item: EngineItem) -> dict[str, Any]:
        """Run one image; returns a result row (never raises for a bad image)."""
        start = time.perf_counter()
        row = {"key": item.key, "uri": item.uri, "error": "", "masks": 0, "detections": 0}
        try:
            row.update(self._process(item))
        except Exception as err:  # one bad image must not stop the job
            row["error"] = f"{type(err).__name__}: {err}"
        row["seconds"] = time.perf_counter() - start
        return row

    def _process(self, item: EngineItem) -> dict[str, int]:
        from ..io import load_image
        from ..io.sa1b import write_sa1b
        from .deid import Detection, deidentify, detections_json, encode_image

        raw = read_bytes(item.uri)
        image = load_image(raw, name=item.uri)
        name = item.uri.rsplit("/", 1)[-1]
        info: dict[str, Any] = {"image_id": item.image_id, "width": image.shape[1]}
        info.update(height=image.shape[0], file_name=name)
        found: list[Detection] = []
        if self.detectors:
            image, found = deidentify(image, self.detectors)
            data, suffix = encode_image(image, Path(name).suffix)
            info["file_name"] = Path(name).stem + suffix
            info["deid"] = detections_json(found)
            self.store.write_bytes(_sibling(item.key, suffix), data)
        elif self.config.write_images:
            self.store.write_bytes(_sibling(item.key, Path(name).suffix), raw)
        records = self.generator.generate(image)
        self.store.write_file(
            item.key + ".json", lambda path: write_sa1b(path, records, image=info)
        )
        return {"masks": len(records), "detections": len(found)}


def _sibling(key: str, suffix: str) -> str:
    return key + suffix.lower()


class _Actor:
    """The Ray Data callable class: one ImageWorker per actor process."""

    def __init__(self, config: EngineConfig) -> None:
        self.worker = ImageWorker(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [
            EngineItem(str(k), str(u), int(i))
            for k, u, i in zip(batch["key"], batch["uri"], batch["image_id"], strict=True)
        ]
        rows = [self.worker.process(item) for item in items]
        return {name: np.array([r[name] for r in rows]) for name in rows[0]} if rows else {}


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray; "auto" or host:port: join a cluster
    num_cpus: int = 2  # CPUs of the local Ray (ignored when joining a cluster)
    concurrency: int = 1  # actors in the pool
    batch_size: int = 1  # images per call of an actor
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


def run_engine(
    items: Sequence[EngineItem],
    config: EngineConfig,
    ray_options: RayOptions,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> EngineSummary:
    """Process every item without an output, write failures and the manifest; see module doc.
    Refuses (SettingsMismatch) an output folder whose outputs were made with other settings,
    unless `overwrite`: then the JSON of every item, the manifest and failures.jsonl go first.
    SIGINT or SIGTERM raises `Interrupted` once Ray is shut down (see the module doc)."""
    from tqdm import tqdm

    from ..runner import _remove_stale_temporaries

    if any(item.key == Path(MANIFEST).stem for item in items):
        raise ValueError(
            f"an input's output would be {MANIFEST}, the engine's own manifest: rename that image"
        )
    start = time.perf_counter()
    settings = engine_settings(config, local=ray_options.address is None)  # checks the model
    store = OutputStore(config.out)
    if not store.remote:
        Path(store.root).mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(Path(store.root))
    _prepare_output(store, config.out, settings, items, overwrite=overwrite)
    done = store.existing(".json")
    todo = [item for item in items if item.key not in done]
    summary = EngineSummary(inputs=len(items), skipped=len(items) - len(todo))
    store.remove(FAILURES)  # this run's failures only: earlier ones are retried below
    interrupted: Interrupted | None = None
    if todo:
        bar = tqdm(total=len(todo), unit="img", disable=not progress, dynamic_ncols=True)
        try:
            with _ray(ray_options), raise_on_signal():
                for batch in _dataset(todo, config, ray_options).iter_batches(batch_size=None):
                    for i in range(len(batch["key"])):
                        _collect(summary, store, {k: v[i] for k, v in batch.items()})
                    bar.update(len(batch["key"]))
                    bar.set_postfix(masks=summary.masks, failed=len(summary.failed))
        except Interrupted as stop:  # Ray is shut down: no actor writes any more
            interrupted = stop
            if not store.remote:
                _remove_stale_temporaries(Path(store.root))
        bar.close()
    summary.seconds = time.perf_counter() - start
    outputs = len(store.existing(".json") & {item.key for item in items})
    manifest = {
        "inputs": summary.inputs,
        "outputs": outputs,
        "failures": len(summary.failed),
        "missing": summary.inputs - outputs - len(summary.failed),
        "this_run": {
            "done": summary.done,
            "skipped": summary.skipped,
            "masks": summary.masks,
            "detections": summary.detections,
            "seconds": round(summary.seconds, 3),
        },
        "model": config.model,
        "precision": config.precision,
        "amg_options": config.amg_options,
        "deid": config.deid,
        "ray": asdict(ray_options),
    }
    store.write_bytes(MANIFEST, json.dumps(manifest, indent=1).encode())
    if interrupted is not None:
        left = summary.inputs - outputs
        raise Interrupted(interrupted.signum, f"{images(outputs)} done, {left} left")
    return summary


def engine_settings(config: EngineConfig, *, local: bool = True) -> dict[str, Any]:
    """What decides the outputs the engine writes: the model's weights, the generator's
    options, de-identification and whether images are written. `local`: the model, when it
    is a path, must be a file here (not only on a cluster's workers)."""
    from ..loading import model_identity
    from ..runner import generator_settings

    identity = model_identity(config.model, local=local)
    chosen = {
        "deid": config.deid,
        "write_images": config.write_images,
        "precision": config.precision,
    }
    return {"command": "engine", **identity, **chosen, **generator_settings(config.amg_options)}


def _prepare_output(
    store: OutputStore,
    where: str,
    settings: dict[str, Any],
    items: Sequence[EngineItem],
    *,
    overwrite: bool,
) -> None:
    """`runner.prepare_output` for the engine's store: refuse other settings' outputs or, with
    `overwrite`, delete each item's JSON, the manifest and failures.jsonl (the images beside
    are rewritten with the JSON); then record `settings`."""
    from ..runner import check_settings, settings_text

    def holds_outputs() -> bool:
        return bool(store.existing(".json") - {Path(MANIFEST).stem})

    if not overwrite:
        recorded = store.read_bytes(SETTINGS).decode() if store.exists(SETTINGS) else None
        check_settings(where, recorded, settings, holds_outputs)
    else:
        for item in items:
            store.remove(item.key + ".json")
        store.remove(MANIFEST)
        store.remove(FAILURES)
    store.write_bytes(SETTINGS, settings_text(settings).encode())


def _collect(summary: EngineSummary, store: OutputStore, row: dict[str, Any]) -> None:
    if row["error"]:
        summary.failed.append((str(row["uri"]), str(row["error"])))
        store.append_line(FAILURES, json.dumps({"path": str(row["uri"]), "error": row["error"]}))
        return
    summary.done += 1
    summary.masks += int(row["masks"])
    summary.detections += int(row["detections"])


def _dataset(items: Sequence[EngineItem], config: EngineConfig, options: RayOptions) -> Any:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver's own bar counts images
    context.verbose_stats_logs = False
    # Small blocks (one item each, up to MAX_BLOCKS) spread the items over the actors from the
    # start and bring results (and progress) back soon.
    blocks = min(len(items), MAX_BLOCKS)
    ds = ray.data.from_items([asdict(item) for item in items], override_num_blocks=blocks)
    return ds.map_batches(
        _Actor,
        fn_constructor_args=(config,),
        batch_size=options.batch_size,
        compute=ray.data.ActorPoolStrategy(size=options.concurrency),
        num_cpus=options.cpus_per_actor,
        num_gpus=options.gpus_per_actor,
    )


class _ray:
    """Join a running Ray (already initialised, or at `address`) or start a local one; shut
    down on exit only what this started."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.started = False
        self.handlers: dict[int, Any] = {}

    def __enter__(self) -> None:
        import logging

        import ray

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset INFO lines
        if ray.is_initialized():
            return
        quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
        # ray.init makes SIGTERM exit at once (sys.exit); the handlers come back on exit
        if threading.current_thread() is threading.main_thread():
            self.handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
        if self.options.address:
            ray.init(address=self.options.address, **quiet)  # type: ignore[arg-type]
        else:
            ray.init(num_cpus=self.options.num_cpus, include_dashboard=False, **quiet)  # type: ignore[arg-type]
        self.started = True

    def __exit__(self, *exc: object) -> None:
        import ray

        if self.started:
            ray.shutdown()
            for sig, handler in self.handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
