"""The red-cell segmentation behind CROP_MPP (pipelines/measure_crop_scale.py) on a drawn crop: pink
discs of a known diameter around a purple leukocyte in the centre."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from wsi_screen.train.red_cells import segment_red_cells

BACKGROUND, RED_CELL, PALLOR, LEUKOCYTE = (225, 215, 205), (215, 130, 135), (220, 165, 165), (110, 60, 160)


def drawn_crop(diameter=72, leukocyte=(180, 180), size=360, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.empty((size, size, 3), np.float32)
    img[:] = BACKGROUND

    def disc(cy, cx, d, colour):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= (d / 2) ** 2] = colour

    for cy, cx in [(60, 60), (60, 300), (300, 60), (300, 300), (60, 180)]:
        disc(cy, cx, diameter, RED_CELL)
        disc(cy, cx, diameter / 3, PALLOR)  # central pallor, a hole the mask must fill
    disc(*leukocyte, 110, LEUKOCYTE)
    img = ndi.gaussian_filter(img, sigma=(1.5, 1.5, 0)) + rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("leukocyte", [(180, 180), (180, 300)], ids=["centre", "off-centre, excluded by colour"])
def test_segmentation_measures_red_cells_and_leaves_out_the_leukocyte(leukocyte):
    cells = segment_red_cells(drawn_crop(diameter=72, leukocyte=leukocyte))
    assert len(cells) == 5
    for c in cells:
        assert abs(c.equivalent_diameter_area - 72) / 72 < 0.03
        assert np.hypot(*np.subtract(c.centroid, leukocyte)) > 80  # none of them is the leukocyte
