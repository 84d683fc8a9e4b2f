import gzip
import json
import math

import numpy as np
import pytest
from shapely.geometry import Polygon

from wsi_screen.classes import CLASS_CODES
from wsi_screen.export.geojson import aoi_features, cell_features, cell_uuid, feature, read_features, validate_qupath, write_features
from wsi_screen.records import Box, Detection, Probabilities

SQUARE = [(10, 10), (30, 10), (30, 30), (10, 30)]


def test_roundtrip_is_strict_json_and_importable(tmp_path):
    feats = [feature(SQUARE, "Leukocyte", (0, 200, 255), {"area_um2": 12.5, "score": 0.9}, cell_uuid("s", i)) for i in range(3)]
    path = write_features(feats, tmp_path / "d.geojson")
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 3
    f = data["features"][0]
    assert f["properties"]["objectType"] == "detection"
    assert f["properties"]["classification"] == {"name": "Leukocyte", "color": [0, 200, 255]}
    assert f["geometry"]["coordinates"][0][0] == f["geometry"]["coordinates"][0][-1]  # closed ring
    assert validate_qupath(read_features(path)) == []
    assert len({x["id"] for x in data["features"]}) == 3


@pytest.mark.parametrize("n", [0, 1, 3])
def test_streamed_collection_is_the_text_of_one_dump(tmp_path, n):
    """Features are written one by one from a generator; the file is what one json.dumps of the
    whole collection gives, an empty slide included."""
    feats = [feature(SQUARE, "Leukocyte", (1, 2, 3), {"i": i}, cell_uuid("s", i)) for i in range(n)]
    path = write_features(iter(feats), tmp_path / "d.geojson")
    assert path.read_text() == json.dumps({"type": "FeatureCollection", "features": feats}, separators=(",", ":"))


def test_gzip_output(tmp_path):
    path = write_features([feature(SQUARE, "Leukocyte", (1, 2, 3), {}, cell_uuid("s", 0))], tmp_path / "d.geojson", gz=True)
    assert path.name == "d.geojson.gz"
    assert json.loads(gzip.decompress(path.read_bytes()))["features"][0]["id"] == cell_uuid("s", 0)
    assert len(read_features(path)) == 1


def test_non_finite_measurement_is_refused():
    with pytest.raises(ValueError, match="finite"):
        feature(SQUARE, "Leukocyte", (1, 2, 3), {"p": math.nan}, cell_uuid("s", 0))


def test_validator_catches_what_qupath_rejects():
    good = feature(SQUARE, "Leukocyte", (1, 2, 3), {"a": 1.0}, cell_uuid("s", 0))
    bad_id = {**good, "id": "cell-1"}
    no_color = json.loads(json.dumps(good))
    del no_color["properties"]["classification"]["color"]
    outside = json.loads(json.dumps(good))
    outside.pop("properties")
    outside["objectType"] = "detection"
    bowtie = json.loads(json.dumps(good))
    bowtie["geometry"]["coordinates"] = [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]
    problems = validate_qupath([good, bad_id, no_color, outside, bowtie])
    assert [p.split(":")[0] for p in problems] == ["feature 1", "feature 2", "feature 3", "feature 4"]


def test_aoi_is_an_importable_annotation_with_ids_apart_from_the_cells():
    region = Polygon([(0, 0), (4000, 0), (4000, 3000), (0, 3000)], [[(100, 100), (200, 100), (200, 200)]])
    (aoi,) = aoi_features("slide", [region])
    assert aoi["properties"]["objectType"] == "annotation" and aoi["properties"]["classification"]["name"] == "Screened area"
    assert aoi["geometry"]["coordinates"][0][2] == [4000.0, 3000.0] and validate_qupath([aoi]) == []
    assert aoi["id"] not in {cell_uuid("slide", i) for i in range(1000)} and aoi["id"] == aoi_features("slide", [region])[0]["id"]


def test_a_cell_object_carries_its_nucleus_where_qupath_reads_it():
    lobes = (((12, 12), (18, 12), (18, 18), (12, 18)), ((22, 22), (28, 22), (28, 28), (22, 28)))
    cell = feature(SQUARE, "Leukocyte", (1, 2, 3), {"nucleus_area_um2": 72.0}, cell_uuid("s", 0), object_type="cell", nucleus=lobes)
    assert cell["properties"]["objectType"] == "cell" and cell["nucleusGeometry"]["type"] == "MultiPolygon"
    assert validate_qupath([cell]) == []
    misplaced = json.loads(json.dumps(cell))
    misplaced["properties"]["nucleusGeometry"] = misplaced.pop("nucleusGeometry")
    outside = feature(SQUARE, "Leukocyte", (1, 2, 3), {}, cell_uuid("s", 1), object_type="cell", nucleus=(((40, 40), (50, 40), (50, 50)),))
    not_cell = {**cell, "properties": {**cell["properties"], "objectType": "detection"}}
    problems = validate_qupath([misplaced, outside, not_cell])
    assert [p.split(": ", 1)[1].split(" ")[0:2] for p in problems] == [
        ["nucleusGeometry", "belongs"],
        ["nucleus", "lies"],
        ["nucleusGeometry", "on"],
    ]


def test_rejected_objects_stay_visible_in_grey_with_their_probabilities():
    outlines = [tuple((x + 40 * i, y) for x, y in SQUARE) for i in range(4)]
    dets = [Detection(20.0 + 40 * i, 20.0, Box(10 + 40 * i, 10, 30 + 40 * i, 30), 50.0, 0.9, outline) for i, outline in enumerate(outlines)]
    probs = np.full((4, 15), 0.02)
    probs[:, CLASS_CODES.index("EOS")] = 0.72
    feats = list(cell_features(dets, "s", Probabilities(probs, np.array([0.2, 0.5, 0.51, 0.9]))))
    classes = [f["properties"]["classification"] for f in feats]
    assert classes == [{"name": "Eosinophil", "color": [255, 140, 0]}] * 2 + [{"name": "Rejected", "color": [90, 90, 90]}] * 2
    assert [f["properties"]["measurements"]["p_reject"] for f in feats] == [0.2, 0.5, 0.51, 0.9]
    assert feats[3]["properties"]["measurements"]["p_EOS"] == 0.72 and validate_qupath(feats) == []
