"""Synthetic blood smears with known answers, written as real pyramidal, tiled, JPEG-compressed
TIFFs with µm/px resolution tags (OpenSlide and tifffile both read them) and a QuPath-style
ground-truth GeoJSON. Along the long (x) axis: thick end (red cells overlap), monolayer band (side
by side; leukocytes go here), feathered edge (sparse), empty glass. Cells are real (TXL-PBC red
cells, PBC/DeepAPL leukocytes) when `data_dir` is given, drawn otherwise, so tests can always
build their own fixtures. Placement is random, so cells straddle arbitrary tile seams. Real
leukocytes are "faithful" (the default: each keeps its own rim, stain and 2 µm of its own plasma on
glass of the crops' own colour, among red cells in its crops' red-cell stain) or "pasted" (cut
along the outline onto a fixed glass colour); see `synth_cells`. In the monolayer red cells lie
against real leukocytes and up to 2 µm under their edge, as in the crops."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from shapely.geometry import Polygon, box

from .classes import CLASS_COLORS, class_index
from .detect import longest_contour
from .export.geojson import feature, write_features
from .synth_cells import RBC_UM, Sprite, cut_leukocyte, drawn_leukocyte, drawn_rbc, in_stain, real_leukocytes, real_rbcs

GLASS_RGB = np.array([242.0, 232.0, 220.0], np.float32)  # drawn and pasted cells; faithful ones use their crops' glass
GENERATORS = ("faithful", "pasted")
ZONE_FRACTIONS = (0.2, 0.45, 0.2)  # thick end, monolayer, feathered edge; the rest of the width is glass
THICK, MONO, FEATHER = 0, 1, 2
RBC_COVERAGE = {THICK: 1.8, MONO: 0.55, FEATHER: 0.08}  # area covered by red cells / zone area
NORMAL_MIX = {"NGS": 0.55, "LYT": 0.30, "MON": 0.07, "EOS": 0.04, "NGB": 0.03, "BAS": 0.01}
MONOLAYER = "Monolayer"
MONOLAYER_COLOR = (0, 160, 0)
LEUKOCYTE_GAP_UM = 2.0
RBC_TUCK_UM = 2.0  # how far a red cell may reach under a real leukocyte's edge, as they lie in a monolayer


@dataclass(frozen=True)
class PlacedCell:
    code: str
    x: float  # centroid, level-0 px
    y: float
    polygon: tuple[tuple[float, float], ...]  # outline, level-0 px
    area_um2: float
    source: str  # crop file (class/file) or "drawn"


@dataclass(frozen=True, eq=False)
class Smear:
    """A composed smear in memory: `background` is `rgb` before the leukocytes were laid on it."""

    rgb: np.ndarray
    background: np.ndarray
    mpp: float
    cells: tuple[PlacedCell, ...]
    band: Polygon


@dataclass(frozen=True, eq=False)
class SynthSlide:
    path: Path
    geojson: Path
    width: int
    height: int
    mpp: float
    cells: tuple[PlacedCell, ...]
    band: Polygon  # true monolayer, level-0 px


def make_slide(out_path: str | Path, *, seed: int = 0, tile: int = 256, quality: int = 85, **smear) -> SynthSlide:
    """Write a `compose`d smear to `out_path` (TIFF) and its ground truth next to it (`<stem>.geojson`)."""
    out_path = Path(out_path)
    rng = np.random.default_rng(seed)
    s = compose(rng=rng, **smear)
    height, width = s.rgb.shape[:2]
    write_pyramid(out_path, s.rgb, s.mpp, tile=tile, quality=quality)
    geojson = out_path.with_suffix(".geojson")
    write_ground_truth(geojson, s.cells, s.band, s.mpp, rng)
    return SynthSlide(out_path, geojson, width, height, s.mpp, s.cells, s.band)


def compose(
    *,
    rng: np.random.Generator,
    width: int = 4000,
    height: int = 3000,
    mpp: float = 0.2,
    n_leukocytes: int = 30,
    class_mix: Mapping[str, float] | None = None,
    sources: tuple[str, ...] = ("pbc",),
    data_dir: str | Path | None = None,
    only_files: Collection[str] | None = None,
    crops: Sequence[tuple[Path, str]] | None = None,
    generator: str = "faithful",
    zones: tuple[float, float, float] = ZONE_FRACTIONS,
) -> Smear:
    """A smear with `zones` (width fractions of thick end, monolayer, feathered edge; glass after).
    `class_mix` gives class proportions (exact counts by largest remainder, so a prevalence is
    placed exactly); leukocyte crops are drawn from `sources` ("pbc", "deepapl") under
    `data_dir`/cells (only the manifest files in `only_files` when given), or are exactly `crops`
    ((file, code) pairs; those that cannot be cut are left out); red cells from
    `data_dir`/detection/txl_pbc; `data_dir=None` draws them. Deterministic for a given rng state."""
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, not {generator!r}")
    faithful = generator == "faithful"
    codes = None if crops is not None else _apportion(dict(class_mix or NORMAL_MIX), n_leukocytes, rng)
    curves = _zone_curves(width, height, zones, rng)
    if crops is not None:
        leukocytes = [s for s in (cut_leukocyte(Path(f), code, mpp, faithful) for f, code in crops) if s is not None]
    else:
        leukocytes = _leukocyte_sprites(codes, mpp, sources, data_dir, only_files, faithful, rng)
    rbcs = real_rbcs(Path(data_dir) / "detection" / "txl_pbc", mpp, rng) if data_dir else [drawn_rbc(mpp, rng) for _ in range(60)]
    own_stain = [s.red_cell_od for s in leukocytes if s.red_cell_od is not None]
    if own_stain:
        rbcs = in_stain(rbcs, np.median(own_stain, axis=0))
    own = [s.glass for s in leukocytes if s.glass is not None]
    glass = np.median(own, axis=0).astype(np.float32) if own else GLASS_RGB
    od = np.zeros((height, width, 3), np.float32)
    placed = _place_leukocytes(leukocytes, curves, width, height, mpp, rng)
    _scatter_rbcs(od, rbcs, curves, placed, mpp, rng, drawn=data_dir is None)
    background = _rgb(od, glass)
    cells = tuple(_blend(od, sprite, x0, y0, mpp) for sprite, x0, y0 in placed)
    return Smear(_rgb(od, glass), background, mpp, cells, _band_polygon(curves, width, height))


def _rgb(od: np.ndarray, glass: np.ndarray, rows: int = 256) -> np.ndarray:
    """RGB of optical density over `glass`, in bands of rows so the float temporaries stay in
    cache (a third of the time of whole-image passes on a 60-megapixel slide, same pixels)."""
    out = np.empty(od.shape, np.uint8)
    for y in range(0, od.shape[0], rows):
        band = np.exp(-od[y : y + rows])
        band *= glass
        out[y : y + rows] = np.clip(np.rint(band, out=band), 0, 255, out=band)
    return out


def write_pyramid(path: str | Path, rgb: np.ndarray, mpp: float, tile: int = 256, quality: int = 85) -> int:
    """A tiled JPEG TIFF, one page per 2× level until the level fits in two tiles, each page with
    its own resolution tags in px/cm. Like Aperio, Photometric says RGB while each JPEG tile is
    YCbCr 4:2:0 inside (half the size; tifffile's photometric="ycbcr" would mislabel RGB data).
    Returns the number of levels."""
    levels = [Image.fromarray(rgb)]
    while max(levels[-1].size) > 2 * tile:
        levels.append(levels[-1].reduce(2))
    w0 = levels[0].size[0]
    with tifffile.TiffWriter(path, bigtiff=rgb.nbytes > 2**31) as tif:
        for i, level in enumerate(levels):
            px_per_cm = 1e4 / (mpp * w0 / level.size[0])
            tif.write(
                np.asarray(level),
                tile=(tile, tile),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": quality, "outcolorspace": "ycbcr", "subsampling": (2, 2)},
                resolution=(px_per_cm, px_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=1 if i else 0,
                metadata=None,
                software="wsi_screen.synth",
            )
    return len(levels)


def write_ground_truth(path: Path, cells: tuple[PlacedCell, ...], band: Polygon, mpp: float, rng: np.random.Generator) -> None:
    """QuPath GeoJSON: one detection per leukocyte and the monolayer band as an annotation."""

    def truth(polygon, object_type, name, color, measurements, metadata):
        fid = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        f = feature(polygon.exterior.coords, name, color, measurements, fid, object_type)
        f["properties"]["metadata"] = metadata
        return f

    features = [
        truth(
            band,
            "annotation",
            MONOLAYER,
            MONOLAYER_COLOR,
            {"area_mm2": round(band.area * (mpp / 1000) ** 2, 6)},
            {"truth": "monolayer band"},
        )
    ]
    for c in cells:
        features.append(
            truth(
                Polygon(c.polygon),
                "detection",
                c.code,
                CLASS_COLORS[c.code],
                {
                    "class_index": class_index(c.code),
                    "area_um2": round(c.area_um2, 2),
                    "centroid_x_px": round(c.x, 2),
                    "centroid_y_px": round(c.y, 2),
                },
                {"class_code": c.code, "source_file": c.source},
            )
        )
    write_features(features, Path(path))


def _apportion(mix: dict[str, float], n: int, rng: np.random.Generator) -> list[str]:
    """Exactly n class codes in the given proportions (largest remainder), shuffled."""
    for code in mix:
        class_index(code)
    total = sum(mix.values())
    if n < 0 or total <= 0 or min(mix.values()) < 0:
        raise ValueError("class_mix needs non-negative proportions with a positive sum and n >= 0")
    exact = {c: n * p / total for c, p in mix.items()}
    counts = {c: int(v) for c, v in exact.items()}
    for c in sorted(exact, key=lambda c: counts[c] - exact[c])[: n - sum(counts.values())]:
        counts[c] += 1
    codes = [c for c, k in counts.items() for _ in range(k)]
    return [codes[i] for i in rng.permutation(len(codes))]


def _zone_curves(width: int, height: int, zones: tuple[float, float, float], rng: np.random.Generator) -> list:
    """The three zone boundaries x = f(y): gently wavy, as a real smear's are, except where one lies
    on the slide's edge (a zone of no width stays empty, not a sliver)."""
    edges = np.cumsum(zones) * width
    curves = []
    for edge in edges:
        freq, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
        amp = 0.02 * width if 0 < edge < width else 0.0
        curves.append(lambda y, e=edge, a=amp, f=freq, p=phase: e + a * np.sin(2 * np.pi * f * np.asarray(y) / height + p))
    return curves


def _zone(curves, x, y) -> np.ndarray:
    """0 thick end, 1 monolayer, 2 feathered edge, 3 glass."""
    return sum((np.asarray(x) >= c(y)).astype(int) for c in curves)


def _band_polygon(curves, width: int, height: int) -> Polygon:
    ys = np.linspace(0, height, 129)
    ring = list(zip(curves[0](ys), ys)) + list(zip(curves[1](ys[::-1]), ys[::-1]))
    return Polygon(ring).intersection(box(0, 0, width, height))


def _leukocyte_sprites(codes, mpp, sources, data_dir, only_files, faithful, rng) -> list[Sprite]:
    if data_dir is None:
        return [drawn_leukocyte(code, mpp, rng) for code in codes]
    files = real_leukocytes(Path(data_dir) / "cells", set(codes), tuple(sources), only_files)
    sprites = []
    for code in codes:
        for _ in range(50):
            sprite = cut_leukocyte(files[code][rng.integers(len(files[code]))], code, mpp, faithful)
            if sprite is not None:
                break
        else:
            raise ValueError(f"could not cut a plausible {code} leukocyte from 50 crops")
        sprites.append(sprite)
    return sprites


def _orient(sprite: Sprite, rng: np.random.Generator) -> Sprite:
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def turn(a):
        a = np.rot90(a, k)
        return np.ascontiguousarray(a[:, ::-1] if flip else a)

    cell = None if sprite.cell is None else turn(sprite.cell)
    return Sprite(turn(sprite.od), turn(sprite.alpha), sprite.code, sprite.source, cell, sprite.glass)


def _place_leukocytes(sprites, curves, width, height, mpp, rng) -> list[tuple[Sprite, int, int]]:
    """Random non-overlapping positions with the whole cell inside the monolayer band."""
    placed, centres, radii = [], [], []
    gap = LEUKOCYTE_GAP_UM / mpp
    for sprite in sprites:
        sprite = _orient(sprite, rng)
        h, w = sprite.alpha.shape
        ys, xs = np.nonzero(sprite.alpha > 0)
        r = float(np.hypot(xs - w / 2, ys - h / 2).max()) + 1
        for _ in range(500):
            cx, cy = rng.uniform(w / 2 + 1, width - w / 2 - 1), rng.uniform(h / 2 + 1, height - h / 2 - 1)
            if not (_zone(curves, [cx - r, cx + r], [cy, cy]) == MONO).all():
                continue
            if all(np.hypot(cx - px, cy - py) >= r + pr + gap for (px, py), pr in zip(centres, radii)):
                break
        else:
            raise ValueError(f"could not place {len(sprites)} leukocytes without overlap; use a larger slide or fewer cells")
        centres.append((cx, cy))
        radii.append(r)
        placed.append((sprite, round(cx - w / 2), round(cy - h / 2)))
    return placed


def _scatter_rbcs(od, sprites, curves, placed, mpp, rng, drawn: bool) -> None:
    """Red cells at each zone's coverage: overlapping in the thick end (random), non-overlapping
    elsewhere (random sequential addition), none reaching more than RBC_TUCK_UM under a real
    leukocyte's edge. Drawn leukocytes, the test fixtures, keep their red cells 0.8 of a radius
    clear of their edge, the layout their tests were set on: with red cells pressed against
    them, as real cells have, `screen` counts fewer than 5 of a batch test slide's cartoon
    cells (tried 2026-12-06)."""
    height, width = od.shape[:2]
    r = RBC_UM / 2 / mpp
    area = np.pi * r * r
    clear = _clear_of(placed, 1.8 * r if drawn else r - RBC_TUCK_UM / mpp)
    for zone, coverage in RBC_COVERAGE.items():
        ys = np.arange(height) + 0.5
        inner = np.clip(curves[zone - 1](ys), 0, width) if zone else np.zeros(height)
        outer = np.clip(curves[zone](ys), inner, width)  # a zone of no width may have its curves cross
        n_target = int(coverage * float(np.sum(outer - inner)) / area)
        right = float(outer.max())
        n_cand = int(n_target * (1.5 if zone == THICK else 6) * right * height / max(float(np.sum(outer - inner)), 1.0))
        xy = rng.uniform((0, 0), (right, height), size=(n_cand, 2))
        xy = xy[_zone(curves, xy[:, 0], xy[:, 1]) == zone]
        xy = xy[clear(xy)]
        xy = xy[:n_target] if zone == THICK else _sequential(xy, 1.9 * r, n_target)
        for x, y in xy:
            _stamp(od, _orient(sprites[rng.integers(len(sprites))], rng), x, y)


def _clear_of(placed, min_px: float) -> Callable[[np.ndarray], np.ndarray]:
    """Which candidate centres lie at least `min_px` from every placed leukocyte's mask (each
    mask's distance map made once, for every zone's candidates)."""
    pad = int(np.ceil(min_px)) + 1
    maps = [(ndi.distance_transform_edt(~np.pad(s.mask, pad)), x0 - pad, y0 - pad) for s, x0, y0 in placed]

    def clear(xy: np.ndarray) -> np.ndarray:
        keep = np.ones(len(xy), bool)
        if not maps or not len(xy):
            return keep
        tree = cKDTree(xy)
        for dist, left, top in maps:
            h, w = dist.shape
            near = np.array(tree.query_ball_point((left + w / 2, top + h / 2), np.hypot(w, h) / 2), int)
            cols, rows = (xy[near] - (left, top)).astype(int).T
            inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
            near, cols, rows = near[inside], cols[inside], rows[inside]
            keep[near[dist[rows, cols] < min_px]] = False
        return keep

    return clear


def _sequential(xy: np.ndarray, d_min: float, n_max: int) -> np.ndarray:
    """Keep candidates in order unless closer than d_min to one already kept (a grid hash)."""
    grid: dict[tuple[int, int], list[tuple[float, float]]] = {}
    kept = []
    d2 = d_min * d_min
    for x, y in xy:
        gx, gy = int(x // d_min), int(y // d_min)
        if any(
            (x - px) ** 2 + (y - py) ** 2 < d2
            for i in (gx - 1, gx, gx + 1)
            for j in (gy - 1, gy, gy + 1)
            for px, py in grid.get((i, j), ())
        ):
            continue
        grid.setdefault((gx, gy), []).append((x, y))
        kept.append((x, y))
        if len(kept) >= n_max:
            break
    return np.array(kept).reshape(-1, 2)


def _stamp(od: np.ndarray, sprite: Sprite, cx: float, cy: float) -> None:
    """Add a red cell's density (stain adds up where cells overlap), clipped at the slide edge."""
    h, w = sprite.alpha.shape
    x0, y0 = round(cx - w / 2), round(cy - h / 2)
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1, sy1 = min(w, od.shape[1] - x0), min(h, od.shape[0] - y0)
    if sx0 < sx1 and sy0 < sy1:
        od[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1] += (sprite.od * sprite.alpha[..., None])[sy0:sy1, sx0:sx1]


def _blend(od: np.ndarray, sprite: Sprite, x0: int, y0: int, mpp: float) -> PlacedCell:
    """Lay a leukocyte over whatever is beneath with its soft alpha; return its outline (its mask's)."""
    h, w = sprite.alpha.shape
    a = sprite.alpha[..., None]
    region = od[y0 : y0 + h, x0 : x0 + w]
    region[:] = region * (1 - a) + sprite.od * a
    contour = longest_contour(np.pad(sprite.mask.astype(np.float32), 1))
    outline = Polygon([(x0 + c - 0.5, y0 + r - 0.5) for r, c in contour]).buffer(0).simplify(0.5)
    if outline.geom_type != "Polygon":
        outline = max(outline.geoms, key=lambda g: g.area)
    return PlacedCell(
        sprite.code,
        round(outline.centroid.x, 2),
        round(outline.centroid.y, 2),
        tuple((round(x, 2), round(y, 2)) for x, y in outline.exterior.coords),
        outline.area * mpp**2,
        sprite.source,
    )
