"""Leukocyte maps → instances → owned Detections in level-0 pixels.

Instances: the cell map is split by watershed from one seed per cell core, so touching cells
become separate detections; cells whose core was missed still count once (their own seed). A cell
cut by the image edge keeps a smaller minimum area: only part of it is visible. In a slide the edges
of a tile's read box lie in the halo (or in padding past the slide's border), whose cells no tile
core owns there, so this only changes whole images such as camera fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import contourpy
import numpy as np
from scipy import ndimage as ndi
from shapely.geometry import Polygon
from skimage.segmentation import watershed

from .config import DetectConfig
from .qc import tile_qc
from .records import Box, Detection, Tile, TileResult
from .segmenters import NUCLEUS_PIXEL, PIECE_NUCLEUS_PIXEL, nucleus_hue, nucleus_stain, white_balanced, white_gain
from .timing import Stages, read_stage


def make_segmenter(cfg: DetectConfig):
    """The configured segmenter (imports torch only for the U-Net)."""
    from .segmenters import ClassicalSegmenter, UnetSegmenter

    if cfg.method == "classical":
        return ClassicalSegmenter(cfg.classical_nucleus_threshold)
    return UnetSegmenter(cfg.model, cfg.device)


def detector_mpp(cfg: DetectConfig) -> float:
    """µm/px the configured detector reads the slide at: its card's, or the classical baseline's."""
    from .segmenters import CLASSICAL_MPP

    if cfg.method == "classical":
        return CLASSICAL_MPP
    from .registry import load_card

    return load_card(cfg.model, "detector").mpp


def instances(maps: np.ndarray, cfg: DetectConfig, mpp: float, rgb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(2, H, W) cell/core probabilities → (labels, per-label mean cell probability). With the
    image, an instance must also be nucleated (`_nucleated`): red cells and platelets never are,
    whatever a network makes of their colour; `rgb` is read under its own white gain
    (`segmenters.white_gain`)."""
    cell = maps[0] > cfg.threshold
    seeds, regions, nr = _seeds(maps, cell, cfg, mpp)
    cell_px = np.flatnonzero(cell)
    cell_region = regions.ravel()[cell_px]
    pixels = None
    if rgb is not None and cfg.min_nucleus_fraction > 0:
        pixels = _pixels(rgb.reshape(-1, 3)[cell_px], white_gain(rgb))
    # A region inside the image with fewer nucleus pixels than the smallest instance must show
    # (min_nucleus_fraction of min_area) can hold no nucleated instance: it is not flooded (a
    # smear's thick end has hundreds of such regions).
    hopeless = None
    if pixels is not None and nr:
        hopeless = np.bincount(cell_region, pixels.nucleus, nr + 1) < cfg.min_nucleus_fraction * cfg.min_area_um2 / mpp**2
        hopeless[_on_border(regions)] = False
    labels = _flood(seeds, regions, nr, maps[1], hopeless)
    count = int(seeds.max())
    if not count:
        return labels, np.zeros(1, np.float32)
    # Per-instance means over the cell's pixels only (a small share of a tile), by bincount; the
    # pixels of regions not flooded count for the background, label 0.
    lab = labels.ravel()[cell_px]
    n_px = np.bincount(lab, minlength=count + 1)
    area_um2 = n_px * mpp**2
    n_px = np.maximum(n_px, 1)  # a divisor from here on
    score = (np.bincount(lab, maps[0].ravel()[cell_px], count + 1) / n_px).astype(np.float32)
    score[0] = 0.0  # the background
    at_edge = np.zeros(count + 1, bool)
    at_edge[_on_border(labels)] = True
    at_edge[0] = False
    min_area = np.where(at_edge, cfg.edge_min_area_um2, cfg.min_area_um2)
    keep = (area_um2 >= min_area) & (area_um2 <= cfg.max_area_um2) & (score >= cfg.min_score)
    if pixels is not None:
        region_of = np.zeros(count + 1, np.int64)
        region_of[lab] = cell_region
        keep &= _nucleated(pixels, lab, n_px, seeds.ravel()[cell_px], region_of, keep, at_edge, cfg.min_nucleus_fraction)
    keep[0] = False
    labels = np.where(keep[labels], labels, 0)
    return labels, score


