"""`screen` speed on a generated gigapixel smear, side by side in one run:

- decode-only time of every level-0 tile, on the same number of Dask workers;
- `screen` time with start-up (slide check, AOI, model load, cluster start) reported apart;
- classification throughput (cells/s) inside that `screen` run (model load and first-call set-up
  included), and the steady-state throughput of the same code (`classify_inputs`: reading the
  stored inputs, normalising, forward) against the raw forward of the same prepared network (batch
  norm folded, channels_last) on the same batch size, alternated five times, medians;
- the same screen, classifying on CUDA with AMP, wherever a GPU is available.

    python -m benchmarks.screen_speed [--workdir /tmp/wsi_bench] [--reps 4]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch

from benchmarks.common import bench_slides, decode_seconds
from wsi_screen.classify import batch_logits, classify_inputs, resize_patches
from wsi_screen.config import Config
from wsi_screen.export.store import add_model_input, drop_model_input, open_model_input, open_patches, write_model_input
from wsi_screen.find_cells import PATCHES_PER_TASK
from wsi_screen.registry import for_inference
from wsi_screen.screen import ScreenOptions, load_classifier, screen_slide


def raw_forward_cells_per_s(model, card, batch: int, device: str, repeats: int = 20) -> float:
    """The model alone on a ready input batch, at the product's precision (`batch_logits`: float16
    on CUDA, bfloat16 on CPUs that compute it natively)."""
    dev = torch.device(device)
    x = torch.randn(batch, 3, card.input_px, card.input_px, device=dev).contiguous(memory_format=torch.channels_last)
    batch_logits(model, [x], dev)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    batch_logits(model, [x] * repeats, dev)
    return batch * repeats / (time.perf_counter() - t0)


def steady_state(model, card, store: Path, batch: int, device: str, reps: int = 5) -> tuple[float, float]:
    """Median cells/s of classify_inputs and of the raw forward, alternated on the same machine state;
    the store gets back the model_input array that screen dropped, rebuilt from its patches."""
    patches = open_patches(store)
    n = patches.shape[0]
    drop_model_input(store)
    add_model_input(store, card.input_px, PATCHES_PER_TASK)  # chunked as screen writes it
    for start in range(0, n, batch):
        write_model_input(store, start, resize_patches(patches[start : start + batch], card.input_px))
    pipe, raw = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        classify_inputs(model, card, open_model_input(store), batch, device)
        pipe.append(n / (time.perf_counter() - t0))
        raw.append(raw_forward_cells_per_s(model, card, batch, device))
    drop_model_input(store)
    return float(np.median(pipe)), float(np.median(raw))


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=None)
@click.option("--reps", default=4, show_default=True)
@click.option("--workers", default=2, show_default=True)
def main(workdir: Path | None, reps: int, workers: int) -> None:
    slide = bench_slides(workdir, reps)["1x"]
    config = Config()
    decode_s = decode_seconds(slide, config, workers)
    report = {"decode_only_level0_s": decode_s}
    model, card, _ = load_classifier(config)
    batch = config.classify.batch_size
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        t0 = time.perf_counter()
        options = ScreenOptions(workers=workers, progress=False)
        result = screen_slide(slide, slide.parent / f"screen_{device}", config.replace("classify", device=device), options)
        screen_s = time.perf_counter() - t0 - result.startup_seconds
        pipe, raw = steady_state(for_inference(model, device), card, result.out_dir / "cells.zarr", batch, device)  # as screen prepares it
        n = result.summary.n_leukocytes
        report |= {
            f"{device}_screen_startup_s": result.startup_seconds,
            f"{device}_screen_s": screen_s,
            f"{device}_screen_over_decode": screen_s / decode_s,
            "cells": n,
            f"{device}_classify_in_screen_cells_per_s": n / result.classify_seconds,
            f"{device}_classify_cells_per_s": pipe,
            f"{device}_raw_forward_cells_per_s": raw,
            f"{device}_classify_over_raw": pipe / raw,
        }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}, indent=1))


if __name__ == "__main__":
    main()
