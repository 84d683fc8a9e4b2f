import json
from collections import Counter
from pathlib import Path

import pytest
from shapely.geometry import shape
from shapely.ops import unary_union

from wsi_screen.aoi import monolayer_aoi
from wsi_screen.config import AoiConfig
from wsi_screen.slide import check_slide, open_slide

DEMO = Path(__file__).resolve().parents[1] / "wsi_screen" / "demo"


def test_committed_demo_slide():
    slide_path, truth_path = DEMO / "demo_smear.tiff", DEMO / "demo_smear.geojson"
    assert slide_path.stat().st_size + truth_path.stat().st_size <= 10e6
    info = check_slide(slide_path)
    assert (info.width, info.height) == (10000, 3600) and info.mpp == pytest.approx(0.25)
    assert len(info.level_dimensions) == 6
    features = json.loads(truth_path.read_text())["features"]
    cells = [f for f in features if f["properties"]["objectType"] == "detection"]
    assert 100 <= len(cells) <= 200
    codes = Counter(f["properties"]["classification"]["name"] for f in cells)
    assert {"MYB", "MMZ", "PMO", "EBO", "NGS", "LYT", "MON"} <= set(codes)
    assert all(Path(f["properties"]["metadata"]["source_file"]).name.startswith("pbc_") for f in cells)  # never DeepAPL
    band = shape(next(f for f in features if f["properties"]["objectType"] == "annotation")["geometry"])
    with open_slide(slide_path) as slide:
        found = unary_union(monolayer_aoi(slide, AoiConfig()).polygons)
    assert found.intersection(band).area / found.union(band).area >= 0.9