def _seeds(maps: np.ndarray, cell: np.ndarray, cfg: DetectConfig, mpp: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(seeds 1..n, cell regions, number of regions): one seed per core of at least min_core_um2;
    a cell region without a surviving seed becomes its own seed, so a cell whose core was missed
    still counts once."""
    core = (maps[1] > cfg.threshold) & cell
    seeds, n = ndi.label(core)
    if n:
        small = np.bincount(seeds.ravel()) < max(1.0, cfg.min_core_um2 / mpp**2)
        seeds[small[seeds]] = 0  # booleans per label, looked up per pixel
    regions, nr = ndi.label(cell)
    if nr:
        seeded = np.zeros(nr + 1, bool)
        seeded[regions[seeds > 0]] = True
        orphan = ~seeded[regions] & cell
        seeds = np.where(orphan, regions + seeds.max(), seeds)
    return _relabel(seeds), regions, nr


class _Pixels(NamedTuple):
    """The cell pixels' colour as the nucleated check reads it: raw (for pieces cut by the image
    frame) and under white light (the image divided by its plasma colour, so another lab's lamp
    cast does not hide a pale nucleus)."""

    raw: np.ndarray
    stain: np.ndarray
    hue: np.ndarray  # piles of red cells stain as darkly, not in this hue
    nucleus: np.ndarray


def _pixels(raw: np.ndarray, gain: np.ndarray) -> _Pixels:
    balanced = white_balanced(raw, gain)
    stain, hue = nucleus_stain(balanced), nucleus_hue(balanced)
    return _Pixels(raw, stain, hue, (stain > NUCLEUS_PIXEL) & hue)


def _nucleated(
    pixels: _Pixels,
    lab: np.ndarray,
    n_px: np.ndarray,
    seed: np.ndarray,
    region_of: np.ndarray,
    keep: np.ndarray,
    at_edge: np.ndarray,
    fraction: float,
) -> np.ndarray:
    """Per instance (labels `lab` of the cell pixels, `n_px` each label's pixel count, at least 1,
    `seed` the pixels' seed labels, `region_of` each instance's cell region): `fraction` of its
    pixels nucleus-stained, and of its seed's, so a core on a red cell touching a leukocyte cannot
    win a basin taking in part of the leukocyte's nucleus (dropped, its basin becomes background). A
    piece must show its chromatin (a stricter stain level): one sharing its cell region with an
    instance showing more (a purplish red cell touching a leukocyte), and one cut by the image
    frame, judged on its raw pixels (a camera field's cut red cells would otherwise count; a slide's
    tile edges lie in the halo)."""
    count = len(keep) - 1
    stained = np.bincount(lab, pixels.nucleus, count + 1) / n_px
    with np.errstate(invalid="ignore"):  # every seed pixel is a cell pixel
        seeded_on_nucleus = np.nan_to_num(np.bincount(seed, pixels.nucleus, count + 1) / np.bincount(seed, minlength=count + 1), nan=1.0)
    nucleated = (stained >= fraction) & (seeded_on_nucleus >= fraction)
    n_regions = int(region_of.max()) + 1  # label 0's entry may name a region no instance holds
    shares = np.bincount(region_of[1:], minlength=n_regions)[region_of] > 1
    chromatin = np.bincount(lab, (pixels.stain >= PIECE_NUCLEUS_PIXEL) & pixels.hue, count + 1) / n_px
    most = np.zeros(n_regions)
    candidate = keep & nucleated
    np.maximum.at(most, region_of[candidate], chromatin[candidate])
    nucleated &= ~shares | (chromatin >= most[region_of]) | (chromatin >= fraction)
    if at_edge[1:].any():  # camera fields; a slide tile's edges lie in its halo
        cut = at_edge[lab]
        raw = nucleus_stain(pixels.raw[cut]) >= PIECE_NUCLEUS_PIXEL
        nucleated = np.where(at_edge, np.bincount(lab[cut], raw, count + 1) / n_px >= fraction, nucleated)
    return nucleated


def _on_border(labels: np.ndarray) -> np.ndarray:
    """The labels on the image's outermost rows and columns."""
    return np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])


