"""Typed, frozen records passed between pipeline stages. Coordinates are level-0 pixels, x then y."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .classes import ATYPICAL, BLAST, CLASS_CODES, member_probability

REJECT_ABOVE = 0.5  # P(reject) above which an object is no leukocyte: shown as "Rejected", never counted


def is_rejected(p_reject: np.ndarray) -> np.ndarray:
    """The one rule for "rejected" (report, GeoJSON, cells.zarr, review): the classifier's reject
    output calls the object no leukocyte more likely than not."""
    return np.asarray(p_reject) > REJECT_ABOVE


@dataclass(frozen=True)
class Box:
    """Half-open rectangle [x0, x1) × [y0, y1) in level-0 pixels."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def intersects(self, other: "Box") -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def clipped(self, width: int, height: int) -> "Box":
        """The part of this box on a `width`×`height` slide."""
        return Box(max(self.x0, 0), max(self.y0, 0), min(self.x1, width), min(self.y1, height))


@dataclass(frozen=True)
class SlideInfo:
    """What a reader knows about a slide; mpp is µm per level-0 pixel."""

    path: Path
    backend: str
    width: int
    height: int
    mpp: float
    mpp_source: str
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]

    @property
    def area_mm2(self) -> float:
        return self.width * self.height * (self.mpp / 1000.0) ** 2


@dataclass(frozen=True, eq=False)
class AoiMask:
    """Monolayer area of interest: a boolean mask where each pixel covers `downsample` level-0
    pixels per side, and the same region as polygons in level-0 pixels."""

    mask: np.ndarray
    downsample: float
    polygons: tuple = ()  # shapely Polygons, level-0 px
    method: str = "auto"

    def area_mm2(self, mpp: float) -> float:
        return float(self.mask.sum()) * (self.downsample * mpp / 1000.0) ** 2

    def contains(self, x: float, y: float) -> bool:
        """True when the level-0 point (x, y) lies in the AOI."""
        col, row = int(x // self.downsample), int(y // self.downsample)
        return 0 <= row < self.mask.shape[0] and 0 <= col < self.mask.shape[1] and bool(self.mask[row, col])

    def covers(self, box: Box) -> bool:
        """True when any mask pixel under `box` is set."""
        d = self.downsample
        x0, y0 = int(box.x0 // d), int(box.y0 // d)
        x1, y1 = int(np.ceil(box.x1 / d)), int(np.ceil(box.y1 / d))
        return bool(self.mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)].any())


@dataclass(frozen=True)
class Tile:
    """A tile owns the detections whose centre lies in `core`; it reads the larger `read` box
    so cells crossing the core edge are seen whole."""

    index: int
    core: Box
    read: Box
    qc_blocks: tuple[Box, ...] = ()  # fixed squares of the core, inside the AOI, that QC is measured on


@dataclass(frozen=True)
class TileGrid:
    tiles: tuple[Tile, ...]
    tile_px: int
    halo_px: int


@dataclass(frozen=True)
class Detection:
    """One leukocyte: centre (where its patch is cut; see detect.to_detections), bounding box and
    outline in level-0 px; area in µm²."""

    x: float
    y: float
    bbox: Box
    area_um2: float
    score: float
    polygon: tuple[tuple[float, float], ...] = field(repr=False)


@dataclass(frozen=True)
class Nucleus:
    """A leukocyte's stain nucleus: area in µm², its share of the cell's area, and the outline of
    each lobe in level-0 px, an (n, 2) array of x, y: a nucleus traced at 0.07 µm/px has
    about 190 vertices, and the client holds every cell's (as tuples of floats, 19.5 kB a cell;
    as arrays 3 kB). Nuclei compare by their figures: arrays have no single truth value."""

    area_um2: float
    cell_fraction: float
    lobes: tuple[np.ndarray, ...] = field(repr=False, compare=False)


@dataclass(frozen=True)
class TileQc:
    """Quality figures of one tile's core: focus, mean optical-density vector of stained pixels,
    fraction of stained pixels."""

    focus: float
    od_vector: tuple[float, float, float]
    coverage: float
    n_pixels: int


