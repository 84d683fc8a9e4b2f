"""Aggregation of one screened slide: what detection found and what the classifier called →
one SlideSummary (counts, differential, blast/atypical prevalence and flags, QC, the cells a
reviewer should see first). Pure: no files, no models; export only renders its result."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .aggregate import blast_and_atypical, differential, lab_flags
from .classes import ATYPICAL, BLAST, CLASS_CODES
from .config import Config
from .errors import ModelError
from .find_cells import SlideCells
from .qc import density
from .records import OperatingRates, Probabilities, Provenance, SlideSummary

RATE_KEYS = ("test", "confident_negatives", "patient_effect")  # the card metrics `rates_from_metrics` reads


def rates_from_card(card) -> dict[str, OperatingRates]:
    """Sensitivity/specificity of each clinical test as the counts define it (argmax in the class
    set), from the out-of-fold confusion matrix in the model card, and how often out-of-fold
    non-members reached each high probability (for the rare-population flag)."""
    return rates_from_metrics(card.metrics or {})


def rates_from_metrics(metrics: dict) -> dict[str, OperatingRates]:
    """`rates_from_card` of a card's metrics (`test`: a full_summary with its confusion;
    `confident_negatives`; `patient_effect`, where measured)."""
    test, confident_negatives, patient_effect = (metrics.get(k, {}) for k in RATE_KEYS)
    confusion = np.asarray(test.get("confusion", []), float)
    if confusion.shape != (len(CLASS_CODES), len(CLASS_CODES)):
        raise ModelError("model card has no held-out confusion matrix: cannot correct prevalence for its error rates")
    rates = {}
    for name, members in (("blast", BLAST), ("atypical", ATYPICAL)):
        idx = [CLASS_CODES.index(c) for c in members]
        pos, neg = confusion[idx], np.delete(confusion, idx, axis=0)
        n_pos, n_neg = pos.sum(), neg.sum()
        se = pos[:, idx].sum() / n_pos if n_pos else 0.5
        sp = 1 - neg[:, idx].sum() / n_neg if n_neg else 0.5
        confident = confident_negatives.get(name, {})
        effect = patient_effect.get(name, {})
        rates[name] = OperatingRates(
            float(se),
            float(sp),
            int(n_pos),
            int(n_neg),
            "model card: out-of-fold confusion matrix (argmax rule)",
            tuple(zip(confident.get("thresholds", []), confident.get("counts", []))),
            tuple(tuple(int(v) for v in row) for row in confusion),
            (effect["mean"], effect["shape"]) if effect else (),
        )
    return rates


def summarize_slide(
    cells: SlideCells,
    calls: Probabilities,
    rates: dict[str, OperatingRates],
    config: Config,
    specimen_id: str | None,
    provenance: Provenance,
    outside_colours: np.ndarray | None = None,
) -> SlideSummary:
    """The slide's summary over its leukocytes: objects the reject output claims are counted as
    `n_rejected` and nowhere else (not in the differential, the tests, the flags, the review count
    or the density). The galleries hold the `export.gallery_size` leukocytes of highest P(blast)
    and the first as many that need review, by cell id (all objects). `outside_colours` (one bool
    per object, `colour_range`): the share of leukocytes stained outside the classifier's training
    colours, with a warning above `qc.max_outside_colours`."""
    kept = np.flatnonzero(~calls.rejected)
    leukocytes = calls.take(kept)
    n = len(kept)
    review = leukocytes.needs_review(config.classify.review_below)
    diff = differential(leukocytes.predicted)
    tests = blast_and_atypical(leukocytes.probs, rates, config.aggregate)
    few = n < config.aggregate.min_leukocytes
    notes = [f"only {n} leukocytes classified (< {config.aggregate.min_leukocytes}): the differential is unreliable"] if few else []
    notes += [f"corrupt tile skipped: {e}" for e in cells.tile_errors]
    outside = float(outside_colours[kept].mean()) if outside_colours is not None and n else None
    if outside is not None and outside > config.qc.max_outside_colours:
        notes.append(
            f"{outside:.0%} of the leukocytes are stained outside the colours the classifier was trained on "
            f"(limit {config.qc.max_outside_colours:.0%}): its calls are not validated for this stain or scanner"
        )
    shown = config.export.gallery_size
    return SlideSummary(
        slide=cells.slide_path.name,
        specimen_id=specimen_id or cells.slide_path.stem,
        aoi_area_mm2=cells.aoi_area_mm2,
        n_leukocytes=n,
        n_rejected=len(calls.p_reject) - n,
        differential=diff,
        blast=tests["blast"],
        atypical=tests["atypical"],
        needs_review=int(review.sum()),
        lab_flags=tuple(lab_flags(diff, config.aggregate)),
        warnings=tuple(notes),
        qc=replace(cells.qc, leukocytes_per_mm2=density(n, cells.aoi_area_mm2), outside_training_colours=outside),
        error_rates=rates,
        provenance=provenance,
        blast_candidates=tuple(int(i) for i in kept[np.argsort(-leukocytes.p_blast, kind="stable")[:shown]]),
        review_cells=tuple(int(i) for i in kept[review][:shown]),
    )