def _flood(seeds: np.ndarray, regions: np.ndarray, n_regions: int, core: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
    """Each cell region's pixels labelled by watershed on the core map from the region's seeds:
    what `watershed(-core, seeds, mask=regions > 0)` gives, pixel for pixel, for a fraction of its
    time. A region with one seed is that seed's, whole; only regions with two or more (touching
    cells) are flooded, each within its own box, instead of the whole tile; those marked in `skip`
    (by region label) are left unlabelled."""
    at = seeds > 0
    region_of_seed = np.zeros(int(seeds.max()) + 1, np.int64)
    region_of_seed[seeds[at]] = regions[at]
    n_seeds = np.bincount(region_of_seed[1:], minlength=n_regions + 1)
    sole = np.zeros(n_regions + 1, seeds.dtype)
    sole[region_of_seed[1:]] = np.arange(1, len(region_of_seed), dtype=seeds.dtype)
    sole[n_seeds != 1] = 0
    labels = sole[regions]
    shared = np.flatnonzero((n_seeds > 1) & (True if skip is None else ~skip))
    boxes = ndi.find_objects(regions) if shared.size else []
    for r in shared:
        sl = boxes[r - 1]
        inside = regions[sl] == r
        flooded = watershed(-core[sl], np.where(inside, seeds[sl], 0), mask=inside)
        labels[sl][inside] = flooded[inside]
    return labels


def _relabel(seeds: np.ndarray) -> np.ndarray:
    """Consecutive labels 1..n, keeping distinct seeds distinct (a lookup table: no sort of the image)."""
    present = np.zeros(int(seeds.max()) + 1, bool)
    present[seeds.ravel()] = True
    present[0] = False
    return (np.cumsum(present) * present).astype(seeds.dtype)[seeds]


def to_detections(
    labels: np.ndarray,
    score: np.ndarray,
    origin: tuple[float, float],
    scale: float,
    mpp: float,
    keep: Callable[[float, float], bool] | None = None,
    core: np.ndarray | None = None,
) -> list[Detection]:
    """Instances of an image whose pixel (row, col) covers level-0 [x0 + col·scale, …) →
    Detections in level-0 px. `mpp` is the image's µm/px (for areas); `keep(x, y)`, if given,
    selects by level-0 centre before any outline is traced.

    The centre, where the cell's patch is cut, is the instance's centroid weighted by the `core`
    probability when given: an outline that takes in part of a touching red cell moves its plain
    centroid by up to 4 µm, and the classifier, trained on centred crops, then reads the
    off-centre cell as a non-leukocyte (two lymphocytes of the demo slide: P(reject) 0.53 off
    centre, 0.002 at the core's centre). The core map is the cell's inner part, low on a swallowed
    red cell."""
    x0, y0 = origin
    detections = []
    for index, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == index
        rows, cols = np.nonzero(mask)
        weight = None if core is None else core[sl][mask]
        if weight is not None and weight.sum() <= 1e-6:  # a region with no core at all: its plain centroid
            weight = None
        cy = np.average(rows, weights=weight) + sl[0].start + 0.5
        cx = np.average(cols, weights=weight) + sl[1].start + 0.5
        if keep is not None and not keep(x0 + cx * scale, y0 + cy * scale):
            continue
        polygon = outline(mask, (x0 + sl[1].start * scale, y0 + sl[0].start * scale), scale)
        bx0, by0, bx1, by1 = polygon.bounds
        detections.append(
            Detection(
                x=x0 + cx * scale,
                y=y0 + cy * scale,
                bbox=Box(int(np.floor(bx0)), int(np.floor(by0)), int(np.ceil(bx1)), int(np.ceil(by1))),
                area_um2=float(mask.sum() * mpp**2),
                score=float(score[index]),
                polygon=tuple((round(x, 2), round(y, 2)) for x, y in polygon.exterior.coords),
            )
        )
    return detections


def outline(mask: np.ndarray, origin: tuple[float, float], scale: float) -> Polygon:
    """The outer contour of a mask (its largest part) as a valid level-0 Polygon, for a mask whose
    pixel (row, col) covers [x0 + col·scale, …); simplified to half a pixel by Douglas-Peucker
    (a tenth of the topology-preserving simplifier's time; the rare self-touching result is
    repaired below)."""
    x0, y0 = origin
    framed = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.float32)  # np.pad's result, without its overhead per small mask
    framed[1:-1, 1:-1] = mask
    contour = longest_contour(framed)
    polygon = Polygon(np.column_stack([x0 + (contour[:, 1] - 0.5) * scale, y0 + (contour[:, 0] - 0.5) * scale])).simplify(
        scale * 0.5, preserve_topology=False
    )
    if not polygon.is_valid:
        polygon = polygon.buffer(0)
    if polygon.geom_type != "Polygon":
        polygon = max(polygon.geoms, key=lambda g: g.area)
    return polygon


