"""Context augmentation (issue 12): a leukocyte shown in another lab's surroundings. On a crop the
classifier can read the lab from what surrounds the cell (its red cells, its plasma) and lean on
that lab's class mix; on a slide, or a faithful generated one, the surroundings differ and the
calls move (measured on locked cells: DeepAPL segmented neutrophils called bands once their own
red cells were gone). Here the cell keeps its own rim as the faithful generator cuts it
(`synth_cells.crop_alpha`) and everything beyond 1.75 µm comes from a training crop of another
source, whose own cell is first erased to glass. (TXL-PBC's non-leukocyte crops were tried as
backgrounds first: nearly all of them hold a leukocyte of their small fields, and many show the
reflection of their padding.)"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch

from ..cell_images import CROP_MPP, CellDataset, read_image, to_canvas
from ..synth_cells import crop_alpha, lay_on
from .cache import cached_rows


def alpha_cache(dataset: CellDataset, rows: np.ndarray, path: str | Path, num_workers: int = 1) -> np.ndarray:
    """N×canvas×canvas uint8 alphas on the same canvases as `build_cache`: the cell's faithful
    alpha for `rows` that are crops at CROP_MPP (the cut's constants assume it) and can be cut,
    zero elsewhere (never relaid). Built once, memory-mapped after."""
    d = dataset
    cut = {int(i) for i in rows if math.isclose(d.src_mpp[i], CROP_MPP, rel_tol=0.05)}
    return cached_rows(functools.partial(_canvas_alpha, d, cut), len(d), (d.canvas_px, d.canvas_px), path, num_workers)


def _canvas_alpha(d: CellDataset, cut: set[int], i: int) -> np.ndarray:
    """Row i's alpha resampled onto its canvas as `to_canvas` resamples the image."""
    alpha = crop_alpha(read_image(d.files[i])) if i in cut else None
    if alpha is None:
        return np.zeros((d.canvas_px, d.canvas_px), np.uint8)
    a = np.repeat(np.rint(alpha * 255).astype(np.uint8)[..., None], 3, axis=2)
    return to_canvas(a, d.src_mpp[i], d.mpp, d.canvas_px, d.field_um)[..., 0]


class OnOtherBackgrounds(torch.utils.data.Dataset):
    """`dataset` (cached canvases) with each cell that has an alpha laid, with probability `prob`,
    on the canvas of another cell of `backgrounds` from a different source (any other when its
    source is the only one), that cell first erased to glass under its own alpha."""

    def __init__(self, dataset: CellDataset, alphas: np.ndarray, backgrounds: np.ndarray, sources: np.ndarray, prob: float):
        if dataset.cache is None:
            raise ValueError("context augmentation needs the cached canvases")
        backgrounds = np.asarray(backgrounds, np.int64)
        if len(backgrounds) < 2:
            raise ValueError("context augmentation needs at least two cells with a cut-out alpha")
        sources = np.asarray(sources).astype(str)
        self.dataset, self.alphas, self.prob, self.sources = dataset, alphas, prob, sources
        self.others = {s: backgrounds[sources[backgrounds] != s] for s in np.unique(sources[backgrounds])}
        self.backgrounds = backgrounds
        self.targets = dataset.targets

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i: int):
        d = self.dataset
        canvas, alpha = d.cache[i], self.alphas[i]
        if alpha.any() and float(torch.rand(())) < self.prob:
            pool = self.others.get(self.sources[i], self.backgrounds)
            pool = pool if len(pool) else self.backgrounds[self.backgrounds != i]
            j = int(pool[int(torch.randint(len(pool), ()))])
            background = np.asarray(d.cache[j])
            erased = lay_on(np.full_like(background, 255), self.alphas[j].astype(np.float32) / 255, background)
            canvas = lay_on(np.asarray(canvas), alpha.astype(np.float32) / 255, erased)
        return d.transform(canvas), int(d.targets[i])
