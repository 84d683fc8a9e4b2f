"""Dask plumbing: a client (local cluster or an existing scheduler) and the worker-side tasks.

Tasks receive slide paths and tiles, never open handles: each worker process opens the slide and
loads the model once (cached per process) and returns small records; patches go straight into
their zarr regions."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import DaskConfig, DetectConfig, PatchConfig
from .errors import SlideError, WsiScreenError
from .records import Tile, TileResult
from .timing import Stages, read_stage


def make_client(scheduler: str | None, cfg: DaskConfig, workers: int | None = None):
    """A dask.distributed Client: connected to `scheduler` when given, else a LocalCluster."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=f"{cfg.connect_timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise WsiScreenError(
                f"cannot reach Dask scheduler {scheduler} within {cfg.connect_timeout_s:g} s ({exc.__class__.__name__})"
            ) from None
    import dask

    n = workers or cfg.workers or os.cpu_count() or 1
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which also fixes glibc's mmap
    # threshold: every array over 128 kB is then mapped and unmapped afresh, page faults and all,
    # and the patch stage (thousands of 400 px patches, masks, resized copies) ran 2-3x slower than
    # the same code outside Dask. Left unset (a value in the environment still wins).
    # silence_logs=False: the caller's log level decides; Dask's warnings (KilledWorker, memory) stay visible
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=cfg.threads_per_worker, processes=True, dashboard_address=":0", silence_logs=False
        )
    return Client(cluster)


@contextmanager
def dask_client(scheduler: str | None, cfg: DaskConfig, workers: int | None = None):
    """A client for the duration of one job; a local cluster we started is shut down after, and
    warmed up as it starts (`warm_workers`)."""
    client = make_client(scheduler, cfg, workers)
    if not scheduler:
        warm_workers(client)
    try:
        yield client
    finally:
        cluster = None if scheduler else client.cluster
        client.close()
        if cluster is not None:
            cluster.close()


def warm_workers(client) -> None:
    """Have every worker import what its tasks need (torch, the U-Net library, the nucleus and
    store code: seconds per process) now, all at once, rather than each on its first task (on a
    small slide one after the other); fire-and-forget tasks, so the tasks that follow queue behind."""
    from distributed import fire_and_forget

    for address in client.scheduler_info().get("workers", {}):
        fire_and_forget(client.submit(_import_task_libraries, workers=[address], allow_other_workers=False, pure=False))


def _import_task_libraries() -> None:
    import segmentation_models_pytorch  # noqa: F401  (torch, timm)

    from .export import store  # noqa: F401
    from .nucleus import measure_nucleus  # noqa: F401


def in_flight(client) -> int:
    """Tasks to keep queued: enough to keep every worker busy, few enough to bound memory."""
    return 4 * max(1, len(client.scheduler_info().get("workers", {})))


def bounded_map(client, fn: Callable, items: Iterable, in_flight: int, **kwargs) -> Iterator:
    """Results of fn(item, **kwargs) as they complete, with at most `in_flight` tasks queued so
    memory does not grow with the number of tiles."""
    from distributed import as_completed

    resources = {"CPU": 1} if declares(client, "CPU") else None  # reading/detection stay off GPU-only workers
    items = iter(items)
    pending = as_completed()
    for item in items:
        pending.add(client.submit(fn, item, pure=False, resources=resources, **kwargs))
        if pending.count() >= in_flight:
            break
    for future in pending:
        result = future.result()
        future.release()
        nxt = next(items, None)
        if nxt is not None:
            pending.add(client.submit(fn, nxt, pure=False, resources=resources, **kwargs))
        yield result


def declares(client, resource: str) -> bool:
    """True when some worker of the cluster declares `resource` (dask worker --resources NAME=n)."""
    return any(w.get("resources", {}).get(resource) for w in client.scheduler_info().get("workers", {}).values())


_thread = threading.local()


def _slide(path: str, mpp: float | None, max_mpp: float):
    """This thread's open handle of the slide. Per thread, because a reader drops and reopens its
    handle after a corrupt tile, which must never happen under another thread's read."""
    from .slide import open_slide

    cache = _thread.__dict__.setdefault("slides", {})
    key = (path, mpp, max_mpp)
    if key not in cache:
        if len(cache) >= 4:
            cache.pop(next(iter(cache))).close()
        cache[key] = open_slide(path, mpp=mpp, max_mpp=max_mpp)
    return cache[key]


@functools.lru_cache(maxsize=2)
def _segmenter(cfg: DetectConfig):
    from .detect import make_segmenter

    return make_segmenter(cfg)


def tile_task(tile: Tile, slide_path: str, mpp: float | None, max_mpp: float, cfg: DetectConfig) -> TileResult:
    """Detect one tile; a corrupt tile is reported, not fatal."""
    from .detect import detect_tile

    stages = Stages()
    try:
        return detect_tile(_slide(slide_path, mpp, max_mpp), tile, _segmenter(cfg), cfg, stages)
    except SlideError as exc:
        return TileResult(tile, (), error=str(exc), seconds=stages.items())


def patch_task(
    job: tuple[int, tuple[tuple[float, float, tuple], ...]],
    slide_path: str,
    mpp: float | None,
    max_mpp: float,
    store: str,
    cfg: PatchConfig,
    model_input_px: int = 0,
) -> tuple[int, tuple, tuple[tuple[str, float], ...]]:
    """Extract the patches of cells start.. (centre x, y and outline) and write them into the
    store's region, and with `model_input_px` the same fields resized for the classifier (from the
    slide's pixels, not from the patches: one resampling, as in training); each
    cell's nucleus is segmented on its field while that is in memory. Returns (start, nuclei, stage seconds)."""

    from .export.store import write_model_input, write_patches
    from .nucleus import measure_nucleus
    from .patches import field_mpp, patch_box, read_fields, resize_patches

    start, cells = job
    stages = Stages()
    slide = _slide(slide_path, mpp, max_mpp)
    with stages.time(read_stage("patch", slide.level_for(cfg.mpp))):
        fields = read_fields(slide, [(x, y) for x, y, _ in cells], cfg)
    with stages.time("patch resize"):
        patches = resize_patches(fields, cfg.size_px)
    with stages.time("patch write"):
        write_patches(Path(store), start, patches)
    if model_input_px:
        with stages.time("model input"):
            write_model_input(Path(store), start, resize_patches(fields, model_input_px))
    with stages.time("nucleus"):  # on the slide's own pixels: a patch's finer ones are interpolated, and cost more
        native = field_mpp(slide, cfg)
        nuclei = tuple(
            measure_nucleus(f, polygon, patch_box(x, y, slide.info.mpp, cfg), native) for f, (x, y, polygon) in zip(fields, cells)
        )
    return start, nuclei, stages.items()
