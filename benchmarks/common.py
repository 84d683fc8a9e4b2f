"""Helpers shared by the benchmark scripts: gigapixel test slides streamed to disk, and peak
memory summed over a process tree."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile
from PIL import Image

from wsi_screen.synth import make_slide


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
                tiles(), shape=(H, W, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb", compression="jpeg",
                compressionargs={"level": quality, "outcolorspace": "ycbcr", "subsampling": (2, 2)},
                resolution=(1e4 / (mpp * w * reps / W),) * 2, resolutionunit="CENTIMETER", subfiletype=1 if i else 0, metadata=None,
            )
    return w * reps, h * reps


def smear_block(path: Path, size: int, mpp: float, n_leukocytes: int, data_dir: Path | None, seed: int = 0):
    return make_slide(path, width=size, height=size, mpp=mpp, n_leukocytes=n_leukocytes, data_dir=data_dir, seed=seed)


class PeakMemory:
    """Samples the summed RSS of this process and all its descendants (Dask workers included)."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