@dataclass(frozen=True)
class TileResult:
    """What a worker returns for one tile: its owned detections and QC, or the error that skipped
    it, and the seconds its stages took (`timing.Stages.items()`)."""

    tile: Tile
    detections: tuple[Detection, ...]
    qc: tuple[TileQc, ...] = ()  # one per qc block
    error: str | None = None
    seconds: tuple[tuple[str, float], ...] = ()
    precision: str | None = None  # the arithmetic its U-Net ran in (`registry.precision`); None: classical, or skipped


@dataclass(frozen=True)
class SlideQc:
    """Slide quality over the AOI's tiles (medians), with warnings in plain words; None where no
    tile held stained cells."""

    focus: float | None
    stain_angle_deg: float | None
    coverage: float | None
    leukocytes_per_mm2: float
    warnings: tuple[str, ...] = ()
    outside_training_colours: float | None = None  # share of the leukocytes (colour_range); None: not measured


@dataclass(frozen=True, eq=False)
class Probabilities:
    """N×15 leukocyte class probabilities (rows sum to 1, CLASS_CODES order) and N reject
    (non-leukocyte) probabilities."""

    probs: np.ndarray
    p_reject: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        return np.asarray(CLASS_CODES)[self.probs.argmax(1)] if len(self.probs) else np.asarray([], "U3")

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(1, initial=0)

    @property
    def p_blast(self) -> np.ndarray:
        return member_probability(self.probs, BLAST)

    @property
    def p_atypical(self) -> np.ndarray:
        return member_probability(self.probs, ATYPICAL)

    @property
    def rejected(self) -> np.ndarray:
        return is_rejected(self.p_reject)

    def take(self, rows: np.ndarray) -> "Probabilities":
        """The calls of `rows` (indices or a boolean mask), e.g. the counted leukocytes."""
        return Probabilities(self.probs[rows], self.p_reject[rows])

    def needs_review(self, min_confidence: float) -> np.ndarray:
        """Abstain: the top class is below `min_confidence`, or the input is more likely not a leukocyte."""
        return (self.confidence < min_confidence) | self.rejected


@dataclass(frozen=True)
class OperatingRates:
    """Operating characteristics of a binary test (argmax in a class set), from validation data."""

    sensitivity: float
    specificity: float
    n_positive: int
    n_negative: int
    source: str = ""
    confident_negatives: tuple[tuple[float, int], ...] = ()  # (threshold, held-out non-members with P ≥ it)
    confusion: tuple[tuple[int, ...], ...] = ()  # held-out counts, true class (rows) × predicted, CLASS_CODES order
    patient_effect: tuple[float, ...] = ()  # (mean, shape) of the Gamma factor on one patient's false-call rates; () unmeasured

    def false_confident_rate(self, threshold: float) -> float | None:
        """Upper 95 % bound (Jeffreys) of the rate at which non-members reach P ≥ `threshold`,
        measured at the largest threshold ≤ it (conservative); None where nothing was measured."""
        from scipy import stats

        measured = [(t, k) for t, k in self.confident_negatives if t <= threshold + 1e-9]
        if not measured or not self.n_negative:
            return None
        k = max(measured)[1]
        return float(stats.beta.ppf(0.975, k + 0.5, self.n_negative - k + 0.5))


@dataclass(frozen=True)
class Prevalence:
    """One clinical test on one slide: argmax count, raw and error-corrected prevalence with its
    95 % interval, expected count (summed probabilities) and the flag with the rule that raised it."""

    count: int
    raw_prevalence: float
    prevalence: float
    ci95: tuple[float, float]
    expected_count: float
    flag: bool
    rule: str | None
    specificity: float  # of the test on this slide's own mix of non-member cells (aggregate.slide_specificity)
    high_p: float | None = None  # P of a "confident" call in the rare-population rule (None: older report.json)


@dataclass(frozen=True)
class Differential:
    """Counts per class code; per-100-leukocyte differential over `denominator` cells (NRBC and
    smudge cells outside it, reported apart)."""

    counts: dict[str, int]
    percent: dict[str, float]
    denominator: int
    nrbc_per_100_wbc: float
    smudge_cells: int


@dataclass(frozen=True)
class Provenance:
    """Where a slide's result came from: models (name, checksum, …), config hash, software, runtime."""

    models: dict
    config_sha256: str
    software: dict
    runtime_s: float | None = None


