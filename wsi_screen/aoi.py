"""The area of interest of a blood smear: the monolayer, where red cells lie side by side without
overlapping, found on a low-resolution thumbnail. At 8 µm/px a red cell is about one pixel, so a
pixel's green optical density divided by that of one red-cell layer is the fraction of it covered
by cells (above 1: cells overlap). Averaged over a window this separates the thick end (dense,
overlapping), the monolayer, and the feathered edge and glass (sparse). The one-layer density is
measured on a few small patches read at 1 µm/px, where single red cells are resolved, because
stain strength differs between labs and slides. Also: the whole slide, or a user's polygons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely
from scipy import ndimage as ndi
from shapely.geometry import box, shape
from shapely.ops import unary_union
from skimage import draw, morphology

from .config import AoiConfig
from .errors import AoiError
from .records import AoiMask, Box
from .slide import Slide

CALIBRATION_MPP = 1.0  # single red cells (7.5 µm) are resolved here
CALIBRATION_UM = 100.0  # side of each calibration patch
CALIBRATION_PATCHES = 8
CELL_OD = 0.08  # green OD above which a calibration pixel is cell, not glass


def resolve_aoi(spec: str, slide: Slide, cfg: AoiConfig) -> AoiMask:
    """--aoi: "auto" (monolayer), "full" (whole slide) or a GeoJSON file of polygons."""
    if spec == "auto":
        aoi = monolayer_aoi(slide, cfg)
    elif spec == "full":
        aoi = full_aoi(slide, cfg.mpp)
    else:
        aoi = aoi_from_geojson(spec, slide, cfg.mpp)
    if not aoi.mask.any():
        hint = "; try --aoi full or draw one (GeoJSON)" if spec == "auto" else ""
        raise AoiError(f"the {aoi.method} area of interest is empty{hint}", slide.info.path)
    return aoi


def monolayer_aoi(slide: Slide, cfg: AoiConfig) -> AoiMask:
    """The monolayer, as a mask at cfg.mpp and polygons in level-0 px."""
    od = _green_od(slide.thumbnail(cfg.mpp))
    layers = od / _layer_od(slide, od, cfg.mpp)  # red-cell layers per pixel
    window = max(1, round(cfg.window_um / cfg.mpp))
    # seeds from the full window (robust), grown into the pixels that pass with a third of it, so
    # the boundary is not pulled inwards by windows that straddle the thick end or feathered edge
    seeds = _monolayer(layers, window, cfg)
    mask = ndi.binary_propagation(seeds, mask=_monolayer(layers, max(1, window // 3), cfg))
    radius = max(1, window // 2)
    disk = morphology.disk(radius).astype(bool)
    padded = np.pad(mask, radius, mode="edge")  # so closing does not erode the slide's border
    mask = ndi.binary_opening(ndi.binary_closing(padded, disk), disk)[radius:-radius, radius:-radius]
    max_px = int(cfg.min_region_mm2 * (1000.0 / cfg.mpp) ** 2)
    mask = morphology.remove_small_holes(morphology.remove_small_objects(mask, max_size=max_px), max_size=max_px)
    return _aoi(mask, cfg.mpp / slide.info.mpp, "auto")


def _monolayer(layers: np.ndarray, window: int, cfg: AoiConfig) -> np.ndarray:
    coverage = ndi.uniform_filter(np.minimum(layers, 1.0), window, mode="nearest")
    overlap = ndi.uniform_filter((layers > cfg.overlap_layers).astype(np.float32), window, mode="nearest")
    return (coverage >= cfg.min_coverage) & (coverage <= cfg.max_coverage) & (overlap <= cfg.max_overlap)


def full_aoi(slide: Slide, mpp: float = 8.0) -> AoiMask:
    """The whole slide (--aoi full), e.g. for fields or smears the monolayer finder gets wrong."""
    ds = mpp / slide.info.mpp
    mask = np.ones((_cells(slide.info.height, ds), _cells(slide.info.width, ds)), bool)
    return AoiMask(mask, ds, (box(0, 0, slide.info.width, slide.info.height),), "full")


def aoi_from_geojson(path: str | Path, slide: Slide, mpp: float = 8.0) -> AoiMask:
    """A user's polygons in level-0 px (e.g. a QuPath annotation export): a Feature,
    FeatureCollection or bare geometry; Polygon/MultiPolygon kept, detections and other
    geometry types ignored; clipped to the slide."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        geometries = [shape(g) for g in _polygon_geometries(data)]
    except FileNotFoundError:
        raise AoiError("AOI file not found", path) from None
    except (
        OSError,
        UnicodeDecodeError,
        json.JSONDecodeError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        shapely.errors.GEOSException,
    ) as exc:
        raise AoiError(f"not a usable GeoJSON polygon file ({exc.__class__.__name__}: {exc})", path) from None
    if not geometries:
        raise AoiError("no Polygon or MultiPolygon annotation in the GeoJSON", path)
    region = unary_union([shapely.make_valid(g) for g in geometries]).intersection(box(0, 0, slide.info.width, slide.info.height))
    polygons = tuple(g for g in getattr(region, "geoms", [region]) if g.geom_type == "Polygon" and g.area > 0)
    if not polygons:
        raise AoiError("its polygons lie outside the slide (coordinates must be level-0 pixels)", path)
    ds = mpp / slide.info.mpp
    mask = np.zeros((_cells(slide.info.height, ds), _cells(slide.info.width, ds)), bool)
    for polygon in polygons:
        mask |= _fill(polygon.exterior.coords, ds, mask.shape)
        for hole in polygon.interiors:
            mask &= ~_fill(hole.coords, ds, mask.shape)
    return AoiMask(mask, ds, polygons, "geojson")


