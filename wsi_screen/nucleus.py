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
from skimage.filters import threshold_otsu

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
