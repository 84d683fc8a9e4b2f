"""Detector figures that predict another lab: per source and pooled, each source at one µm/px
(never a per-field scale from its own labels), and the errors field precision hides.

A smear has hundreds of red cells per leukocyte, so false detections away from any leukocyte are
counted per 1,000 labelled red cells; an outline that swallows a neighbouring red cell is counted
by the share of a red-cell box it covers, and apart from that by the part of the outline outside
its own leukocyte's box: TXL-PBC's red-cell boxes often overlap the leukocyte they touch, so the
first figure counts label geometry too, the second only outlines that run onto a red cell. How
much of the first is label geometry alone is measured by the labels themselves: the share of
labelled leukocytes whose box's inscribed ellipse (an outline that follows the cell and nothing
else) already covers more than RBC_COVER of a red-cell box. Duplicate WBC boxes are merged before
matching."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from shapely import affinity
from shapely.geometry import Point, Polygon, box

from ..config import DetectConfig
from ..records import Detection
from .detection_metrics import DetectionScore, assign, merge_duplicates, wilson
from .detector import detect_field
from .fields import Field, source_of

# a second look at a field's detections: which of them to keep (e.g. the classifier's reject output)
SecondLook = Callable[[Field, float, list[Detection]], np.ndarray]

RBC_COVER = 0.2  # an outline covering more than this share of a red-cell box has swallowed it


@dataclass(frozen=True, eq=False)
class FieldEval:
    """One field's matches and errors, in the field's own pixels."""

    field: Field
    source: str
    mpp: float
    score: DetectionScore
    n_rbc: int
    far_fp: int  # false positives touching no WBC box
    swallowing: int  # instances covering > RBC_COVER of some red-cell box
    swallowing_tp: int  # of which matched leukocytes
    swallowing_beyond_box: tuple[int, ...]  # indices into outlines still covering > RBC_COVER of a red-cell box outside their WBC box
    outlines: tuple[Polygon, ...]
    false_positives: tuple[int, ...]  # indices into outlines
    wbc_boxes: np.ndarray  # merged
    missed: tuple[int, ...]  # indices into wbc_boxes
    label_floor: int  # labelled leukocytes whose inscribed ellipse alone swallows a red cell
    rejected: int = 0  # detections the second look removed before matching


def evaluate_field(field: Field, mpp: float, segmenter, cfg: DetectConfig, second_look: SecondLook | None = None) -> FieldEval:
    detections = detect_field(segmenter, field, mpp, cfg)
    found = len(detections)
    if second_look is not None and detections:
        detections = [d for d, keep in zip(detections, second_look(field, mpp, detections)) if keep]
    outlines = tuple(Polygon(d.polygon) for d in detections)
    wbc = merge_duplicates(field.wbc_boxes)
    pairs = assign(np.array([(d.x, d.y) for d in detections]), wbc)
    matched_det, matched_box = {r for r, _ in pairs}, {c for _, c in pairs}
    fps = tuple(i for i in range(len(outlines)) if i not in matched_det)
    wbc_shapes = [box(*b) for b in wbc]
    rbc_shapes = [box(*b) for b in field.rbc_boxes]
    swallows = [_swallows(o, rbc_shapes) for o in outlines]
    own_box = {r: wbc_shapes[c] for r, c in pairs}
    beyond = [_swallows(o.difference(own_box[i]) if i in own_box else o, rbc_shapes) for i, o in enumerate(outlines)]
    return FieldEval(
        field=field,
        source=source_of(field),
        mpp=mpp,
        score=DetectionScore(len(pairs), len(fps), len(wbc) - len(pairs)),
        n_rbc=len(rbc_shapes),
        far_fp=sum(not any(outlines[i].intersects(w) for w in wbc_shapes) for i in fps),
        swallowing=int(sum(swallows)),
        swallowing_tp=sum(swallows[i] for i in matched_det),
        swallowing_beyond_box=tuple(i for i, b in enumerate(beyond) if b),
        outlines=outlines,
        false_positives=fps,
        wbc_boxes=wbc,
        missed=tuple(i for i in range(len(wbc)) if i not in matched_box),
        label_floor=sum(_swallows(_inscribed_ellipse(b), rbc_shapes) for b in wbc),
        rejected=found - len(detections),
    )


def _swallows(shape, rbc_shapes: list[Polygon]) -> bool:
    return any(shape.intersection(r).area > RBC_COVER * r.area for r in rbc_shapes if shape.intersects(r))


def _inscribed_ellipse(b) -> Polygon:
    x0, y0, x1, y1 = b
    return affinity.scale(Point((x0 + x1) / 2, (y0 + y1) / 2).buffer(1, 32), (x1 - x0) / 2, (y1 - y0) / 2)


def evaluate_sources(
    fields: list[Field], mpp_by_source: dict[str, float], segmenter, cfg: DetectConfig, second_look: SecondLook | None = None
) -> list[FieldEval]:
    """Every field at its source's single µm/px."""
    return [evaluate_field(f, mpp_by_source[source_of(f)], segmenter, cfg, second_look) for f in fields]


