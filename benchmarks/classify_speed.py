"""`wsi-screen classify` throughput on cell image files against the raw forward of the same
prepared network (batch norm folded, channels_last) on the same batch size, side by side in one
run: what reading (files already in the page cache), decoding (libjpeg at a reduced DCT scale),
resampling to the 29 µm field and normalising cost on top of the model. Both on CUDA with AMP too, wherever a GPU is available.

    python -m benchmarks.classify_speed [--cells ../shared/data/cells] [--n 1024]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import torch

from benchmarks.common import SHARED
from benchmarks.screen_speed import raw_forward_cells_per_s
from wsi_screen.cell_images import CELL_IMAGE_SUFFIXES
from wsi_screen.classify import classify_files
from wsi_screen.config import Config
from wsi_screen.model_files import DEFAULT_WEIGHTS
from wsi_screen.registry import for_inference, load_model


@click.command()
@click.option(
    "--cells",
    type=click.Path(path_type=Path),
    default=SHARED / "cells",
    show_default=True,
    help="Folder of cell images (searched recursively).",
)
@click.option("--n", default=1024, show_default=True, help="Images to classify (every k-th file, all classes).")
def main(cells: Path, n: int) -> None:
    files = sorted(str(f) for f in cells.rglob("*") if f.suffix.lower() in CELL_IMAGE_SUFFIXES)
    if not files:
        raise click.UsageError(f"no cell images under {cells}: pass --cells DIR")
    files = files[:: max(1, len(files) // n)][:n]
    for f in files:  # into the page cache: the figure is this code's cost, not the disk's
        Path(f).read_bytes()
    batch = Config().classify.batch_size
    model, card = load_model(DEFAULT_WEIGHTS)
    report = {"images": len(files), "batch": batch}
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        model = for_inference(model, device)  # as the classify command prepares it
        classify_files(model, card, files[:batch], batch_size=batch, device=device)  # warm-up
        t0 = time.perf_counter()
        classify_files(model, card, files, batch_size=batch, device=device)
        pipe = len(files) / (time.perf_counter() - t0)
        raw = raw_forward_cells_per_s(model, card, batch, device)
        report |= {
            f"{device}_classify_cells_per_s": pipe,
            f"{device}_raw_forward_cells_per_s": raw,
            f"{device}_classify_over_raw": pipe / raw,
        }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}, indent=1))


if __name__ == "__main__":
    main()
