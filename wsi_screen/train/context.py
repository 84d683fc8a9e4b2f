"""Context augmentation (issue 12): a leukocyte shown on another lab's background. On a crop the
classifier can read the lab from what surrounds the cell (its red cells, its plasma) and lean on
the lab's class mix; on a slide, or a faithful generated one, those surroundings differ and the
calls move (measured on locked cells: DeepAPL neutrophils called bands once their own red cells
were gone). Here the cell keeps its own rim as the faithful generator cuts it
(`synth_cells.crop_alpha`) and everything beyond 1.75 µm comes from a non-leukocyte field of
TXL-PBC's other labs (Raabin-WBC, BCCD, BCD; PBC's red cells are the generator's, so faithful
slides stay a test the training never saw)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..cell_images import CROP_MPP, CellDataset, read_image, to_canvas
from ..synth_cells import crop_alpha, lay_on
from .cache import save_atomic

GENERATOR_RBC_SOURCE = "txl_pbc"  # the faithful generator's red cells: never a training background


class _Alphas(torch.utils.data.Dataset):
    def __init__(self, dataset: CellDataset, rows: np.ndarray):
        self.dataset, self.rows = dataset, set(rows.tolist())

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        d = self.dataset
        out = np.zeros((d.canvas_px, d.canvas_px), np.uint8)
        if i in self.rows:
            alpha = crop_alpha(read_image(d.files[i]))
            if alpha is not None:
                a = np.repeat(np.rint(alpha * 255).astype(np.uint8)[..., None], 3, axis=2)
                out = to_canvas(a, d.src_mpp[i], d.mpp, d.canvas_px, d.field_um)[..., 0]
        return torch.from_numpy(out)


def alpha_cache(dataset: CellDataset, rows: np.ndarray, path: str | Path, num_workers: int = 1) -> np.ndarray:
    """N×canvas×canvas uint8 alphas on the same canvases as `build_cache`: the cell's faithful
    alpha for `rows` that are crops at CROP_MPP (the cut's constants assume it) and can be cut,
    zero elsewhere (never relaid). Built once, memory-mapped after."""
    path = Path(path)
    if path.is_file():
        cache = np.load(path, mmap_mode="r")
        if cache.shape == (len(dataset), dataset.canvas_px, dataset.canvas_px):
            return cache
    rows = np.asarray([i for i in rows if math.isclose(dataset.src_mpp[i], CROP_MPP, rel_tol=0.05)], np.int64)
    loader = torch.utils.data.DataLoader(_Alphas(dataset, rows), batch_size=64, num_workers=num_workers)
    cache = np.concatenate([b.numpy() for b in loader]) if len(dataset) else np.zeros((0, dataset.canvas_px, dataset.canvas_px), np.uint8)
    save_atomic(path, cache)
    return cache


class OnOtherBackgrounds(torch.utils.data.Dataset):
    """`dataset` (cached canvases) with each cell that has an alpha laid, with probability `prob`,
    on a random canvas of `backgrounds` (indices into the same cache) before its transform."""

    def __init__(self, dataset: CellDataset, alphas: np.ndarray, backgrounds: np.ndarray, prob: float):
        if dataset.cache is None:
            raise ValueError("context augmentation needs the cached canvases")
        if not len(backgrounds):
            raise ValueError("context augmentation needs background canvases (non-leukocyte crops of other labs)")
        self.dataset, self.alphas, self.backgrounds, self.prob = dataset, alphas, np.asarray(backgrounds), prob
        self.targets = dataset.targets

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i: int):
        d = self.dataset
        canvas = d.cache[i]
        alpha = self.alphas[i]
        if alpha.any() and float(torch.rand(())) < self.prob:
            background = d.cache[self.backgrounds[int(torch.randint(len(self.backgrounds), ()))]]
            canvas = lay_on(np.asarray(canvas), alpha.astype(np.float32) / 255, np.asarray(background))
        return d.transform(canvas), int(d.targets[i])
