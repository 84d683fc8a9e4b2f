import json

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import Polygon, box
from shapely.ops import unary_union

from wsi_screen.aoi import aoi_from_geojson, full_aoi, monolayer_aoi, resolve_aoi
from wsi_screen.config import AoiConfig
from wsi_screen.errors import AoiError
from wsi_screen.slide import open_slide
from wsi_screen.synth import make_slide

GLASS = np.array([240.0, 230.0, 220.0])
RBC_OD = np.array([0.2, 0.5, 0.35])


def _iou(aoi, truth) -> float:
    found = unary_union(aoi.polygons)
    return found.intersection(truth).area / found.union(truth).area


def _smear_png(path, rng, mpp=0.5, length_um=1600, width_um=700):
    """A smear laid along y (the synthetic slides run along x): thick end (random, overlapping),
    monolayer and feathered edge (a jittered lattice, thinned: side by side, never overlapping),
    glass; red-cell disks whose optical density adds up where they overlap. Returns the
    monolayer band in level-0 px."""
    h, w = round(length_um / mpp), round(width_um / mpp)
    od = np.zeros((h + 40, w + 40, 3))  # 20 px margin so every disk fits; cropped below
    r = 3.75 / mpp
    yy, xx = np.mgrid[-8:9, -8:9]
    disk = (np.hypot(yy, xx) <= r)[..., None] * RBC_OD
    edges = np.array([0.25, 0.65, 0.85]) * h
    n_thick = int(1.7 * edges[0] * w / (np.pi * r * r))
    centres = [rng.uniform((0, 0), (edges[0], w), size=(n_thick, 2))]
    step = 2.5 * r  # a square lattice at this pitch covers 50%; jitter keeps disks apart
    lattice = np.stack(
        np.meshgrid(np.arange(edges[0] + step / 2, edges[2], step), np.arange(step / 2, w, step), indexing="ij"), -1
    ).reshape(-1, 2)
    lattice += rng.uniform(-0.24 * r, 0.24 * r, size=lattice.shape)
    keep = np.where(lattice[:, 0] < edges[1], 1.0, 0.16) > rng.uniform(size=len(lattice))
    centres.append(lattice[keep])
    for y, x in np.concatenate(centres).astype(int) + 20:
        od[y - 8 : y + 9, x - 8 : x + 9] += disk
    Image.fromarray(np.rint(GLASS * np.exp(-od[20:-20, 20:-20])).astype(np.uint8)).save(path)
    return box(0, edges[0], w, edges[1])


def test_auto_aoi_finds_the_monolayer_of_a_painted_smear(tmp_path):
    band = _smear_png(tmp_path / "smear.png", np.random.default_rng(3))
    with open_slide(tmp_path / "smear.png", mpp=0.5, max_mpp=1.0) as slide:
        aoi = resolve_aoi("auto", slide, AoiConfig())
    assert aoi.method == "auto" and aoi.downsample == 16.0
    assert _iou(aoi, band) >= 0.85
    assert aoi.area_mm2(0.5) == pytest.approx(band.area * 0.25e-6, rel=0.2)


def test_auto_aoi_on_synthetic_slide(drawn_slide):
    with open_slide(drawn_slide.path) as slide:
        aoi = monolayer_aoi(slide, AoiConfig())
    assert aoi.mask.shape == (75, 100)  # 800×600 µm at 8 µm/px
    assert _iou(aoi, drawn_slide.band) >= 0.85
    inside = sum(any(p.contains(Polygon(c.polygon).centroid) for p in aoi.polygons) for c in drawn_slide.cells)
    assert inside >= 0.9 * len(drawn_slide.cells)


def test_auto_aoi_on_real_cell_slide(tmp_path, data_dir):
    synth = make_slide(tmp_path / "real.tiff", seed=2, n_leukocytes=10, data_dir=data_dir)
    with open_slide(synth.path) as slide:
        assert _iou(monolayer_aoi(slide, AoiConfig()), synth.band) >= 0.8


