"""Decoded training canvases kept on disk: every image decoded and resampled once, reused across
epochs, folds and resumed runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..cell_images import CellDataset


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n: int, row):
        self.n, self.row = n, row

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.from_numpy(np.require(self.row(i), requirements="W"))  # a decoded image may be read-only


def cached_rows(row, n: int, shape: tuple[int, ...], path: str | Path, num_workers: int = 1) -> np.ndarray:
    """`row(i)` (uint8 arrays of `shape`) for i < n, computed once in workers into a .npy that
    later calls memory-map (rebuilt when its shape no longer fits)."""
    path = Path(path)
    if path.is_file():
        cache = np.load(path, mmap_mode="r")
        if cache.shape == (n, *shape):
            return cache
    loader = torch.utils.data.DataLoader(_Rows(n, row), batch_size=64, num_workers=num_workers)
    cache = np.concatenate([b.numpy() for b in loader]) if n else np.zeros((0, *shape), np.uint8)
    save_atomic(path, cache)
    return cache


def build_cache(dataset: CellDataset, path: str | Path, num_workers: int = 1) -> np.ndarray:
    """Decode and resample every image once (in workers) to a .npy of canvases, reused across epochs
    and resumed runs; the file is memory-mapped on later calls."""
    return cached_rows(dataset.canvas, len(dataset), (dataset.canvas_px, dataset.canvas_px, 3), path, num_workers)


def save_atomic(path: Path, array: np.ndarray) -> None:
    """np.save through a process-private temporary file: folds trained in parallel may build the
    same cache at once, and a reader must never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)
