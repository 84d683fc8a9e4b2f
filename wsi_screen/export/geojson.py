"""QuPath-importable GeoJSON of detections (format from QuPath's own reader): a FeatureCollection
whose Features carry a UUID `id`, a Polygon in level-0 px, and properties with `objectType`,
`classification` {name, color} and numeric `measurements`. Strict JSON: no NaN/Infinity."""

from __future__ import annotations

import gzip
import json
import math
import uuid
from collections.abc import Sequence
from pathlib import Path

from shapely.geometry import Polygon, shape

from ..classes import CLASS_CODES, CLASS_COLORS, CLASS_NAMES, LEUKOCYTE, LEUKOCYTE_COLOR
from ..records import Detection, Probabilities

# Fixed namespace so the same cell on the same slide always gets the same id.
_NAMESPACE = uuid.UUID("6f1c2d9e-3b7a-4c55-9a1e-5d2f0c7b8e41")


def cell_uuid(slide_key: str, cell_id: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{slide_key}/{cell_id}"))


def feature(
    polygon, name: str, color: tuple[int, int, int], measurements: dict[str, float], fid: str, object_type: str = "detection"
) -> dict:
    coords = [[float(x), float(y)] for x, y in polygon]
    if coords[0] != coords[-1]:
        coords.append(coords[0])
    for key, value in measurements.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"measurement {key!r} must be a finite number, got {value!r}")
    return {
        "type": "Feature",
        "id": fid,
        "geometry": {"type": "Polygon", "coordinates": [coords]},
        "properties": {
            "objectType": object_type,
            "classification": {"name": name, "color": [int(c) for c in color]},
            "measurements": {k: v if isinstance(v, int) and not isinstance(v, bool) else float(v) for k, v in measurements.items()},
        },
    }


def cell_features(detections: Sequence[Detection], slide_key: str, calls: Probabilities | None = None) -> list[dict]:
    """One Feature per cell with a UUID stable per slide and cell id: a "Leukocyte" with its area and
    detector score; with the classifier's calls, its predicted class in that class's colour, with
    P(blast), P(atypical) and every class probability."""
    if calls is None:
        return [
            feature(
                d.polygon, LEUKOCYTE, LEUKOCYTE_COLOR, {"cell_id": i, "area_um2": d.area_um2, "score": d.score}, cell_uuid(slide_key, i)
            )
            for i, d in enumerate(detections)
        ]
    predicted, p_blast, p_atypical = calls.predicted, calls.p_blast, calls.p_atypical
    feats = []
    for i, d in enumerate(detections):
        code = str(predicted[i])
        measurements = {"cell_id": i, "p_blast": float(p_blast[i]), "p_atypical": float(p_atypical[i]), "area_um2": d.area_um2}
        measurements.update({f"p_{c}": float(calls.probs[i, k]) for k, c in enumerate(CLASS_CODES)})
        feats.append(feature(d.polygon, CLASS_NAMES[code], CLASS_COLORS[code], measurements, cell_uuid(slide_key, i)))
    return feats


def write_features(features: list[dict], path: Path, gz: bool = False) -> Path:
    """Write a FeatureCollection (gzip-compressed when `gz`); returns the written path."""
    path = Path(path)
    if gz and path.suffix != ".gz":
        path = path.with_name(path.name + ".gz")
    text = json.dumps({"type": "FeatureCollection", "features": features}, allow_nan=False, separators=(",", ":"))
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    return path


def read_features(path: Path) -> list[dict]:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)["features"]


def validate_qupath(features: list[dict]) -> list[str]:
    """Problems QuPath's GeoJSON import would hit; an empty list means importable."""
    problems = []
    for i, f in enumerate(features):
        where = f"feature {i}"
        try:
            uuid.UUID(str(f.get("id")))
        except ValueError:
            problems.append(f"{where}: id is not a UUID")
        props = f.get("properties") or {}
        if props.get("objectType") not in ("detection", "annotation", "cell", "tile"):
            problems.append(f"{where}: properties.objectType missing or unknown")
        cls = props.get("classification")
        if cls is not None:
            color = cls.get("color")
            rgb = isinstance(color, list) and len(color) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in color)
            if not cls.get("name") or not rgb:
                problems.append(f"{where}: classification needs a name and an RGB color")
        for key, value in (props.get("measurements") or {}).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                problems.append(f"{where}: measurement {key!r} is not a finite number")
        geom = f.get("geometry") or {}
        try:
            g = shape(geom)
            if not isinstance(g, Polygon) or not g.is_valid or g.is_empty:
                problems.append(f"{where}: geometry is not a valid Polygon")
            elif min(g.bounds) < 0:
                problems.append(f"{where}: geometry has negative level-0 coordinates")
        except Exception as exc:  # shapely raises several types for malformed geometry
            problems.append(f"{where}: geometry unreadable ({exc})")
    return problems