@dataclass(frozen=True)
class SlideSummary:
    """Everything a slide's report says, computed once by aggregation (summarize.py) and only
    rendered by export. `to_json`/`from_json` are report.json, which batch resume reads back.
    Every count is of leukocytes; the `n_rejected` objects the reject output claimed (`is_rejected`)
    are in none of them."""

    slide: str
    specimen_id: str
    aoi_area_mm2: float
    n_leukocytes: int
    n_rejected: int
    differential: Differential
    blast: Prevalence
    atypical: Prevalence
    needs_review: int
    lab_flags: tuple[str, ...]
    warnings: tuple[str, ...]
    qc: SlideQc
    error_rates: dict[str, OperatingRates]
    provenance: Provenance
    blast_candidates: tuple[int, ...] = ()  # cell ids of the highest P(blast), for the report's gallery
    review_cells: tuple[int, ...] = ()  # first cell ids that need review

    @property
    def flags(self) -> tuple[str, ...]:
        tests = [f"{name}: {p.rule}" for name, p in (("blasts", self.blast), ("atypical cells", self.atypical)) if p.flag]
        return tuple(tests) + self.lab_flags

    def to_json(self) -> str:
        """report.json: the flat layout of earlier versions (keys kept), strict JSON."""
        d = self.differential
        out = {
            "slide": self.slide,
            "specimen_id": self.specimen_id,
            "aoi_area_mm2": self.aoi_area_mm2,
            "n_leukocytes": self.n_leukocytes,
            "n_rejected": self.n_rejected,
            "counts": d.counts,
            "differential": d.percent,
            "differential_denominator": d.denominator,
            "nrbc_per_100_wbc": d.nrbc_per_100_wbc,
            "smudge_cells": d.smudge_cells,
            "blast": _prevalence_json(self.blast),
            "atypical": _prevalence_json(self.atypical),
            "needs_review": self.needs_review,
            "flags": list(self.flags),
            "lab_flags": list(self.lab_flags),
            "warnings": list(self.warnings),
            "qc": asdict(self.qc),
            "error_rates": {k: asdict(v) for k, v in self.error_rates.items()},
            "model": self.provenance.models,
            "config_sha256": self.provenance.config_sha256,
            "software": self.provenance.software,
            "runtime_s": self.provenance.runtime_s,
            "blast_candidates": list(self.blast_candidates),
            "review_cells": list(self.review_cells),
        }
        return json.dumps(out, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "SlideSummary":
        r = json.loads(text)
        return cls(
            r["slide"],
            r["specimen_id"],
            r["aoi_area_mm2"],
            r["n_leukocytes"],
            r.get("n_rejected", 0),
            Differential(r["counts"], r["differential"], r["differential_denominator"], r["nrbc_per_100_wbc"], r["smudge_cells"]),
            _prevalence_from_json(r["blast"]),
            _prevalence_from_json(r["atypical"]),
            r["needs_review"],
            tuple(r["lab_flags"]),
            tuple(r["warnings"]),
            SlideQc(**{**r["qc"], "warnings": tuple(r["qc"]["warnings"])}),
            {k: _rates_from_json(v) for k, v in r["error_rates"].items()},
            Provenance(r["model"], r["config_sha256"], r["software"], r["runtime_s"]),
            tuple(r.get("blast_candidates", ())),
            tuple(r.get("review_cells", ())),
        )


def _prevalence_json(p: Prevalence) -> dict:
    out = asdict(p)
    out["ci95"] = list(p.ci95)
    out["specificity_on_this_slide"] = out.pop("specificity")
    return out


def _prevalence_from_json(d: dict) -> Prevalence:
    d = dict(d)
    d["specificity"] = d.pop("specificity_on_this_slide")
    d["ci95"] = tuple(d["ci95"])
    return Prevalence(**d)


def _rates_from_json(d: dict) -> OperatingRates:
    confident, confusion = (tuple(tuple(row) for row in d[k]) for k in ("confident_negatives", "confusion"))
    effect = tuple(d.get("patient_effect", ()))  # absent from report.json written before cards measured it
    return OperatingRates(**{**d, "confident_negatives": confident, "confusion": confusion, "patient_effect": effect})
