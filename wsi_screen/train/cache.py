"""Decoded training canvases kept on disk: every image decoded and resampled once, reused across
epochs, folds and resumed runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..cell_images import CellDataset


class _Raw(torch.utils.data.Dataset):
    def __init__(self, dataset: CellDataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return torch.from_numpy(self.dataset.canvas(i))


def build_cache(dataset: CellDataset, path: str | Path, num_workers: int = 1) -> np.ndarray:
    """Decode and resample every image once (in workers) to a .npy of canvases, reused across epochs
    and resumed runs; the file is memory-mapped on later calls."""
    path = Path(path)
    if path.is_file():
        cache = np.load(path, mmap_mode="r")
        if cache.shape == (len(dataset), dataset.canvas_px, dataset.canvas_px, 3):
            return cache
    loader = torch.utils.data.DataLoader(_Raw(dataset), batch_size=64, num_workers=num_workers)
    cache = (
        np.concatenate([b.numpy() for b in loader]) if len(dataset) else np.zeros((0, dataset.canvas_px, dataset.canvas_px, 3), np.uint8)
    )
    save_atomic(path, cache)
    return cache


def save_atomic(path: Path, array: np.ndarray) -> None:
    """np.save through a process-private temporary file: folds trained in parallel may build the
    same cache at once, and a reader must never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)
