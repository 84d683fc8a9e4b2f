"""`screen` speed on a generated gigapixel smear as dense as a real monolayer, side by side in one run
(issue 16: a benchmark that cannot flatter):

- decode-only: every level-0 tile of the slide decoded once by OpenSlide alone (no copy, no
  resampling), on the same number of Dask workers;
- `screen --aoi full`, the whole slide, with its start-up (slide check, AOI, model load, cluster
  start) reported apart, divided by the decode-only time; then `screen` with the automatic AOI,
  reported separately;
- the per-stage profile of the full run: the client's wall time per stage (waiting on the
  workers for detection and patches, classification, aggregation, writers, overview, saliency,
  report) and the seconds of the stages inside the worker tasks (tile and patch reads by pyramid
  level, U-Net, instances, tile QC, patch writes, classifier inputs, nuclei), summed over tasks;
- classification throughput (cells/s) inside that run (model load and first-call set-up included),
  and the steady-state throughput of the same code (`classify_inputs`) against the raw forward of
  the same prepared network on the same batch size, alternated 15 times: medians, and the median
  of the pairs' ratios;
- with --memory, peak memory of `wsi-screen screen --aoi full` on the slide and on one of 4x its
  area, each a fresh process as a lab runs it (so neither inherits this script's memory), summed
  over the command and its Dask workers;
- the same screen, classifying on CUDA with AMP, wherever a GPU is available.

Figures are printed and written to --json.

    python -m benchmarks.screen_speed [--workdir /tmp/wsi_bench] [--reps 4] [--memory]
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import click
import numpy as np
import torch

from benchmarks.common import LEUKOCYTES_PER_BLOCK, bench_slides, command_peak_memory, decode_seconds, empty_out, peak_line
from wsi_screen.classify import batch_logits, classify_inputs
from wsi_screen.config import Config
from wsi_screen.export.store import add_model_input, drop_model_input, open_model_input, open_patches, write_model_input
from wsi_screen.find_cells import PATCHES_PER_TASK
from wsi_screen.patches import resize_patches
from wsi_screen.registry import for_inference, forward_dtype, precision
from wsi_screen.screen import ScreenOptions, ScreenResult, load_classifier, screen_slide
from wsi_screen.slide import check_slide


def raw_forward_cells_per_s(model, card, batch: int, device: str, repeats: int = 20) -> float:
    """The model alone on a ready input batch, at the product's precision (`batch_logits`: float16
    on CUDA, bfloat16 on CPUs that compute it natively), the input already in it as
    `classify_inputs` hands it over."""
    dev = torch.device(device)
    x = torch.randn(batch, 3, card.input_px, card.input_px, device=dev, dtype=forward_dtype(dev))
    x = x.contiguous(memory_format=torch.channels_last)
    batch_logits(model, [x], dev)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    batch_logits(model, [x] * repeats, dev)
    return batch * repeats / (time.perf_counter() - t0)


def steady_state(model, card, store: Path, batch: int, device: str, reps: int = 15) -> tuple[float, float, float]:
    """Median cells/s of classify_inputs and of the raw forward, alternated on the same machine state,
    and the median of their ratio pair by pair (a shared machine's speed drifts between pairs by
    more than the ratio's distance from its target); the store gets back the model_input array
    that screen dropped, rebuilt from its patches."""
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
    return float(np.median(pipe)), float(np.median(raw)), float(np.median(np.divide(pipe, raw)))


def screen(slide: Path, out: Path, config: Config, workers: int, aoi: str) -> tuple[ScreenResult, float]:
    """One `screen` run in this process: its result and its wall time."""
    empty_out(out)
    t0 = time.perf_counter()
    result = screen_slide(slide, out, config, ScreenOptions(workers=workers, aoi=aoi, progress=False))
    return result, time.perf_counter() - t0


def profile_table(result: ScreenResult, wall: float, workers: int) -> tuple[str, dict]:
    """The per-stage profile as a Markdown table and as figures: client stages as seconds and share
    of the run's wall time; worker stages as seconds summed over tasks and share of all task time."""
    client = dict(result.profile)
    client["other (output commit, cluster shutdown)"] = wall - sum(client.values())
    tasks = result.task_profile
    task_total = sum(tasks.values())
    busy = result.profile.get("detection", 0.0) + result.profile.get("patches", 0.0)
    rows = ["| where | stage | seconds | share |", "|---|---|---|---|"]
    rows += [f"| client (wall) | {k} | {v:.1f} | {v / wall:.1%} |" for k, v in client.items()]
    rows += [f"| client (wall) | **total** | **{wall:.1f}** | 100 % |"]
    order = sorted(tasks, key=lambda k: (not k.startswith("tile"), k not in ("unet", "instances", "tile qc"), k))
    rows += [f"| workers (task s) | {k} | {tasks[k]:.1f} | {tasks[k] / task_total:.1%} |" for k in order]
    utilisation = task_total / (workers * busy) if busy else math.nan
    use = f"{utilisation:.0%} of {workers} workers × detection + patches wall"
    rows += [f"| workers (task s) | **total** ({use}) | **{task_total:.1f}** | 100 % |"]
    figures = {"client_s": client, "task_s": dict(tasks), "worker_utilisation": utilisation}
    return "\n".join(rows), figures


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("/tmp/wsi_bench"), show_default=True)
@click.option("--reps", default=4, show_default=True, help="Block copies per side (8192 px blocks at 0.1 µm/px).")
@click.option("--leukocytes", default=LEUKOCYTES_PER_BLOCK, show_default=True, help="Leukocytes per block.")
@click.option("--workers", default=2, show_default=True)
@click.option(
    "--memory/--no-memory",
    default=False,
    show_default=True,
    help="Also the peak memory of `screen` (a fresh process) on the slide and on one of 4x its area.",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Default: WORKDIR/screen_speed.json.")
def main(workdir: Path, reps: int, leukocytes: int, workers: int, memory: bool, json_path: Path | None) -> None:
    slides = bench_slides(workdir, reps, ("1x", "4x") if memory else ("1x",), leukocytes)
    slide = slides["1x"]
    info = check_slide(slide)
    config = Config()
    decode_s = decode_seconds(slide, config, workers)
    report: dict = {
        "slide_gigapixels": info.width * info.height / 1e9,
        "slide_mm2": info.width * info.height * (info.mpp / 1000) ** 2,
        "workers": workers,
        "cpu_precision": precision(torch.device("cpu")),  # bfloat16 or float32: the figures differ by CPU
        "decode_only_level0_s": decode_s,
    }
    model, card, _ = load_classifier(config)
    batch = config.classify.batch_size
    tables = {}
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        cfg = config.replace("classify", device=device)
        result, wall = screen(slide, workdir / f"screen_full_{device}", cfg, workers, "full")
        table, profile = profile_table(result, wall, workers)
        tables[device] = table
        screen_s = wall - result.startup_seconds
        n = result.summary.n_leukocytes
        prepared = for_inference(model, device)  # as screen prepares it
        pipe, raw, ratio = steady_state(prepared, card, result.out_dir / "cells.zarr", batch, device)
        report |= {
            f"{device}_full_cells": n,
            f"{device}_full_cells_per_gigapixel": n / report["slide_gigapixels"],
            f"{device}_full_startup_s": result.startup_seconds,
            f"{device}_full_screen_s": screen_s,
            f"{device}_full_screen_over_decode": screen_s / decode_s,
            f"{device}_full_wall_over_decode": wall / decode_s,
            # every detection is classified, the rejected ones too (outside the AOI: red-cell piles)
            f"{device}_classified": n + result.summary.n_rejected,
            f"{device}_classify_in_screen_cells_per_s": (n + result.summary.n_rejected) / result.classify_seconds,
            f"{device}_classify_cells_per_s": pipe,
            f"{device}_raw_forward_cells_per_s": raw,
            f"{device}_classify_over_raw": ratio,
            f"{device}_full_profile": profile,
        }
        auto, auto_wall = screen(slide, workdir / f"screen_auto_{device}", cfg, workers, "auto")
        report |= {
            f"{device}_auto_aoi_mm2": auto.summary.aoi_area_mm2,
            f"{device}_auto_cells": auto.summary.n_leukocytes,
            f"{device}_auto_screen_s": auto_wall - auto.startup_seconds,
            f"{device}_auto_screen_over_decode": (auto_wall - auto.startup_seconds) / decode_s,
        }
    if memory:
        peaks = {name: command_peak_memory("screen", path, workdir / f"memory_{name}", workers) for name, path in slides.items()}
        report |= {f"memory_{name}_peak": peak for name, peak in peaks.items()}
        report["memory_4x_over_1x"] = peaks["4x"]["gb"] / peaks["1x"]["gb"]
    json_path = json_path or workdir / "screen_speed.json"
    json_path.write_text(json.dumps(report, indent=1))
    flat = {k: round(v, 3) if isinstance(v, float) else v for k, v in report.items() if not k.endswith(("_profile", "_peak"))}
    print(json.dumps(flat, indent=1))
    for key in (k for k in report if k.endswith("_peak")):
        print(peak_line(key, report[key]))
    for device, table in tables.items():
        print(f"\nProfile of `screen --aoi full` ({device}):\n{table}")
    print(f"\nwritten {json_path}")


if __name__ == "__main__":
    main()
