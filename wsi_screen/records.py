"""Typed, frozen records passed between pipeline stages. Coordinates are level-0 pixels, x then y."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Box:
    """Half-open rectangle [x0, x1) × [y0, y1) in level-0 pixels."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def intersects(self, other: "Box") -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


@dataclass(frozen=True)
class SlideInfo:
    """What a reader knows about a slide; mpp is µm per level-0 pixel."""

    path: Path
    backend: str
    width: int
    height: int
    mpp: float
    mpp_source: str
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]

    @property
    def area_mm2(self) -> float:
        return self.width * self.height * (self.mpp / 1000.0) ** 2


@dataclass(frozen=True, eq=False)
class AoiMask:
    """Monolayer area of interest: a boolean mask where each pixel covers `downsample` level-0
    pixels per side, and the same region as polygons in level-0 pixels."""

    mask: np.ndarray
    downsample: float
    polygons: tuple = ()  # shapely Polygons, level-0 px
    method: str = "auto"

    def area_mm2(self, mpp: float) -> float:
        return float(self.mask.sum()) * (self.downsample * mpp / 1000.0) ** 2

    def contains(self, x: float, y: float) -> bool:
        """True when the level-0 point (x, y) lies in the AOI."""
        col, row = int(x // self.downsample), int(y // self.downsample)
        return 0 <= row < self.mask.shape[0] and 0 <= col < self.mask.shape[1] and bool(self.mask[row, col])

    def covers(self, box: Box) -> bool:
        """True when any mask pixel under `box` is set."""
        d = self.downsample
        x0, y0 = int(box.x0 // d), int(box.y0 // d)
        x1, y1 = int(np.ceil(box.x1 / d)), int(np.ceil(box.y1 / d))
        return bool(self.mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)].any())


@dataclass(frozen=True)
class Tile:
    """A tile owns the detections whose centroid lies in `core`; it reads the larger `read` box
    so cells crossing the core edge are seen whole."""

    index: int
    core: Box
    read: Box


@dataclass(frozen=True)
class TileGrid:
    tiles: tuple[Tile, ...]
    tile_px: int
    halo_px: int


@dataclass(frozen=True)
class Detection:
    """One leukocyte: centroid, bounding box and outline in level-0 px; area in µm²."""

    x: float
    y: float
    bbox: Box
    area_um2: float
    score: float
    polygon: tuple[tuple[float, float], ...] = field(repr=False)


@dataclass(frozen=True)
class Nucleus:
    """A leukocyte's stain nucleus: area in µm², its share of the cell's area, and the outline of
    each lobe in level-0 px."""

    area_um2: float
    cell_fraction: float
    lobes: tuple[tuple[tuple[float, float], ...], ...] = field(repr=False)


@dataclass(frozen=True)
class TileQc:
    """Quality figures of one tile's core: focus, mean optical-density vector of stained pixels,
    fraction of stained pixels."""

    focus: float
    od_vector: tuple[float, float, float]
    coverage: float
    n_pixels: int


@dataclass(frozen=True)
class TileResult:
    """What a worker returns for one tile: its owned detections and QC, or the error that skipped it."""

    tile: Tile
    detections: tuple[Detection, ...]
    qc: TileQc | None = None
    error: str | None = None
