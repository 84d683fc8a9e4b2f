"""Outline figures against wbc_seg (Zheng et al. 2018, GPL-3.0: evaluation only, never training):
the detector's cell mask and the stain nucleus against the hand-drawn cell (cytoplasm 128 +
nucleus 255) and nucleus (255) masks, each IoU measured at the masks' native 120×120 pixels.

wbc_seg states no scale. It is taken from the cells themselves: the median leukocyte box of
TXL-PBC (√(w·h) at each field's red-cell scale, cells the frame does not cut) over the median
equivalent diameter of the wbc_seg cells. Both sets are mostly neutrophils; the figures are also
reported at ±15 % of that scale."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..cell_images import read_image
from ..config import DetectConfig
from ..detect import instances
from ..nucleus import nucleus_mask
from ..qc import brightest_colour
from .fields import Field, estimate_mpp
from .other_lab import wbc_seg_table

CONTEXT_UM = 48.0  # the crop is padded with its own background to this field for the U-Net


@dataclass(frozen=True, eq=False)
class Crop:
    id: int
    cls: str
    rgb: np.ndarray
    mask: np.ndarray  # 0 background, 128 cytoplasm, 255 nucleus


def load_wbc_seg(root: Path) -> list[Crop]:
    return [
        Crop(int(i), cell, read_image(file), np.asarray(Image.open(root / "masks" / f"{int(i):03d}.png")))
        for i, file, cell in wbc_seg_table(root).itertuples(index=False)
    ]


def estimate_crop_mpp(crops: list[Crop], fields: list[Field]) -> float:
    """µm/px of the crops: TXL-PBC's median leukocyte size (µm) over theirs (px)."""
    sizes = []
    for f, m in zip(fields, estimate_mpp(fields)):
        for x0, y0, x1, y1 in f.wbc_boxes:
            if x0 > 1 and y0 > 1 and x1 < f.width - 1 and y1 < f.height - 1:
                sizes.append(np.sqrt((x1 - x0) * (y1 - y0)) * m)
    diameters = [2 * np.sqrt((c.mask > 0).sum() / np.pi) for c in crops]
    return float(np.median(sizes) / np.median(diameters))


def _resize(a: np.ndarray, shape: tuple[int, int], resample) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((shape[1], shape[0]), resample))


def _mask_resize(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask at another resolution by area averaging (no staircase at 5× upsampling)."""
    return _resize((mask * 255).astype(np.uint8), shape, Image.BILINEAR) >= 128


def detector_cell(crop: Crop, mpp: float, segmenter, cfg: DetectConfig) -> np.ndarray:
    """The detector's instance at the crop centre, as a mask at the crop's native pixels."""
    rgb = crop.rgb
    factor = mpp / segmenter.mpp
    small = _resize(rgb, (max(1, round(rgb.shape[0] * factor)), max(1, round(rgb.shape[1] * factor))), Image.BILINEAR)
    background = brightest_colour(rgb, 80)  # the palest fifth: plasma
    h, w = small.shape[:2]
    side = max(round(CONTEXT_UM / segmenter.mpp), h, w)
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = background
    y0, x0 = (side - h) // 2, (side - w) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = small
    labels, _ = instances(segmenter(canvas), cfg, segmenter.mpp, canvas)
    labels = labels[y0 : y0 + h, x0 : x0 + w]
    centre = labels[labels.shape[0] // 2 - 2 : labels.shape[0] // 2 + 3, labels.shape[1] // 2 - 2 : labels.shape[1] // 2 + 3]
    ids = np.bincount(centre[centre > 0].ravel())
    if not ids.size:
        return np.zeros(rgb.shape[:2], bool)
    return _mask_resize(labels == ids.argmax(), rgb.shape[:2])


def stain_nucleus(crop: Crop, cell: np.ndarray, mpp: float) -> np.ndarray:
    """The product's nucleus inside `cell`, segmented on the crop's own pixels (as `screen` does on
    a slide's)."""
    return nucleus_mask(crop.rgb, cell, mpp)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def outline_scores(crops: list[Crop], mpp: float, segmenter, cfg: DetectConfig) -> pd.DataFrame:
    """Per crop: cell IoU of the detector, nucleus IoU inside the detector's cell and inside the
    true cell (the nucleus step alone)."""
    rows = []
    for c in crops:
        true_cell, true_nucleus = c.mask > 0, c.mask == 255
        cell = detector_cell(c, mpp, segmenter, cfg)
        rows.append(
            {
                "id": c.id,
                "class": c.cls,
                "found": bool(cell.any()),
                "cell_iou": iou(cell, true_cell),
                "nucleus_iou": iou(stain_nucleus(c, cell, mpp), true_nucleus),
                "nucleus_iou_true_cell": iou(stain_nucleus(c, true_cell, mpp), true_nucleus),
            }
        )
    return pd.DataFrame(rows)


def summarize_outlines(scores: pd.DataFrame) -> dict:
    """Mean IoUs per class and over all crops (a crop where the detector found no cell scores 0),
    the share found, and the cell IoU of the found ones."""
    cols = ["found", "cell_iou", "nucleus_iou", "nucleus_iou_true_cell"]

    def one(g: pd.DataFrame) -> dict:
        return {"n": int(len(g)), **g[cols].mean().round(4).to_dict(), "cell_iou_found": round(float(g.cell_iou[g.found].mean()), 4)}

    return {"all": one(scores), **{k: one(g) for k, g in scores.groupby("class")}}
