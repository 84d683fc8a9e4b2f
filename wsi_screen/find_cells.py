"""The detection half of the product: slide → AOI → tiles → owned detections → patches → outputs.

Composes the stages only; each stage's logic lives in its own module."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import __version__
from .config import Config
from .qc import summarize_qc
from .records import AoiMask, Detection, Nucleus, SlideInfo, SlideQc
from .timing import Stages

PATCHES_PER_TASK = 16
ALIGN_DETECTION_PX = 32  # tile origins on multiples of the U-Net's largest stride (2**5)


@dataclass(frozen=True)
class SlideCells:
    """Everything the detection half learned about one slide."""

    slide_path: Path
    mpp_override: float | None
    info: SlideInfo
    aoi: AoiMask
    detections: tuple[Detection, ...]
    tile_errors: tuple[str, ...]
    qc: SlideQc
    detector_precision: str | None = None  # what the tiles' U-Nets ran in, '/'-joined where workers differed

    @property
    def aoi_area_mm2(self) -> float:
        return self.aoi.area_mm2(self.info.mpp)

    @property
    def slide_key(self) -> str:
        """Stable per-slide key for cell UUIDs."""
        return f"{self.slide_path.name}:{self.info.width}x{self.info.height}"


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


def prepare(slide_path: Path, config: Config, mpp: float | None, aoi: str) -> tuple[SlideInfo, AoiMask]:
    """Validate the slide and find its AOI: fast, before torch or Dask start."""
    from .aoi import resolve_aoi
    from .slide import check_slide, open_slide

    info = check_slide(slide_path, mpp=mpp, max_mpp=config.slide.max_mpp)
    with open_slide(slide_path, mpp=mpp, max_mpp=config.slide.max_mpp) as slide:
        return info, resolve_aoi(aoi, slide, config.aoi)


def find_cells(
    client,
    slide_path: Path,
    info: SlideInfo,
    mask: AoiMask,
    config: Config,
    mpp: float | None,
    progress: bool = True,
    stages: Stages | None = None,
) -> SlideCells:
    """Detect every leukocyte of the AOI, exactly once, in a deterministic order; the tiles' stage
    seconds are added to `stages` when given."""
    from .detect import detector_mpp
    from .parallel import bounded_map, in_flight, tile_task
    from .tiling import make_grid

    align = max(1, round(ALIGN_DETECTION_PX * detector_mpp(config.detect) / info.mpp))
    grid = make_grid(info.width, info.height, info.mpp, config.tiling, mask, align)
    by_tile: dict[int, tuple[Detection, ...]] = {}
    errors, qcs, precisions = [], {}, set()
    reading = {"slide_path": str(slide_path), "mpp": mpp, "max_mpp": config.slide.max_mpp}
    results = bounded_map(client, tile_task, grid.tiles, in_flight(client), **reading, cfg=config.detect)
    for result in tqdm(results, total=len(grid.tiles), desc="detecting", unit="tile", disable=not progress):
        if result.error:
            warnings.warn(f"skipped corrupt tile {result.tile.index} at {result.tile.core}: {result.error}", stacklevel=2)
            errors.append(result.error)
        by_tile[result.tile.index] = result.detections
        if stages is not None:
            stages.add(result.seconds)
        qcs[result.tile.index] = result.qc
        precisions.add(result.precision)
    # Deterministic order whatever the scheduling: tile by tile, then top-to-bottom, left-to-right.
    # Tiles overlapping the AOI edge also see cells outside it: keep those whose centre is inside.
    detections = tuple(d for i in sorted(by_tile) for d in sorted(by_tile[i], key=lambda d: (d.y, d.x)) if mask.contains(d.x, d.y))
    if not detections:
        warnings.warn(f"{slide_path}: no leukocytes found in the AOI", stacklevel=2)
    qc = summarize_qc([q for i in sorted(qcs) for q in qcs[i]], len(detections), mask.area_mm2(info.mpp), config.qc)
    precision = "/".join(sorted(p for p in precisions if p)) or None
    return SlideCells(Path(slide_path), mpp, info, mask, detections, tuple(errors), qc, precision)


def overview(cells: SlideCells, max_mpp: float, longest_px: int = 1600) -> tuple[np.ndarray, float]:
    """The whole slide, at most `longest_px` on its longer side, and level-0 px per overview px."""
    from .slide import open_slide

    mpp = max(cells.info.width, cells.info.height) * cells.info.mpp / longest_px
    with open_slide(cells.slide_path, mpp=cells.mpp_override, max_mpp=max_mpp) as slide:
        return slide.thumbnail(mpp), mpp / cells.info.mpp


def write_store(
    client, store: Path, cells: SlideCells, config: Config, model_input_px: int = 0, stages: Stages | None = None
) -> tuple[Nucleus, ...]:
    """cells.zarr: the cell table (with each nucleus's area and share of the cell), the AOI, and
    every cell's patch (extracted in parallel); with `model_input_px`, every patch also at the
    classifier's input size (see export.store). Returns the nuclei in cell order; the patch
    tasks' stage seconds are added to `stages` when given."""
    from .export.store import create_store, detections_table, write_aoi, write_columns
    from .parallel import bounded_map, in_flight, patch_task

    attrs = {
        "slide": str(cells.slide_path),
        "slide_mpp": cells.info.mpp,
        "mpp_source": cells.info.mpp_source,
        "config_sha256": config.sha256(),
        "wsi_screen_version": __version__,
        "n_cells": len(cells.detections),
    }
    create_store(store, detections_table(list(cells.detections)), config.patches, attrs, model_input_px, PATCHES_PER_TASK)
    write_aoi(store, cells.aoi, cells.info.mpp)
    d = cells.detections
    jobs = [(i, tuple((c.x, c.y, c.polygon) for c in d[i : i + PATCHES_PER_TASK])) for i in range(0, len(d), PATCHES_PER_TASK)]
    nuclei: list = [None] * len(d)
    for start, found, seconds in bounded_map(
        client,
        patch_task,
        jobs,
        in_flight(client),
        slide_path=str(cells.slide_path),
        mpp=cells.mpp_override,
        max_mpp=config.slide.max_mpp,
        store=str(store.resolve()),
        cfg=config.patches,
        model_input_px=model_input_px,
    ):
        nuclei[start : start + len(found)] = found
        if stages is not None:
            stages.add(seconds)
    write_columns(
        store,
        {
            "nucleus_area_um2": np.asarray([n.area_um2 for n in nuclei], np.float32),
            "nucleus_cell_ratio": np.asarray([n.cell_fraction for n in nuclei], np.float32),
        },
    )
    return tuple(nuclei)


def detect_slide(
    slide_path: Path,
    out_root: Path,
    config: Config,
    *,
    mpp: float | None = None,
    aoi: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> DetectSummary:
    """`wsi-screen detect`: OUT/<stem>/{detections.geojson, cells.zarr, detect.json}, all or nothing."""
    from .export.geojson import cell_features, write_features
    from .export.outdir import staged_dir
    from .parallel import dask_client

    t0 = time.perf_counter()
    info, mask = prepare(slide_path, config, mpp, aoi)
    out_dir = Path(out_root) / Path(slide_path).stem
    with dask_client(scheduler, config.dask, workers) as client:
        startup = time.perf_counter() - t0
        cells = find_cells(client, slide_path, info, mask, config, mpp, progress)
        with staged_dir(out_dir) as tmp:
            nuclei = write_store(client, tmp / "cells.zarr", cells, config)
            write_features(cell_features(cells.detections, cells.slide_key, nuclei=nuclei), tmp / "detections.geojson")
            summary = {
                "slide": str(slide_path),
                "n_cells": len(cells.detections),
                "aoi_area_mm2": cells.aoi_area_mm2,
                "tile_errors": list(cells.tile_errors),
                "qc": asdict(cells.qc),
                "config_sha256": config.sha256(),
                "seconds": time.perf_counter() - t0,
            }
            (tmp / "detect.json").write_text(json.dumps(summary, indent=1))
    seconds = time.perf_counter() - t0
    return DetectSummary(str(slide_path), out_dir, len(cells.detections), cells.aoi_area_mm2, seconds, startup, cells.tile_errors)
