"""QuPath-importable GeoJSON of detections (format from QuPath's own reader): a FeatureCollection
whose Features carry a UUID `id`, a Polygon in level-0 px, and properties with `objectType`,
`classification` {name, color} and numeric `measurements`. Strict JSON: no NaN/Infinity.

Leukocytes are cell objects: `objectType: "cell"` and the nucleus as a top-level
`nucleusGeometry` beside `geometry` (Polygon, or MultiPolygon for a lobed nucleus). QuPath's
reader (qupath/qupath, qupath-core/src/main/java/qupath/lib/io/PathObjectTypeAdapters.java,
PathObjectTypeAdapter.read) reads `nucleusGeometry` from the Feature itself, not from its
properties, and passes it to PathObjects.createCellObject(roi, roiNucleus) when objectType is
"cell"; its writer puts it in the same place."""

from __future__ import annotations

import gzip
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.ops import unary_union

from ..classes import CLASS_CODES, CLASS_COLORS, CLASS_NAMES, LEUKOCYTE, LEUKOCYTE_COLOR, REJECTED, REJECTED_COLOR
from ..records import Detection, Nucleus, Probabilities

# Fixed namespace so the same cell on the same slide always gets the same id.
_NAMESPACE = uuid.UUID("6f1c2d9e-3b7a-4c55-9a1e-5d2f0c7b8e41")
AOI_CLASS, AOI_COLOR = "Screened area", (0, 160, 255)


def cell_uuid(slide_key: str, cell_id: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{slide_key}/{cell_id}"))


def feature(
    polygon, name: str, color: tuple[int, int, int], measurements: dict[str, float], fid: str, object_type: str = "detection", nucleus=None
) -> dict:
    """One Feature; `nucleus` (a cell's lobe outlines, level-0 px) becomes its nucleusGeometry."""
    coords = [[float(x), float(y)] for x, y in polygon]
    if coords[0] != coords[-1]:
        coords.append(coords[0])
    for key, value in measurements.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"measurement {key!r} must be a finite number, got {value!r}")
    out = {
        "type": "Feature",
        "id": fid,
        "geometry": {"type": "Polygon", "coordinates": [coords]},
        "properties": {
            "objectType": object_type,
            "classification": {"name": name, "color": [int(c) for c in color]},
            "measurements": {k: v if isinstance(v, int) and not isinstance(v, bool) else float(v) for k, v in measurements.items()},
        },
    }
    if nucleus:
        out["nucleusGeometry"] = mapping(unary_union([Polygon(lobe) for lobe in nucleus]))
    return out


def aoi_features(slide_key: str, polygons) -> list[dict]:
    """The screened area as QuPath annotations (one per AOI polygon, holes dropped), so the
    reviewer sees what was screened; ids are stable per slide like the cells'."""
    return [
        feature(list(p.exterior.coords), AOI_CLASS, AOI_COLOR, {}, cell_uuid(slide_key, -1 - k), object_type="annotation")
        for k, p in enumerate(polygons)
    ]


def cell_measurements(detection: Detection, nucleus: Nucleus | None = None) -> dict[str, float]:
    """What QuPath shows for each leukocyte besides its class: sizes a haematologist reads in a blast."""
    if nucleus is None:
        return {"area_um2": detection.area_um2}
    return {"area_um2": detection.area_um2, "nucleus_area_um2": nucleus.area_um2, "nucleus_cell_ratio": nucleus.cell_fraction}


def cell_features(
    detections: Sequence[Detection], slide_key: str, calls: Probabilities | None = None, nuclei: Sequence[Nucleus] | None = None
) -> Iterator[dict]:
    """One Feature per cell with a UUID stable per slide and cell id: a "Leukocyte" with its area and
    detector score; with the classifier's calls, its predicted class in that class's colour (or
    "Rejected" when the reject output calls it no leukocyte), with P(blast), P(atypical), every
    class probability and P(reject). With `nuclei` (in cell order), each is a QuPath cell object
    with its nucleus as nucleusGeometry and the nucleus's area and share of the cell. Yielded one by
    one: a slide's features are written as they come, never all held at once."""
    if nuclei is not None and len(nuclei) != len(detections):
        raise ValueError(f"{len(nuclei)} nuclei for {len(detections)} cells")
    object_type = "detection" if nuclei is None else "cell"
    if calls is not None:  # the properties compute over every cell: once, not per cell
        predicted, p_blast, p_atypical, probs, p_reject = calls.predicted, calls.p_blast, calls.p_atypical, calls.probs, calls.p_reject
        rejected = calls.rejected
    for i, d in enumerate(detections):
        n = None if nuclei is None else nuclei[i]
        lobes = None if n is None else n.lobes
        if calls is None:
            measurements = {"cell_id": i, **cell_measurements(d, n), "score": d.score}
            name, color = LEUKOCYTE, LEUKOCYTE_COLOR
        else:
            code = str(predicted[i])
            measurements = {"cell_id": i, "p_blast": float(p_blast[i]), "p_atypical": float(p_atypical[i]), **cell_measurements(d, n)}
            measurements.update({f"p_{c}": float(probs[i, k]) for k, c in enumerate(CLASS_CODES)} | {"p_reject": float(p_reject[i])})
            name, color = (REJECTED, REJECTED_COLOR) if rejected[i] else (CLASS_NAMES[code], CLASS_COLORS[code])
        yield feature(d.polygon, name, color, measurements, cell_uuid(slide_key, i), object_type=object_type, nucleus=lobes)


def write_features(features: Iterable[dict], path: Path, gz: bool = False) -> Path:
    """Write a FeatureCollection (gzip-compressed when `gz`), streaming the features one by one
    (the same text as one json.dumps of the whole collection); returns the written path."""
    path = Path(path)
    if gz and path.suffix != ".gz":
        path = path.with_name(path.name + ".gz")
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write('{"type":"FeatureCollection","features":[')
        for i, f in enumerate(features):
            fh.write(("," if i else "") + json.dumps(f, allow_nan=False, separators=(",", ":")))
        fh.write("]}")
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
        problems += _nucleus_problems(f, where)
    return problems


def _nucleus_problems(f: dict, where: str) -> list[str]:
    """QuPath reads a nucleus only as a cell's top-level `nucleusGeometry` (see the module doc)."""
    if "nucleusGeometry" in (f.get("properties") or {}):
        return [f"{where}: nucleusGeometry belongs beside geometry, not in properties (QuPath ignores it there)"]
    if "nucleusGeometry" not in f:
        return []
    if (f.get("properties") or {}).get("objectType") != "cell":
        return [f"{where}: nucleusGeometry on an object that is not a cell"]
    try:
        nucleus, cell = shape(f["nucleusGeometry"]), shape(f["geometry"])
    except Exception as exc:  # shapely raises several types for malformed geometry
        return [f"{where}: nucleusGeometry unreadable ({exc})"]
    if not isinstance(nucleus, (Polygon, MultiPolygon)) or not nucleus.is_valid or nucleus.is_empty:
        return [f"{where}: nucleusGeometry is not a valid Polygon or MultiPolygon"]
    if nucleus.difference(cell.buffer(1.0)).area > 0.05 * nucleus.area:
        return [f"{where}: nucleus lies outside its cell"]
    return []
