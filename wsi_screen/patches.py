"""Fixed-physical-scale cell patches: the classifier always sees the same field (29 µm by
default) whatever the scanner's µm/px, read from the best pyramid level and resampled."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .config import PatchConfig
from .records import Box


def patch_box(x: float, y: float, slide_mpp: float, cfg: PatchConfig) -> Box:
    """Level-0 box of the field centred on (x, y)."""
    side = cfg.field_um / slide_mpp
    x0, y0 = int(round(x - side / 2)), int(round(y - side / 2))
    n = int(round(side))
    return Box(x0, y0, x0 + n, y0 + n)


def extract_patch(slide, x: float, y: float, cfg: PatchConfig) -> np.ndarray:
    """size_px × size_px × 3 uint8; parts outside the slide come back padded by the reader."""
    rgb = slide.read(patch_box(x, y, slide.info.mpp, cfg), cfg.mpp)
    if rgb.shape[:2] != (cfg.size_px, cfg.size_px):
        rgb = np.asarray(Image.fromarray(rgb).resize((cfg.size_px, cfg.size_px), Image.BILINEAR))
    return rgb
