"""Batch throughput: slides/hour for a batch of demo slides with 1 and with 2 Dask workers, side by
side in one run, and the peak memory summed over the batch process and all its workers.

    python -m benchmarks.batch_speed [--slides 4]
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import click

from benchmarks.common import PeakMemory
from wsi_screen.batch import run_batch
from wsi_screen.config import Config
from wsi_screen.screen import ScreenOptions

DEMO = Path(__file__).resolve().parents[1] / "wsi_screen" / "demo" / "demo_smear.tiff"


@click.command()
@click.option("--slides", default=4, show_default=True)
def main(slides: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="wsi_batch_bench_"))
    inputs = work / "in"
    inputs.mkdir()
    for i in range(slides):
        shutil.copy(DEMO, inputs / f"demo{i}.tiff")
    report = {"slides": slides}
    for workers in (1, 2):
        t0 = time.perf_counter()
        with PeakMemory() as mem:
            rows = run_batch([inputs], work / f"out{workers}", Config(), ScreenOptions(workers=workers, progress=False))
        seconds = time.perf_counter() - t0
        assert all(r.status == "ok" for r in rows)
        report[f"workers_{workers}"] = {
            "seconds": round(seconds, 1),
            "slides_per_hour": round(slides * 3600 / seconds, 1),
            "peak_rss_gb": round(mem.peak / 1e9, 2),
        }
    report["speedup_2_over_1"] = round(report["workers_2"]["slides_per_hour"] / report["workers_1"]["slides_per_hour"], 2)
    print(json.dumps(report, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
