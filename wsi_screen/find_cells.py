"""The detection half of the product: slide → AOI → tiles → owned detections → patches → outputs.

Composes the stages only; each stage's logic lives in its own module."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .classes import LEUKOCYTE, LEUKOCYTE_COLOR
from .config import Config
from .qc import summarize_qc
from .records import Detection


@dataclass(frozen=True)
class DetectSummary:
    slide: str
    out_dir: Path
    n_cells: int
    aoi_area_mm2: float
    seconds: float
    startup_seconds: float
    tile_errors: tuple[str, ...]

    def line(self) -> str:
        skipped = f", {len(self.tile_errors)} corrupt tile(s) skipped" if self.tile_errors else ""
        return (
            f"{self.slide}: {self.n_cells} leukocytes in an AOI of {self.aoi_area_mm2:.3f} mm² "
            f"in {self.seconds:.1f} s{skipped} → {self.out_dir}"
        )


def detection_features(detections: list[Detection], slide_key: str) -> list[dict]:
    from .export.geojson import cell_uuid, feature

    return [
        feature(d.polygon, LEUKOCYTE, LEUKOCYTE_COLOR, {"cell_id": i, "area_um2": d.area_um2, "score": d.score}, cell_uuid(slide_key, i))
        for i, d in enumerate(detections)
    ]


def find_cells(
    slide_path: Path,
    out_root: Path,
    config: Config,
    *,
    mpp: float | None = None,
    aoi: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    progress: bool = True,
) -> DetectSummary:
    """Detect every leukocyte of one slide and write OUT/<stem>/{detections.geojson, cells.zarr}."""
    from .aoi import resolve_aoi
    from .slide import check_slide, open_slide

    t0 = time.perf_counter()
    info = check_slide(slide_path, mpp=mpp, max_mpp=config.slide.max_mpp)  # fails fast, before torch/Dask
    with open_slide(slide_path, mpp=mpp, max_mpp=config.slide.max_mpp) as slide:
        mask = resolve_aoi(aoi, slide, config.aoi)
    from .tiling import make_grid

    grid = make_grid(info.width, info.height, info.mpp, config.tiling, mask)
    own_client = client is None
    if own_client:
        from .parallel import make_client

        client = make_client(scheduler, config.dask, workers)
    try:
        startup = time.perf_counter() - t0
        detections, errors, tile_qcs = _detect_tiles(client, grid, str(slide_path), mpp, config, progress)
        qc = summarize_qc(tile_qcs, len(detections), mask.area_mm2(info.mpp), config.qc)
        if not detections:
            warnings.warn(f"{slide_path}: no leukocytes found in the AOI", stacklevel=2)
        out_dir = Path(out_root) / Path(slide_path).stem
        _write_outputs(client, out_dir, slide_path, mpp, info, mask, detections, errors, qc, config, t0)
    finally:
        if own_client:
            from .parallel import close_client

            close_client(client)
    return DetectSummary(
        str(slide_path), out_dir, len(detections), mask.area_mm2(info.mpp), time.perf_counter() - t0, startup, tuple(errors)
    )


def _detect_tiles(client, grid, slide_path: str, mpp, config: Config, progress: bool):
    from .parallel import bounded_map, tile_task

    in_flight = 4 * max(1, len(client.scheduler_info().get("workers", {})))
    by_tile: dict[int, tuple[Detection, ...]] = {}
    errors: list[str] = []
    qc = []
    results = bounded_map(client, tile_task, grid.tiles, in_flight, slide_path=slide_path, mpp=mpp, max_mpp=config.slide.max_mpp, cfg=config.detect)
    for result in tqdm(results, total=len(grid.tiles), desc="detecting", unit="tile", disable=not progress):
        if result.error:
            warnings.warn(f"skipped corrupt tile {result.tile.index} at {result.tile.core}: {result.error}", stacklevel=2)
            errors.append(result.error)
        by_tile[result.tile.index] = result.detections
        if result.qc is not None:
            qc.append((result.tile.index, result.qc))
    # Deterministic order whatever the scheduling: tile by tile, then top-to-bottom, left-to-right.
    detections = [d for i in sorted(by_tile) for d in sorted(by_tile[i], key=lambda d: (d.y, d.x))]
    return detections, errors, [q for _, q in sorted(qc, key=lambda iq: iq[0])]


def _write_outputs(client, out_dir: Path, slide_path, mpp, info, mask, detections, errors, qc, config: Config, t0: float) -> None:
    from .export.geojson import write_features
    from .export.outdir import staged_dir
    from .export.store import create_store, detections_table, write_aoi
    from .parallel import bounded_map, patch_task

    slide_key = f"{Path(slide_path).name}:{info.width}x{info.height}"
    attrs = {
        "slide": str(slide_path),
        "slide_mpp": info.mpp,
        "mpp_source": info.mpp_source,
        "config_sha256": config.sha256(),
        "wsi_screen_version": __version__,
        "n_cells": len(detections),
    }
    with staged_dir(out_dir) as tmp:
        store = tmp / "cells.zarr"
        create_store(store, detections_table(detections), config.patches, attrs)
        write_aoi(store, mask, info.mpp)
        step = 16
        jobs = [(i, tuple((d.x, d.y) for d in detections[i : i + step])) for i in range(0, len(detections), step)]
        in_flight = 4 * max(1, len(client.scheduler_info().get("workers", {})))
        for _ in bounded_map(client, patch_task, jobs, in_flight, slide_path=str(slide_path), mpp=mpp, max_mpp=config.slide.max_mpp, store=str(store.resolve()), cfg=config.patches):
            pass
        write_features(detection_features(detections, slide_key), tmp / "detections.geojson")
        summary = {**attrs, "aoi_area_mm2": mask.area_mm2(info.mpp), "tile_errors": errors, "qc": qc, "seconds": time.perf_counter() - t0}
        (tmp / "detect.json").write_text(json.dumps(summary, indent=1))
