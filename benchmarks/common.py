"""Helpers shared by the benchmark scripts: gigapixel test slides streamed to disk, and peak
memory summed over a process tree, of a `wsi-screen` command run as its own process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile
from PIL import Image

from wsi_screen.synth import make_slide

MPP = 0.1
BLOCK_PX = 8192
LEUKOCYTES_PER_BLOCK = 150  # 0.067 gigapixels: 2,235 leukocytes per gigapixel, a real monolayer's density at 0.1 µm/px
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def repeated_slide(path: Path, block_path: Path, reps: int, mpp: float, tile: int = 256, quality: int = 85) -> tuple[int, int]:
    """A pyramidal JPEG TIFF made of `reps`×`reps` copies of a synthetic smear block, written tile
    by tile so a multi-gigapixel slide never sits in memory. Returns level-0 (width, height)."""
    block = tifffile.imread(block_path, level=0)
    h, w = block.shape[:2]
    levels = [block]
    while max(levels[-1].shape[:2]) * reps > 2 * tile and min(levels[-1].shape[:2]) >= 2:
        levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(2)))
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for i, lv in enumerate(levels):
            lh, lw = lv.shape[:2]
            H, W = lh * reps, lw * reps

            def tiles(lv=lv, lh=lh, lw=lw, H=H, W=W):
                for ty in range(0, H, tile):
                    rows = np.arange(ty, ty + tile) % lh
                    for tx in range(0, W, tile):
                        yield lv[rows[:, None], (np.arange(tx, tx + tile) % lw)[None, :]]

            tif.write(
                tiles(),
                shape=(H, W, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": quality, "outcolorspace": "ycbcr", "subsampling": (2, 2)},
                resolution=(1e4 / (mpp * w * reps / W),) * 2,
                resolutionunit="CENTIMETER",
                subfiletype=1 if i else 0,
                metadata=None,
            )
    return w * reps, h * reps


def bench_slides(
    workdir: Path | None, reps: int, names: tuple[str, ...] = ("1x",), leukocytes: int = LEUKOCYTES_PER_BLOCK
) -> dict[str, Path]:
    """Cached benchmark slides at 0.1 µm/px (100x oil): "1x" is reps×reps blocks of 8192² px
    (reps=4: 1.07 gigapixels), "4x" has four times its area. Each block holds `leukocytes` cells,
    side by side in its monolayer band (the default: a real monolayer's density, issue 16). Real
    cells when ../shared is there."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="wsi_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    block = workdir / f"block_{leukocytes}.tiff"
    if not block.exists():
        data_dir = SHARED if SHARED.exists() else None
        make_slide(block, width=BLOCK_PX, height=BLOCK_PX, mpp=MPP, n_leukocytes=leukocytes, data_dir=data_dir, seed=0)
    slides = {}
    for name in names:
        path = workdir / f"smear_{leukocytes}_{name}.tiff"
        if not path.exists():
            repeated_slide(path, block, reps * (2 if name == "4x" else 1), MPP)
        slides[name] = path
    return slides


def empty_out(out: Path) -> Path:
    """`out` with no earlier run's results in it: a lab's first screen of a slide has none, and
    replacing one (deleting ~4,000 patch files) cost 1.5 s of the timed run."""
    shutil.rmtree(out, ignore_errors=True)
    return out


def decode_row(row: tuple[int, int, int], path: str) -> int:
    """Decode one row of level-0 tiles with OpenSlide and nothing else: no copy to numpy, no
    resampling, none of the product's reader (the issue's decode-only)."""
    import openslide

    y0, y1, width = row
    with openslide.OpenSlide(path) as slide:
        for x0 in range(0, width, 4096):
            slide.read_region((x0, y0), 0, (min(4096, width - x0), y1 - y0))
    return y1 - y0


def decode_seconds(path: Path, config, workers: int) -> float:
    """Time to decode every level-0 tile of the slide once, on `workers` Dask workers."""
    from wsi_screen.parallel import bounded_map, dask_client, in_flight
    from wsi_screen.slide import check_slide

    info = check_slide(path)
    rows = [(y, min(y + 4096, info.height), info.width) for y in range(0, info.height, 4096)]
    with dask_client(None, config.dask, workers) as client:
        t0 = time.perf_counter()
        for _ in bounded_map(client, decode_row, rows, in_flight(client), path=str(path)):
            pass
        return time.perf_counter() - t0


class PeakMemory:
    """Samples the summed RSS of a process (by default this one) and all its descendants (Dask
    workers included); at the peak it keeps the split between that process and the others and the
    seconds since the start, so a growth with slide size can be traced to the client or the
    workers and to a stage."""

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.at_peak = {"root": 0, "descendants": 0, "seconds": 0.0}
        self._stop = threading.Event()

    def _run(self):
        root = psutil.Process(self.pid)
        t0 = time.perf_counter()
        while not self._stop.is_set():
            try:
                own, others = root.memory_info().rss, 0
                children = root.children(recursive=True)
            except psutil.Error:  # the root process has ended
                return
            for p in children:
                try:
                    others += p.memory_info().rss
                except psutil.Error:
                    pass
            if own + others > self.peak:
                self.peak = own + others
                self.at_peak = {"root": own, "descendants": others, "seconds": time.perf_counter() - t0}
            time.sleep(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def command_peak_memory(command: str, slide: Path, out: Path, workers: int) -> dict:
    """Peak memory of `wsi-screen COMMAND SLIDE --aoi full` run as its own process, as a lab runs it
    (so it inherits no memory from the benchmark's earlier runs): GB of the command and its workers
    together, of the command (the client) and of the workers at that moment, and when it came (s
    after the start)."""
    out = empty_out(out)
    args = [sys.executable, "-m", "wsi_screen.cli", command, str(slide), "--out", str(out), "--aoi", "full", "--workers", str(workers)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    with PeakMemory(process.pid) as mem:
        if process.wait():
            raise SystemExit(f"`{' '.join(args)}` exited with {process.returncode}")
    split = mem.at_peak
    return {"gb": mem.peak / 1e9, "client_gb": split["root"] / 1e9, "workers_gb": split["descendants"] / 1e9, "at_s": split["seconds"]}


def peak_line(name: str, peak: dict) -> str:
    """One printed line of a `command_peak_memory` figure."""
    return f"{name}: {peak['gb']:.2f} GB = client {peak['client_gb']:.2f} + workers {peak['workers_gb']:.2f}, at {peak['at_s']:.0f} s"
