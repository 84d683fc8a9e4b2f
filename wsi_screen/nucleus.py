"""Each leukocyte's nucleus, segmented by stain inside its cell mask at patch resolution: the
nuclear area and the nucleus/cell ratio are what a haematologist looks at in a blast, and the
detector's "core" map is only the inner part of the cell (a watershed seed), not its nucleus.

The stain measure is `segmenters.nucleus_stain`, the one the detector's nucleated check already
uses (chromatin absorbs green but passes blue; red cells and eosinophil granules pass red). A
threshold by Otsu within the cell adapts to each lab's staining strength. Against the wbc_seg
nuclei (true cell masks given) it scored IoU 0.86, summed optical density 0.84, the haematoxylin
channel of skimage's colour deconvolution (rgb2hed) 0.73: Romanowsky eosin-azure stains are not
H&E, and eosinophil granules load onto its H axis."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon as draw_polygon
from skimage.filters import threshold_otsu

from .detect import outline
from .records import Box, Nucleus
from .segmenters import nucleus_stain

MIN_LOBE_UM2 = 1.0  # smaller stained specks (granules, debris) are not nuclear lobes


def nucleus_mask(rgb: np.ndarray, cell: np.ndarray, mpp: float) -> np.ndarray:
    """Boolean nucleus mask (holes filled) of the cell `cell` in `rgb` at `mpp` µm/px; empty when
    the cell has no contrast to split."""
    stain = nucleus_stain(rgb)
    values = stain[cell]
    if values.size < 2 or values.min() == values.max():
        return np.zeros(cell.shape, bool)
    mask = (stain > threshold_otsu(values)) & cell
    labels, _ = ndi.label(mask)
    sizes = np.bincount(labels.ravel()) * mpp**2
    sizes[0] = 0
    return ndi.binary_fill_holes(sizes[labels] >= MIN_LOBE_UM2) & cell


def measure_nucleus(patch: np.ndarray, cell_polygon, box: Box, patch_mpp: float) -> Nucleus:
    """The nucleus of the cell outlined by `cell_polygon` (level-0 px) in its patch, which shows
    the level-0 `box` at `patch_mpp` µm/px."""
    scale = box.width / patch.shape[1]
    xy = np.asarray(cell_polygon, float)
    cell = np.zeros(patch.shape[:2], bool)
    rows, cols = draw_polygon((xy[:, 1] - box.y0) / scale - 0.5, (xy[:, 0] - box.x0) / scale - 0.5, cell.shape)
    cell[rows, cols] = True
    nucleus = nucleus_mask(patch, cell, patch_mpp)
    labels, _ = ndi.label(nucleus, structure=np.ones((3, 3)))  # lobes touching at a corner are one outline
    lobes = tuple(
        tuple(
            (round(x, 2), round(y, 2))
            for x, y in outline(labels[sl] == k, (box.x0 + sl[1].start * scale, box.y0 + sl[0].start * scale), scale).exterior.coords
        )
        for k, sl in enumerate(ndi.find_objects(labels), start=1)
    )
    return Nucleus(float(nucleus.sum() * patch_mpp**2), float(nucleus.sum() / cell.sum()) if cell.any() else 0.0, lobes)
