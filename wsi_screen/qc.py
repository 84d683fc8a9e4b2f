"""Slide quality control from the tiles the detector already reads (no extra I/O): focus, stain
colour and red-cell coverage per tile, summarised over the AOI with warnings outside normal ranges.

Focus is the Laplacian's spread relative to the image contrast (scale- and stain-independent at
the detector µm/px). Stain is the direction of the mean optical-density vector of stained pixels:
a Romanowsky stain absorbs green most, then blue, then red; a colour cast rotates the vector."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .config import QcConfig
from .records import SlideQc, TileQc

STAINED_OD = 0.3  # summed optical density over the plasma's above which a pixel belongs to a cell
BRIGHTEST = 99.0  # grey percentile above which pixels are taken to be plasma or glass
MIN_PLASMA_GREY = 0.75  # brighter than this, or the tile has no plasma (thick end): white is used


def channel_sum(a: np.ndarray) -> np.ndarray:
    """float32 sum over the last (colour) axis, the channels added in order: the values of numpy's
    `a.sum(-1)` in float32, at a tenth of its time (its reduction over a 3-long axis is slow)."""
    f = np.float32
    return np.asarray(a[..., 0], f) + np.asarray(a[..., 1], f) + np.asarray(a[..., 2], f)


def grey_level(a: np.ndarray) -> np.ndarray:
    """float32 mean of the colour channels: the values of `a.astype(np.float32).mean(-1)`."""
    return channel_sum(a) / np.float32(3)


def brightest_colour(rgb: np.ndarray, percentile: float, grey: np.ndarray | None = None) -> np.ndarray:
    """Median RGB of the pixels whose grey level (`grey_level`, given or computed) is at or above
    `percentile`: the glass or plasma of a tile (a high percentile) or of a cell crop (a lower one,
    the cell filling much of it)."""
    grey = grey_level(rgb) if grey is None else grey
    return np.median(np.asarray(rgb)[grey >= np.percentile(grey, percentile)].astype(np.float32), 0)


def plasma_colour(a: np.ndarray, grey: np.ndarray | None = None) -> np.ndarray:
    """The tile's plasma colour: the median of its brightest pixels. Cells are measured against it
    so a tinted background (a scanner's white balance, a yellowish plasma) is not counted as cells."""
    bg = brightest_colour(a, BRIGHTEST, grey)
    return bg if bg.mean() >= MIN_PLASMA_GREY * 255 else np.full(3, 255.0, np.float32)


# Optical density of each uint8 level, looked up rather than computed with a log per pixel (the
# same float32 values); level 0 counts as 1, the darkest a camera records.
OD_OF_LEVEL = -np.log(np.clip(np.arange(256, dtype=np.float32), 1, 255) / 255.0)


def tile_qc(rgb: np.ndarray) -> TileQc:
    od = OD_OF_LEVEL[rgb]
    grey = grey_level(rgb)
    stained = (channel_sum(od) + np.log(plasma_colour(rgb, grey) / 255.0).sum()) > STAINED_OD
    grey /= 255.0
    contrast = float(grey[stained].std()) if stained.sum() > 16 else 0.0
    focus = float(ndi.laplace(grey).std() / contrast) if contrast > 1e-3 else 0.0
    vec = od[stained].mean(0) if stained.any() else np.zeros(3)
    return TileQc(focus, tuple(float(v) for v in vec), float(stained.mean()), int(stained.size))


def density(n_cells: int, aoi_area_mm2: float) -> float:
    """Cells per mm² of AOI (0 for an empty AOI)."""
    return n_cells / aoi_area_mm2 if aoi_area_mm2 > 0 else 0.0


def summarize_qc(tiles: list[TileQc], n_cells: int, aoi_area_mm2: float, cfg: QcConfig) -> SlideQc:
    """Medians over tiles with cells in them, and warnings in plain words."""
    warnings = []
    useful = [t for t in tiles if t.coverage > 0.02]
    if not useful:
        return SlideQc(None, None, None, 0.0, ("no stained cells in the AOI: empty or unreadable area",))
    focus = float(np.median([t.focus for t in useful]))
    weights = np.array([t.coverage * t.n_pixels for t in useful])
    vec = (np.array([t.od_vector for t in useful]) * weights[:, None]).sum(0) / weights.sum()
    ref = np.asarray(cfg.stain_reference, float)
    cos = float(vec @ ref / (np.linalg.norm(vec) * np.linalg.norm(ref) + 1e-12))
    angle = float(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    coverage = float(np.median([t.coverage for t in useful]))
    if focus < cfg.min_focus:
        warnings.append(f"out of focus: focus score {focus:.2f} below {cfg.min_focus:.2f}; re-scan before trusting morphology")
    if angle > cfg.max_stain_angle_deg:
        warnings.append(f"unusual stain colour: {angle:.0f}° from a Romanowsky stain (limit {cfg.max_stain_angle_deg:.0f}°)")
    if not cfg.min_coverage <= coverage <= cfg.max_coverage:
        warnings.append(f"red-cell coverage {coverage:.0%} outside the monolayer range {cfg.min_coverage:.0%}–{cfg.max_coverage:.0%}")
    return SlideQc(focus, angle, coverage, density(n_cells, aoi_area_mm2), tuple(warnings))