def summarize(evals: list[FieldEval]) -> dict:
    """Per source and pooled: precision/recall/F1 with Wilson 95 % intervals, far false positives
    per 1,000 red cells, and the share of instances that swallow a red cell."""
    groups: dict[str, list[FieldEval]] = {}
    for e in evals:
        groups.setdefault(e.source, []).append(e)
    out = {s: _summary(g) for s, g in sorted(groups.items())}
    out["pooled"] = _summary(evals)
    return out


def _summary(evals: list[FieldEval]) -> dict:
    score = sum((e.score for e in evals), DetectionScore(0, 0, 0))
    n_rbc, far = sum(e.n_rbc for e in evals), sum(e.far_fp for e in evals)
    n_inst = score.tp + score.fp
    swallowing = sum(e.swallowing for e in evals)
    lo, hi = wilson(far, n_rbc)
    return {
        "fields": len(evals),
        "mpp": sorted({round(e.mpp, 5) for e in evals}),
        **score.with_intervals(),
        "n_rbc": n_rbc,
        "far_fp": far,
        "far_fp_per_1000_rbc": 1000 * far / n_rbc if n_rbc else None,
        "far_fp_per_1000_rbc_ci95": (1000 * lo, 1000 * hi),
        "instances": n_inst,
        "swallowing_rbc": swallowing,
        "swallowing_rbc_fraction": swallowing / n_inst if n_inst else 0.0,
        "swallowing_rbc_fraction_ci95": wilson(swallowing, n_inst),
        "swallowing_rbc_fraction_of_leukocytes": sum(e.swallowing_tp for e in evals) / score.tp if score.tp else 0.0,
        "swallowing_beyond_own_box_fraction": sum(len(e.swallowing_beyond_box) for e in evals) / n_inst if n_inst else 0.0,
        "swallowing_label_floor_fraction": sum(e.label_floor for e in evals) / (score.tp + score.fn) if score.tp + score.fn else 0.0,
        "rejected": sum(e.rejected for e in evals),
    }


def classifier_look(model_path: str = "default") -> SecondLook:
    """The product's second look: each detection's fixed-field patch cut from the field (at the
    source's µm/px) as `screen` cuts it from a slide, kept unless the classifier's reject output
    calls it no leukocyte (`records.is_rejected`)."""
    import torch

    from ..classify import batch_logits, patch_batch, to_probabilities
    from ..config import PatchConfig
    from ..patches import extract_patches
    from ..records import is_rejected
    from ..registry import for_inference, load_model
    from ..slide import open_slide

    model, card = load_model(model_path)
    model, cpu, patch_cfg = for_inference(model, "cpu"), torch.device("cpu"), PatchConfig()

    def look(field: Field, mpp: float, detections: list[Detection]) -> np.ndarray:
        with open_slide(field.image, mpp=mpp, max_mpp=1.0) as slide:
            patches = extract_patches(slide, [(d.x, d.y) for d in detections], patch_cfg)
        return ~is_rejected(to_probabilities(batch_logits(model, [patch_batch(patches, card)], cpu), card).p_reject)

    return look
