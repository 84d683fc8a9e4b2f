"""Detection speed and memory on generated gigapixel smears, side by side in one run:

- decode-only: every level-0 tile of the slide decoded once by OpenSlide alone, on the same
  number of Dask workers;
- detect over the whole slide (`--aoi full`, the decode's own area): its stages (tiles, U-Net,
  instances, patches, outputs), with the start-up (slide check, AOI, cluster start) reported
  apart; then with the automatic AOI, reported separately;
- peak memory of `wsi-screen detect --aoi full` on the slide and on one of 4x its area, each a
  fresh process (so neither inherits this script's memory), summed over the command and its
  Dask workers.

    python -m benchmarks.detect_speed [--workdir /tmp/wsi_bench] [--reps 4]
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import torch

from benchmarks.common import LEUKOCYTES_PER_BLOCK, bench_slides, command_peak_memory, decode_seconds, empty_out, peak_line
from wsi_screen.config import Config
from wsi_screen.find_cells import detect_slide
from wsi_screen.registry import precision


def run_detect(path: Path, out: Path, config: Config, workers: int, aoi: str) -> dict:
    """One `wsi-screen detect` run in this process (`detect_slide`): start-up and detect seconds."""
    summary = detect_slide(path, empty_out(out), config, aoi=aoi, workers=workers, progress=False)
    return {
        "startup_s": summary.startup_seconds,
        "detect_s": summary.seconds - summary.startup_seconds,
        "cells": summary.n_cells,
        "aoi_mm2": summary.aoi_area_mm2,
    }


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("/tmp/wsi_bench"), show_default=True)
@click.option("--reps", default=4, show_default=True, help="Block copies per side (8192 px blocks at 0.1 µm/px).")
@click.option("--leukocytes", default=LEUKOCYTES_PER_BLOCK, show_default=True, help="Leukocytes per block.")
@click.option("--workers", default=2, show_default=True)
def main(workdir: Path, reps: int, leukocytes: int, workers: int) -> None:
    slides = bench_slides(workdir, reps, ("1x", "4x"), leukocytes)
    config = Config()
    decode_s = decode_seconds(slides["1x"], config, workers)
    full = run_detect(slides["1x"], workdir / "detect_full", config, workers, "full")
    auto = run_detect(slides["1x"], workdir / "detect_auto", config, workers, "auto")
    peaks = {name: command_peak_memory("detect", path, workdir / f"detect_memory_{name}", workers) for name, path in slides.items()}
    report = {
        "workers": workers,
        "cpu_precision": precision(torch.device("cpu")),  # the U-Net's: bfloat16 or float32, by CPU
        "decode_only_level0_s": decode_s,
        "full_startup_s": full["startup_s"],
        "full_detect_s": full["detect_s"],
        "full_detect_over_decode": full["detect_s"] / decode_s,
        "full_cells": full["cells"],
        "full_aoi_mm2": full["aoi_mm2"],
        "auto_detect_s": auto["detect_s"],
        "auto_detect_over_decode": auto["detect_s"] / decode_s,
        "auto_cells": auto["cells"],
        "auto_aoi_mm2": auto["aoi_mm2"],
        "memory_4x_over_1x": peaks["4x"]["gb"] / peaks["1x"]["gb"],
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) and math.isfinite(v) else v for k, v in report.items()}, indent=1))
    for name, peak in peaks.items():
        print(peak_line(f"memory_{name}_peak", peak))


if __name__ == "__main__":
    main()