def test_empty_monolayer_is_an_aoi_error(tmp_path):
    rng = np.random.default_rng(0)
    pixels = np.full((800, 800, 3), 235, np.uint8)
    for y, x in rng.integers(10, 790, size=(300, 2)):  # a sparse feathered edge only
        pixels[y - 4 : y + 4, x - 4 : x + 4] = (200, 150, 170)
    Image.fromarray(pixels).save(tmp_path / "sparse.png")
    with open_slide(tmp_path / "sparse.png", mpp=0.5, max_mpp=1.0) as slide:
        with pytest.raises(AoiError, match="sparse.png: the auto area of interest is empty; try --aoi full"):
            resolve_aoi("auto", slide, AoiConfig())
        assert resolve_aoi("full", slide, AoiConfig()).mask.all()


def test_full_aoi(drawn_slide):
    with open_slide(drawn_slide.path) as slide:
        aoi = full_aoi(slide, 8.0)
    assert aoi.mask.shape == (75, 100) and aoi.mask.all() and aoi.method == "full"
    assert aoi.polygons[0].bounds == (0, 0, 4000, 3000)
    assert aoi.area_mm2(0.2) == pytest.approx(0.48)


def test_geojson_aoi_qupath_features(tmp_path, drawn_slide):
    ring = [[400, 400], [2000, 400], [2000, 2000], [400, 2000], [400, 400]]
    hole = [[800, 800], [1200, 800], [1200, 1200], [800, 1200], [800, 800]]
    data = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "a",
                "geometry": {"type": "MultiPolygon", "coordinates": [[ring, hole]]},
                "properties": {"objectType": "annotation"},
            },
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[[3000, -500], [4500, -500], [4500, 800], [3000, 800], [3000, -500]]]},
                "properties": {},
            },  # crosses the slide edge: clipped
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]]]},
                "properties": {"objectType": "detection"},
            },  # a cell, not an area of interest
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}, "properties": {}},
        ],
    }
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(data))
    with open_slide(drawn_slide.path) as slide:
        aoi = resolve_aoi(str(path), slide, AoiConfig())
    assert aoi.method == "geojson" and aoi.downsample == 40.0
    assert sum(p.area for p in aoi.polygons) == pytest.approx(1600**2 - 400**2 + 1000 * 800)
    mask_area = aoi.mask.sum() * 40.0**2
    assert mask_area == pytest.approx(1600**2 - 400**2 + 1000 * 800, rel=0.05)
    assert not aoi.mask[25, 25] and aoi.mask[15, 15]  # the hole at (1000, 1000) px; inside at (620, 620)


def test_ground_truth_geojson_is_a_usable_aoi(drawn_slide):
    with open_slide(drawn_slide.path) as slide:
        aoi = aoi_from_geojson(drawn_slide.geojson, slide)  # the annotation, not the detections
    assert len(aoi.polygons) == 1
    assert aoi.polygons[0].symmetric_difference(drawn_slide.band).area < 1e-6 * drawn_slide.band.area


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "AOI file not found"),
        ("{not json", "not a usable GeoJSON"),
        ('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": "x"}, "properties": {}}', "not a usable GeoJSON"),
        ('{"type": "Point", "coordinates": [1, 2]}', "no Polygon or MultiPolygon"),
        ('{"type": "Polygon", "coordinates": [[[9000, 9000], [9500, 9000], [9500, 9500], [9000, 9000]]]}', "outside the slide"),
    ],
)
def test_bad_geojson_is_an_aoi_error_naming_the_file(tmp_path, drawn_slide, content, message):
    path = tmp_path / "user.geojson"
    if content is not None:
        path.write_text(content)
    with open_slide(drawn_slide.path) as slide:
        with pytest.raises(AoiError, match=message) as exc:
            resolve_aoi(str(path), slide, AoiConfig())
    assert "user.geojson" in str(exc.value)
