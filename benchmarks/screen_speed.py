"""`screen` speed on a generated gigapixel smear, side by side in one run:

- decode-only time of every level-0 tile, on the same number of Dask workers;
- `screen` time with start-up (slide check, AOI, model load, cluster start) reported apart;
- classification throughput (cells/s) of the code `screen` runs (patches read from cells.zarr,
  decoded, resized, normalised, forward) against the raw forward of the same prepared network
  (batch norm folded, channels_last) on the same batch size;
- the same on CUDA with AMP wherever a GPU is available.

    python -m benchmarks.screen_speed [--workdir /tmp/wsi_bench] [--reps 4]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import torch

from benchmarks.common import bench_slides, decode_seconds
from wsi_screen.classify import classify_store
from wsi_screen.config import Config
from wsi_screen.export.store import open_patches
from wsi_screen.registry import for_inference
from wsi_screen.screen import ScreenOptions, load_classifier, screen_slide


def raw_forward_cells_per_s(model, card, batch: int, device: str, repeats: int = 5) -> float:
    x = torch.randn(batch, 3, card.input_px, card.input_px, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cuda", enabled=device == "cuda"):
        model(x)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - t0)


def pipeline_cells_per_s(model, card, store: Path, batch: int, device: str) -> float:
    t0 = time.perf_counter()
    classify_store(model, card, store, batch, device)
    return open_patches(store).shape[0] / (time.perf_counter() - t0)


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=None)
@click.option("--reps", default=4, show_default=True)
@click.option("--workers", default=2, show_default=True)
def main(workdir: Path | None, reps: int, workers: int) -> None:
    slide = bench_slides(workdir, reps)["1x"]
    config = Config()
    decode_s = decode_seconds(slide, config, workers)
    t0 = time.perf_counter()
    summary = screen_slide(slide, slide.parent / "screen_out", config, ScreenOptions(workers=workers, progress=False))
    total = time.perf_counter() - t0
    model, card, _ = load_classifier(config)
    store = summary.out_dir / "cells.zarr"
    batch = config.classify.batch_size
    report = {
        "decode_only_level0_s": decode_s,
        "screen_startup_s": summary.startup_seconds,
        "screen_s": total - summary.startup_seconds,
        "screen_over_decode": (total - summary.startup_seconds) / decode_s,
        "cells": summary.n_leukocytes,
    }
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        model = for_inference(model, device)  # as screen prepares it: both sides run the same network
        pipe = pipeline_cells_per_s(model, card, store, batch, device)
        raw = raw_forward_cells_per_s(model, card, batch, device)
        report[f"{device}_classify_cells_per_s"] = pipe
        report[f"{device}_raw_forward_cells_per_s"] = raw
        report[f"{device}_classify_over_raw"] = pipe / raw
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}, indent=1))


if __name__ == "__main__":
    main()
