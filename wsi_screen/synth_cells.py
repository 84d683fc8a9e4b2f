"""Cell sprites for synthetic smears: real red cells cut from TXL-PBC fields, real leukocytes from
single-cell crops, or drawn ones when no data is at hand. A sprite is optical density (OD, so
overlapping red cells add up like stain does) plus a soft alpha, already at the slide's µm/px.

A real leukocyte comes two ways. "pasted": cut along its segmented outline with a 0.3 µm soft
edge. "faithful": the whole crop around the cell, opaque to 0.5 µm outside the outline (the
cytoplasm rim a segmentation misses), fading out linearly to nothing at 1.75 µm, so the cell keeps
its own rim and plasma while no pixel beyond 2 µm of its recorded outline (traced from the mask to
within a pixel, 0.25 µm at the coarsest slides) comes from its crop. A faithful crop also
gives its red cells' mean optical density, to which the slide's red cells are scaled: labs stain
red cells differently (DeepAPL's about 1.6× as dense as PBC's)."""

from __future__ import annotations

import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage as ndi
from skimage import feature, filters, measure, morphology, segmentation

from .cell_images import CROP_MPP
from .qc import brightest_colour

RBC_UM = 7.5  # red-cell diameter used to calibrate each field's µm/px
STAINED_OD = 0.15  # optical density summed over RGB above which a pixel holds a cell, not glass

PBC_FIELD_SIZES = {(360, 363), (366, 369)}  # TXL-PBC fields that come from PBC (same stain as the crops)


@dataclass(frozen=True, eq=False)
class Sprite:
    od: np.ndarray  # H×W×3 float32 optical density (-ln transmittance) per RGB channel
    alpha: np.ndarray  # H×W float32 in [0, 1]
    code: str = "RBC"
    source: str = "drawn"
    cell: np.ndarray | None = None  # H×W bool, the cell's own mask where alpha extends past it
    glass: tuple[float, float, float] | None = None  # RGB of the crop's own glass (its OD's zero)
    red_cell_od: tuple[float, float, float] | None = None  # mean OD of the crop's red cells (faithful leukocytes)

    @property
    def mask(self) -> np.ndarray:
        return self.alpha > 0.5 if self.cell is None else self.cell


def _glass(rgb: np.ndarray) -> np.ndarray:
    """The image's own glass: median of its brightest twentieth."""
    return brightest_colour(rgb, 95)


def _od_of(rgb: np.ndarray) -> np.ndarray:
    """OD relative to the image's own glass."""
    return -np.log(np.clip(rgb.astype(np.float32) / _glass(rgb), 1e-3, 1.0))