def longest_contour(z: np.ndarray) -> np.ndarray:
    """The longest 0.5-level contour of `z` (closed: zero on its border) as (n, 2) rows, cols:
    skimage's `find_contours` contour point for point, traced by contourpy in C++ instead of
    skimage's assembly of segments in Python (a nucleus outline at patch resolution has ~650
    points). Douglas-Peucker keeps a ring's first point, so the ring starts where skimage's does:
    at its last point in raster order (largest row, then largest column), where skimage's assembly
    of segments square by square closes it."""
    lines = contourpy.contour_generator(z=z, line_type=contourpy.LineType.Separate, corner_mask=False).lines(0.5)
    ring = max(lines, key=len)[:-1, ::-1]  # contourpy gives x, y and repeats the first point
    start = np.lexsort((ring[:, 1], ring[:, 0]))[-1]
    return np.concatenate([ring[start:], ring[: start + 1]])


def detect_image(rgb: np.ndarray, segmenter, cfg: DetectConfig, scale: float = 1.0) -> list[Detection]:
    """All leukocytes of one image already at the detector's µm/px, in pixels `scale` times that
    image's (e.g. a camera field's own pixels, before it was resampled)."""
    maps = segmenter(rgb)
    labels, score = instances(maps, cfg, segmenter.mpp, rgb)
    return to_detections(labels, score, (0.0, 0.0), scale, segmenter.mpp, core=maps[1])


def detect_tile(slide, tile: Tile, segmenter, cfg: DetectConfig, stages: Stages | None = None) -> TileResult:
    """Detections owned by `tile`: read its halo'd box at the detector µm/px, segment, keep the
    cells whose centre lies in the tile's core; QC figures of the core come free. Times its
    stages into `stages` when given."""
    stages = stages if stages is not None else Stages()
    with stages.time(read_stage("tile", slide.level_for(segmenter.mpp))):
        rgb = slide.read(tile.read, segmenter.mpp)
    scale = tile.read.width / rgb.shape[1]
    with stages.time("unet"):
        maps = segmenter(rgb)
    with stages.time("instances"):
        # Instances of the tile's part on the slide only: past the slide's border a tile reads white,
        # and a cell cut by the border is judged as a camera field's frame-cut piece is (`instances`).
        rows, cols = _window(tile.read.clipped(slide.info.width, slide.info.height), tile.read, scale)
        on_slide, on_maps = rgb[rows, cols], maps[:, rows, cols]
        labels, score = instances(on_maps, cfg, segmenter.mpp, on_slide)
        origin = (tile.read.x0 + cols.start * scale, tile.read.y0 + rows.start * scale)
        owned = tuple(to_detections(labels, score, origin, scale, segmenter.mpp, keep=tile.core.contains, core=on_maps[1]))
    with stages.time("tile qc"):
        qc = tuple(tile_qc(rgb[_window(b, tile.read, scale)]) for b in tile.qc_blocks)
    return TileResult(tile, owned, qc, seconds=stages.items(), precision=segmenter.precision)


def _window(box: Box, read: Box, scale: float) -> tuple[slice, slice]:
    """The rows and columns of level-0 `box` in an image of the `read` box at `scale` level-0 px per pixel."""
    x0, y0 = round((box.x0 - read.x0) / scale), round((box.y0 - read.y0) / scale)
    return slice(y0, y0 + round(box.height / scale)), slice(x0, x0 + round(box.width / scale))
