"""The finished slides of a night, read back from OUT/: what the review needs to know about each
(where the slide is, where its results are, and its blast figures). Failed and unfinished
slides have no completion record and are left out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import WsiScreenError


@dataclass(frozen=True)
class ScreenedSlide:
    slide: Path  # the scanned file, as the batch read it
    results: str  # OUT/<results>/ holds report.json, cells.zarr, detections.geojson
    specimen_id: str
    n_leukocytes: int
    n_rejected: int  # objects the reject output claimed, in no count (0 in reports older than the rule)
    blast_prevalence: float
    blast_ci95: tuple[float, float]
    needs_review: int
    flags: tuple[str, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def screened_slides(out: Path) -> list[ScreenedSlide]:
    """Every OUT/<name>/ with a completion record and a report; flagged slides first, then by
    decreasing blast prevalence, then by name."""
    out = Path(out)
    if not out.is_dir():
        raise WsiScreenError("not a results folder", out)
    found = []
    for done in sorted(out.glob("*/completed.json")):
        try:
            record, report = json.loads(done.read_text()), json.loads((done.parent / "report.json").read_text())
            blast = report["blast"]
            found.append(
                ScreenedSlide(
                    Path(record["input"]),
                    done.parent.name,
                    str(report["specimen_id"]),
                    int(report["n_leukocytes"]),
                    int(report.get("n_rejected", 0)),
                    float(blast["prevalence"]),
                    (float(blast["ci95"][0]), float(blast["ci95"][1])),
                    int(report["needs_review"]),
                    tuple(report["flags"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WsiScreenError(f"unreadable results ({exc.__class__.__name__}: {exc})", done.parent) from None
    if not found:
        raise WsiScreenError("no finished slides (OUT/<slide>/completed.json) to review", out)
    return sorted(found, key=lambda s: (not s.flagged, -s.blast_prevalence, s.results))
