"""Red cells segmented in a stained blood-smear image (a CellaVision crop or a field), for measuring
an image set's pixel scale from their ≈ 7.5 µm diameter (pipelines/measure_crop_scale.py).

One method for every image set, so its bias cancels between sets:
  1. Red-cell mask: pixels darker than the pale background in the smoothed green channel (eosin
     absorbs green), Otsu threshold per image over the non-purple pixels; holes (central pallor)
     filled, specks opened away.
  2. Leukocytes and platelets: "purple" pixels (blue − red more than PURPLE_DELTA above the
     background's, or green darker than DARK: nucleus, azure cytoplasm) are left out of the Otsu
     threshold, and any component with purple pixels (95th / 5th percentile) or holding the image
     centre (the crop's leukocyte) is dropped.
  3. Only whole, round, single cells count: not touching the border, solidity > 0.93, eccentricity
     < 0.6, equivalent diameter 40–140 px (wide, so the window does not set the answer)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, morphology

MIN_D, MAX_D = 40, 140
SOLIDITY, ECCENTRICITY = 0.93, 0.6
PURPLE_DELTA, DARK = 55, 80


def segment_red_cells(rgb: np.ndarray) -> list:
    """The whole, round red cells of an RGB image (0–255), leukocytes excluded, as skimage regionprops
    (`equivalent_diameter_area`, `bbox` = y0, x0, y1, x1)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    green = filters.gaussian(g, sigma=1.5, preserve_range=True)
    blue_red = filters.gaussian(b - r, sigma=2, preserve_range=True)
    delta = blue_red - np.median(blue_red[green >= np.percentile(green, 80)])  # vs the brightest 20 %: background
    purple = (delta > PURPLE_DELTA) | (green < DARK)
    fg = ndi.binary_fill_holes(green < filters.threshold_otsu(green[~purple]))
    fg = ndi.binary_fill_holes(ndi.binary_opening(fg, morphology.disk(2)))
    labels = measure.label(fg)
    h, w = fg.shape
    centre = labels[h // 2, w // 2]
    cells = []
    for p in measure.regionprops(labels):
        y0, x0, y1, x1 = p.bbox
        if y0 == 0 or x0 == 0 or y1 == h or x1 == w or p.label == centre:
            continue
        if not MIN_D <= p.equivalent_diameter_area <= MAX_D or p.solidity < SOLIDITY or p.eccentricity > ECCENTRICITY:
            continue
        yy, xx = p.coords.T
        if np.percentile(delta[yy, xx], 95) > PURPLE_DELTA or np.percentile(green[yy, xx], 5) < DARK:
            continue
        cells.append(p)
    return cells