def _resized(sprite_od: np.ndarray, alpha: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = alpha.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    od = np.stack([np.asarray(Image.fromarray(sprite_od[..., c]).resize(size, Image.Resampling.BILINEAR)) for c in range(3)], -1)
    a = np.asarray(Image.fromarray(alpha).resize(size, Image.Resampling.BILINEAR))
    return od.astype(np.float32), np.clip(a, 0, 1).astype(np.float32)


def _soft(mask: np.ndarray, sigma_px: float) -> np.ndarray:
    return np.clip(ndi.gaussian_filter(mask.astype(np.float32), sigma_px), 0, 1)


def drawn_rbc(mpp: float, rng: np.random.Generator) -> Sprite:
    """A biconcave red cell: denser rim, pale centre."""
    r = rng.normal(RBC_UM, 0.4) / 2 / mpp
    n = int(np.ceil(r)) * 2 + 3
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    rho = np.hypot(yy, xx) / r
    density = np.where(rho <= 1, 0.55 + 0.45 * rho**2, 0.0)[..., None]
    return Sprite((density * np.array([0.22, 0.55, 0.38])).astype(np.float32), _soft(rho <= 1, 0.6))


def drawn_leukocyte(code: str, mpp: float, rng: np.random.Generator) -> Sprite:
    """A pale cytoplasm disk with a dark purple nucleus (three lobes for segmented neutrophils)."""
    r = rng.uniform(5.5, 7.5) / mpp
    n = int(np.ceil(r)) * 2 + 5
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    cell = np.hypot(yy, xx) <= r
    lobes = 3 if code == "NGS" else 1
    nucleus = np.zeros_like(cell)
    for k in range(lobes):
        angle = rng.uniform(0, 2 * np.pi) if lobes == 1 else 2 * np.pi * k / lobes
        off = 0.0 if lobes == 1 else 0.35 * r
        cy, cx = off * np.sin(angle), off * np.cos(angle)
        nr = r * (0.65 if lobes == 1 else 0.33)
        nucleus |= ((yy - cy) / nr) ** 2 + ((xx - cx) / (0.8 * nr)) ** 2 <= 1
    od = np.where(cell[..., None], [0.12, 0.14, 0.06], 0) + np.where(nucleus[..., None], [1.0, 1.1, 0.45], 0)
    return Sprite(od.astype(np.float32), _soft(cell, 0.8), code)


def real_rbcs(txl_dir: Path, mpp: float, rng: np.random.Generator, n: int = 150) -> list[Sprite]:
    """Red cells cut from PBC-derived TXL-PBC fields (class 1 boxes), each field rescaled by its
    own µm/px (median whole-cell box = 7.5 µm)."""
    fields = sorted((txl_dir / "images").glob("*/*.jpg"))
    sprites: list[Sprite] = []
    for i in rng.permutation(len(fields)):
        if len(sprites) >= n:
            break
        image = fields[i]
        labels = txl_dir / "labels" / image.parent.name / f"{image.stem}.txt"
        with Image.open(image) as im:
            if im.size not in PBC_FIELD_SIZES or not labels.exists():
                continue
            rgb = np.asarray(im.convert("RGB"))
        sprites += _field_rbcs(rgb, np.loadtxt(labels, ndmin=2), mpp)
    if not sprites:
        raise FileNotFoundError(f"no PBC-derived TXL-PBC fields with red-cell boxes under {txl_dir}")
    return sprites[:n]


def _field_rbcs(rgb: np.ndarray, boxes: np.ndarray, mpp: float) -> list[Sprite]:
    h, w = rgb.shape[:2]
    if boxes.size == 0:
        return []
    rbc = boxes[boxes[:, 0] == 1][:, 1:] * [w, h, w, h]
    x0, y0 = rbc[:, 0] - rbc[:, 2] / 2, rbc[:, 1] - rbc[:, 3] / 2
    x1, y1 = x0 + rbc[:, 2], y0 + rbc[:, 3]
    whole = (x0 > 2) & (y0 > 2) & (x1 < w - 2) & (y1 < h - 2)
    if whole.sum() < 2:
        return []
    field_mpp = RBC_UM / np.median(np.maximum(rbc[whole, 2], rbc[whole, 3]))
    od = _od_of(rgb)
    out = []
    for bx0, by0, bx1, by1 in zip(x0[whole], y0[whole], x1[whole], y1[whole]):
        ix0, iy0, ix1, iy1 = int(bx0), int(by0), int(np.ceil(bx1)), int(np.ceil(by1))
        crop = od[iy0:iy1, ix0:ix1]
        yy, xx = np.mgrid[: iy1 - iy0, : ix1 - ix0]
        ellipse = ((xx + 0.5 - (bx1 - bx0) / 2) / ((bx1 - bx0) / 2)) ** 2 + ((yy + 0.5 - (by1 - by0) / 2) / ((by1 - by0) / 2)) ** 2 <= 1
        mask = ndi.binary_fill_holes(crop.sum(-1) > STAINED_OD) & ellipse
        red, green = crop[mask][:, 0], crop[mask][:, 1]
        if mask.mean() < 0.4 or red.mean() > green.mean() or red.max() > 1.0:  # not a clean red cell: red
            continue  # light passes a red cell; a red-absorbing speck is a neighbour's nucleus or a platelet
        out.append(Sprite(*_resized(crop * mask[..., None], _soft(mask, 1.0), field_mpp / mpp)))
    return out


def real_leukocytes(
    cells_dir: Path, codes: set[str], sources: tuple[str, ...], only: Collection[str] | None = None
) -> dict[str, list[Path]]:
    """Crop files per class code from data/cells/manifest.csv, limited to the given sources and,
    if given, to the manifest `file`s in `only` (e.g. a model's held-out cells)."""
    manifest = pd.read_csv(cells_dir / "manifest.csv")
    manifest = manifest[manifest["source"].isin(sources) & manifest["class"].isin(codes)]
    if only is not None:
        manifest = manifest[manifest["file"].isin(set(only))]
    files = {code: [cells_dir / f for f in sorted(group["file"])] for code, group in manifest.groupby("class")}
    missing = sorted(codes - set(files))
    if missing:
        raise ValueError(f"no crops of class(es) {', '.join(missing)} from source(s) {', '.join(sources)} in {cells_dir}")
    return files


FULL_UM, MARGIN_UM = 0.5, 1.75  # faithful sprites: opaque to FULL_UM outside the cell, nothing of the crop past MARGIN_UM


def cut_leukocyte(path: Path, code: str, mpp: float, faithful: bool = False) -> Sprite | None:
    """The leukocyte at the centre of a crop at `mpp`, pasted or faithful (module docstring). None
    when the crop is unreadable or the cut looks implausible."""
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except OSError as exc:  # a few source JPEGs are truncated
        warnings.warn(f"skipping unreadable crop {path}: {exc}", stacklevel=2)
        return None
    od = _od_of(rgb)
    cell = _segment(od)
    if cell is None:
        return None
    source = f"{path.parent.name}/{path.name}"
    r0, c0, r1, c1 = measure.regionprops(cell.astype(np.uint8))[0].bbox
    if not faithful:
        pad = 4
        sl = (slice(max(r0 - pad, 0), r1 + pad), slice(max(c0 - pad, 0), c1 + pad))
        return Sprite(*_resized(od[sl], _soft(cell[sl], 0.3 / CROP_MPP), CROP_MPP / mpp), code=code, source=source)
    pad = int(np.ceil(MARGIN_UM / CROP_MPP)) + 2  # reflect where the margin runs past the crop's edge
    sl = (slice(r0, r1 + 2 * pad), slice(c0, c1 + 2 * pad))
    red_od = red_cell_od(od, cell)
    od = np.pad(od, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")[sl]
    od, inside = _resized(od, np.pad(cell, pad)[sl].astype(np.float32), CROP_MPP / mpp)
    inside = inside > 0.5
    return Sprite(od, faithful_alpha(inside, mpp), code, source, inside, tuple(float(g) for g in _glass(rgb)), red_od)


def _red_cell_pixels(od: np.ndarray) -> np.ndarray:
    """Stained pixels that absorb green more than red, as red cells do (nuclei and platelets absorb red)."""
    return (od.sum(-1) > STAINED_OD) & (od[..., 0] < od[..., 1])


def red_cell_od(od: np.ndarray, cell: np.ndarray) -> tuple[float, float, float] | None:
    """Mean OD of a crop's red cells (its stained foreground 1 µm or more from the leukocyte `cell`,
    less red-absorbing pixels: another leukocyte's nucleus, platelets); None when it shows none."""
    fg = _red_cell_pixels(od) & (ndi.distance_transform_edt(~cell) * CROP_MPP >= 1.0)
    return tuple(float(v) for v in od[fg].mean(0)) if fg.sum() * CROP_MPP**2 >= RBC_UM**2 else None


def in_stain(red_cells: list[Sprite], target: np.ndarray) -> list[Sprite]:
    """Red cells with their OD scaled per channel so their mean is `target` (Beer–Lambert: stain
    density scales OD): a slide's red cells in its leukocytes' own stain."""
    mean = np.concatenate([r.od[(r.alpha > 0.5) & _red_cell_pixels(r.od)] for r in red_cells]).mean(0)
    gain = (np.asarray(target) / mean).astype(np.float32)
    return [Sprite(r.od * gain, r.alpha) for r in red_cells]


def faithful_alpha(inside: np.ndarray, mpp: float) -> np.ndarray:
    """Opaque to FULL_UM outside the cell mask `inside`, fading to nothing at MARGIN_UM."""
    outside_um = ndi.distance_transform_edt(~inside) * mpp
    return np.clip((MARGIN_UM - outside_um) / (MARGIN_UM - FULL_UM), 0, 1).astype(np.float32)


def crop_alpha(rgb: np.ndarray) -> np.ndarray | None:
    """The faithful alpha of the leukocyte at the centre of a crop at CROP_MPP, at the crop's own
    pixels; None where the cut looks implausible (as `cut_leukocyte`)."""
    cell = _segment(_od_of(rgb))
    return None if cell is None else faithful_alpha(cell, CROP_MPP)


def lay_on(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """`rgb` laid over `background` (same size) with `alpha` (0–1) as the faithful generator lays a
    cell on a slide: optical densities blended, each relative to its own image's glass, and the
    result shown on the background's glass."""
    a = alpha[..., None].astype(np.float32)
    od = _od_of(background) * (1 - a) + _od_of(rgb) * a
    return np.clip(_glass(background) * np.exp(-od), 0, 255).astype(np.uint8)


def _segment(od: np.ndarray) -> np.ndarray | None:
    """Mask of the leukocyte nearest the crop's centre, cut from its neighbouring red cells: nucleus
    by red-channel density, the cell by a watershed of the foreground that gives each touching red
    cell its own basin. None when implausible (area, solidity, touching the crop's edge)."""
    fg = ndi.binary_fill_holes(ndi.binary_opening(od.sum(-1) > STAINED_OD, iterations=2))
    if fg.sum() < 100:
        return None
    nuclei = measure.label(ndi.binary_opening(od[..., 0] > max(0.4, filters.threshold_otsu(od[..., 0][fg])), iterations=2))
    props = [p for p in measure.regionprops(nuclei) if p.area > 80]
    if not props:
        return None
    h, w = fg.shape
    seed = min(props, key=lambda p: np.hypot(p.centroid[0] - h / 2, p.centroid[1] - w / 2))
    near = ndi.binary_dilation(nuclei == seed.label, iterations=round(3.0 / CROP_MPP))
    nucleus = np.isin(nuclei, [p.label for p in props if near[tuple(p.coords.T)].any()])
    hull = morphology.convex_hull_image(nucleus)
    dist = ndi.distance_transform_edt(fg)
    peaks = feature.peak_local_max(dist, min_distance=15, labels=measure.label(fg), exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(2, len(peaks) + 2)
    markers[hull] = 1
    cell = (segmentation.watershed(-dist, markers, mask=fg) == 1) | hull
    cell = measure.label(ndi.binary_fill_holes(ndi.binary_opening(cell, iterations=4)))
    cell = cell == cell[tuple(np.argwhere(hull)[0])]
    region = measure.regionprops(cell.astype(np.uint8))[0]
    r0, c0, r1, c1 = region.bbox
    if region.solidity < 0.85 or not 40 <= region.area * CROP_MPP**2 <= 500 or r0 == 0 or c0 == 0 or r1 == h or c1 == w:
        return None
    return None if _holds_two_cells(od, cell) else cell


SECOND_NUCLEUS_UM2 = 40.0  # a neutrophil's or eosinophil's lobes stay under this; a neighbour's whole nucleus does not
NECK_RATIO = 0.8  # a waist this much narrower than the thinner of two cell bodies joins two cells


def _holds_two_cells(od: np.ndarray, cell: np.ndarray) -> bool:
    """A crop's neighbour leukocyte can merge into the centre cell's mask (touching cells, nuclei
    within the lobe distance); placed as one cell it would be found as two. Two cells show as a
    second whole nucleus or as two round bodies joined by a waist."""
    nuclei = measure.label(ndi.binary_opening((od[..., 0] > max(0.4, filters.threshold_otsu(od[..., 0][cell]))) & cell, iterations=2))
    areas = sorted((p.area * CROP_MPP**2 for p in measure.regionprops(nuclei)), reverse=True)
    if len(areas) > 1 and areas[1] > SECOND_NUCLEUS_UM2:
        return True
    dist = ndi.distance_transform_edt(cell) * CROP_MPP
    peaks = feature.peak_local_max(dist, min_distance=round(2.0 / CROP_MPP), threshold_abs=2.5, exclude_border=False)
    for i, a in enumerate(peaks):
        for b in peaks[i + 1 :]:
            line = np.linspace(a, b, int(np.hypot(*(a - b))) + 2).round().astype(int)
            if dist[line[:, 0], line[:, 1]].min() < NECK_RATIO * min(dist[tuple(a)], dist[tuple(b)]):
                return True
    return False
