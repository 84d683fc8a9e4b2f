"""Which specimen id and which AOI each slide of a night gets. One `--specimen-id` names one
slide's specimen, never a night's; a CSV (`slide,specimen_id[,aoi]`) names many; an AOI drawn for a
slide may also sit beside it as `<stem>.aoi.geojson`. Precedence: the CSV's `aoi`, then the file
beside the slide, then `--aoi`."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .errors import WsiScreenError

AOI_SUFFIX = ".aoi.geojson"


@dataclass(frozen=True)
class SlideSpec:
    specimen_id: str | None  # None: the report shows the slide's stem
    aoi: str  # auto | full | path of a GeoJSON


def slide_specs(slides: list[Path], specimen_id: str | None, aoi: str, mapping: Path | None) -> dict[Path, SlideSpec]:
    """The specimen and AOI of every slide; any inconsistency is one error naming the file."""
    if specimen_id is not None and mapping is not None:
        raise WsiScreenError("give --specimen-id or --specimens, not both")
    if specimen_id is not None and len(slides) > 1:
        raise WsiScreenError(
            f"--specimen-id {specimen_id!r} would label all {len(slides)} slides as one specimen; map them with --specimens FILE.csv"
        )
    rows = read_mapping(Path(mapping), slides) if mapping is not None else {}
    specs = {}
    for slide in slides:
        mapped_id, mapped_aoi = rows.get(slide, (specimen_id, None))
        beside = slide.with_name(slide.stem + AOI_SUFFIX)
        specs[slide] = SlideSpec(mapped_id, mapped_aoi or (str(beside) if beside.is_file() else aoi))
    return specs


def read_mapping(path: Path, slides: list[Path]) -> dict[Path, tuple[str, str | None]]:
    """Rows of a `slide,specimen_id[,aoi]` CSV keyed by the slide they name. A slide is a path
    (relative to the CSV's folder) or a bare file name matching exactly one input."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            table = list(csv.DictReader(fh))
            header = set(table[0]) if table else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise WsiScreenError(f"cannot read specimen mapping ({exc.__class__.__name__})", path) from None
    if not {"slide", "specimen_id"} <= header:
        raise WsiScreenError("specimen mapping needs a header with the columns slide,specimen_id[,aoi]", path)
    by_name: dict[str, list[Path]] = {}
    for slide in slides:
        by_name.setdefault(slide.name, []).append(slide)
    rows: dict[Path, tuple[str, str | None]] = {}
    seen_ids: dict[str, int] = {}
    for line, row in enumerate(table, start=2):
        name, specimen, aoi = (row.get("slide") or "").strip(), (row.get("specimen_id") or "").strip(), (row.get("aoi") or "").strip()
        where = f"line {line}"
        candidate = (path.parent / name).resolve()
        matches = [candidate] if candidate in slides else by_name.get(name, [])
        if len(matches) != 1:
            raise WsiScreenError(f"{where}: slide {name!r} {'is ambiguous' if matches else 'is not among the inputs'}", path)
        if not specimen:
            raise WsiScreenError(f"{where}: empty specimen_id", path)
        if specimen in seen_ids:
            raise WsiScreenError(f"{where}: specimen_id {specimen!r} already given on line {seen_ids[specimen]}", path)
        if matches[0] in rows:
            raise WsiScreenError(f"{where}: slide {name!r} listed twice", path)
        if aoi and not (path.parent / aoi).is_file():
            raise WsiScreenError(f"{where}: AOI file {aoi!r} not found", path)
        seen_ids[specimen] = line
        rows[matches[0]] = (specimen, str((path.parent / aoi).resolve()) if aoi else None)
    return rows