def _green_od(rgb: np.ndarray) -> np.ndarray:
    """Green-channel optical density against the slide's own glass (haemoglobin and eosin absorb
    green most). Pure white (outside the scan) is not glass."""
    green = rgb[..., 1].astype(np.float32)
    real = green[(rgb < 255).any(axis=-1)]
    glass = np.percentile(real, 95) if real.size else 255.0
    return -np.log(np.clip(green / max(glass, 1.0), 1e-3, 1.0))


def _layer_od(slide: Slide, od: np.ndarray, mpp: float) -> float:
    """Mean green OD of one layer of red cells, from a few patches read at CALIBRATION_MPP in
    sparse-but-not-empty places (so cells seldom overlap there)."""
    smooth = ndi.uniform_filter(od, 5)
    occupied = smooth > np.percentile(smooth, 5) + 0.02
    if not occupied.any():
        raise AoiError("no cells found on the thumbnail (blank slide?)", slide.info.path)
    low, high = np.percentile(smooth[occupied], [15, 45])
    ys, xs = np.nonzero(occupied & (smooth >= low) & (smooth <= high))
    pick = np.linspace(0, len(ys) - 1, CALIBRATION_PATCHES).astype(int)
    half = CALIBRATION_UM / 2 / slide.info.mpp
    ds = mpp / slide.info.mpp
    values = []
    for y, x in zip(ys[pick], xs[pick]):
        cx, cy = (x + 0.5) * ds, (y + 0.5) * ds
        patch = _green_od(slide.read(Box(round(cx - half), round(cy - half), round(cx + half), round(cy + half)), CALIBRATION_MPP))
        values.append(patch[patch > CELL_OD])
    cells = np.concatenate(values)
    if cells.size < 50:
        raise AoiError("cannot calibrate red-cell density: too few cells resolved", slide.info.path)
    return float(np.median(cells))


def _aoi(mask: np.ndarray, ds: float, method: str) -> AoiMask:
    """Polygons (level-0 px) of a mask: the union of its row runs, simplified to one mask pixel."""
    boxes = []
    for y, row in enumerate(mask):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.view(np.int8), [0]])))
        boxes += [box(x0 * ds, y * ds, x1 * ds, (y + 1) * ds) for x0, x1 in zip(edges[::2], edges[1::2])]
    region = unary_union(boxes).simplify(ds) if boxes else None
    polygons = tuple(getattr(region, "geoms", [region])) if region is not None else ()
    return AoiMask(mask, ds, tuple(p for p in polygons if p.area > 0), method)


def _polygon_geometries(data) -> list[dict]:
    if isinstance(data, list):
        return [g for item in data for g in _polygon_geometries(item)]
    kind = data["type"]
    if kind == "FeatureCollection":
        return _polygon_geometries(data["features"])
    if kind == "Feature":
        if (data.get("properties") or {}).get("objectType", "annotation") not in ("annotation", "tma_core"):
            return []  # detections and cells are not areas of interest
        return _polygon_geometries(data["geometry"]) if data["geometry"] else []
    if kind == "GeometryCollection":
        return _polygon_geometries(data["geometries"])
    return [data] if kind in ("Polygon", "MultiPolygon") else []


def _fill(coords, ds: float, shape_rc: tuple[int, int]) -> np.ndarray:
    """Mask pixels whose centres lie inside a ring given in level-0 px."""
    xy = np.asarray(coords) / ds - 0.5
    out = np.zeros(shape_rc, bool)
    rr, cc = draw.polygon(xy[:, 1], xy[:, 0], shape_rc)
    out[rr, cc] = True
    return out


def _cells(length: int, ds: float) -> int:
    return max(1, int(np.ceil(length / ds)))
