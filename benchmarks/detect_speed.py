"""Detection speed and memory on generated gigapixel smears, side by side in one run:

- decode-only: every level-0 tile of the slide decoded once, on the same Dask workers;
- detect: `wsi-screen detect` stages (AOI, tiles, U-Net, instances, patches, outputs), with the
  start-up (slide check, AOI, cluster start) reported apart;
- peak memory summed over all processes for the slide and for one with 4x its area.

    python -m benchmarks.detect_speed [--workdir /tmp/wsi_bench] [--reps 4]
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import click

from benchmarks.common import PeakMemory, bench_slides, decode_seconds
from wsi_screen.config import Config
from wsi_screen.export.geojson import cell_features, write_features
from wsi_screen.export.outdir import staged_dir
from wsi_screen.find_cells import find_cells, prepare, write_store
from wsi_screen.parallel import dask_client


def run_detect(path: Path, out: Path, config: Config, workers: int) -> dict:
    t0 = time.perf_counter()
    info, mask = prepare(path, config, None, "auto")
    with PeakMemory() as mem, dask_client(None, config.dask, workers) as client:
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        cells = find_cells(client, path, info, mask, config, None, progress=False)
        with staged_dir(out / path.stem) as tmp:
            nuclei = write_store(client, tmp / "cells.zarr", cells, config)
            write_features(cell_features(cells.detections, cells.slide_key, nuclei=nuclei), tmp / "detections.geojson")
        detect_s = time.perf_counter() - t1
    return {
        "startup_s": startup,
        "detect_s": detect_s,
        "cells": len(cells.detections),
        "aoi_mm2": cells.aoi_area_mm2,
        "peak_rss_gb": mem.peak / 1e9,
        "gigapixels": info.width * info.height / 1e9,
    }


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=None)
@click.option("--reps", default=4, show_default=True, help="Block copies per side (8192 px blocks at 0.1 µm/px).")
@click.option("--workers", default=2, show_default=True)
def main(workdir: Path | None, reps: int, workers: int) -> None:
    slides = bench_slides(workdir, reps, ("1x", "4x"))
    config = Config()
    decode_s = decode_seconds(slides["1x"], config, workers)
    results = {name: run_detect(path, slides["1x"].parent / "out", config, workers) for name, path in slides.items()}
    one, four = results["1x"], results["4x"]
    report = {
        "slide_gigapixels": one["gigapixels"],
        "workers": workers,
        "decode_only_level0_s": decode_s,
        "detect_startup_s": one["startup_s"],
        "detect_s": one["detect_s"],
        "detect_over_decode": one["detect_s"] / decode_s,
        "cells": one["cells"],
        "aoi_mm2": one["aoi_mm2"],
        "peak_rss_gb_1x": one["peak_rss_gb"],
        "peak_rss_gb_4x_area": four["peak_rss_gb"],
        "memory_growth_4x": four["peak_rss_gb"] / one["peak_rss_gb"] - 1,
        "detect_s_4x_area": four["detect_s"],
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) and math.isfinite(v) else v for k, v in report.items()}, indent=1))


if __name__ == "__main__":
    main()
