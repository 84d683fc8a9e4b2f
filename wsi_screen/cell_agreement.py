"""Per-cell agreement between a screened slide and the same cells' crop files: the slide is judged
on every cell placed on it, so a cell the detector missed or split counts as wrong there, as it
would for a reader of the slide's report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest
from shapely import STRtree, points
from shapely.geometry import Polygon

from .metrics import screening_test


def _within(outlines: Sequence[Polygon], detections: Sequence[tuple[float, float, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(detection, cell) index pairs of each detection centroid lying in a placed cell's outline."""
    if not detections or not outlines:
        return np.zeros(0, int), np.zeros(0, int)
    xy = np.array([(x, y) for x, y, _ in detections], float)
    return STRtree(list(outlines)).query(points(xy), predicate="within")


def slide_detections(outlines: Sequence[Polygon], detections: Sequence[tuple[float, float, str]]) -> list[int | None]:
    """For each placed cell, the index of the one detection (x, y, code) whose centroid lies in its
    outline; None when none does (missed) or several do (found twice), so each detection answers
    for at most one cell and each cell for at most one detection."""
    found: list[list[int]] = [[] for _ in outlines]
    for d, c in zip(*_within(outlines, detections)):
        found[c].append(int(d))
    return [hits[0] if len(hits) == 1 else None for hits in found]


def slide_calls(outlines: Sequence[Polygon], detections: Sequence[tuple[float, float, str]]) -> list[str | None]:
    """The slide's call (class code) for each placed cell, None where `slide_detections` finds none."""
    return [None if d is None else detections[d][2] for d in slide_detections(outlines, detections)]


def counted_outside(outlines: Sequence[Polygon], detections: Sequence[tuple[float, float, str]]) -> int:
    """How many counted detections lie in no placed cell: objects counted as leukocytes that are
    none (a red cell, a platelet), which the slide's differential takes in."""
    return len(detections) - len(set(_within(outlines, detections)[0].tolist()))


def paired_accuracy(truth: Sequence[str], slide: Sequence[str | None], crops: Sequence[str], n_boot: int = 10000, seed: int = 0) -> dict:
    """Accuracy on the slide and on the crops over the same cells, slide − crops with its 95 %
    paired-bootstrap CI (cells resampled together, so what both get right or wrong cancels), and
    the exact McNemar p of the cells only one of them gets right."""
    truth = np.asarray(truth, object)
    on_slide = np.array([s == t for s, t in zip(slide, truth)], bool)
    on_crops = np.asarray(crops, object) == truth
    n = len(truth)
    diff = on_slide.astype(float) - on_crops
    boot = diff[np.random.default_rng(seed).integers(0, n, (n_boot, n))].mean(1)
    only_slide, only_crops = int((on_slide & ~on_crops).sum()), int((on_crops & ~on_slide).sum())
    discordant = only_slide + only_crops
    return {
        "n_cells": n,
        "slide_accuracy": float(on_slide.mean()),
        "crop_accuracy": float(on_crops.mean()),
        "difference": float(diff.mean()),
        "difference_ci95": [float(q) for q in np.quantile(boot, [0.025, 0.975])],
        "only_slide_right": only_slide,
        "only_crops_right": only_crops,
        "mcnemar_p": float(binomtest(only_slide, discordant).pvalue) if discordant else 1.0,
        "missed_or_split": int(sum(s is None for s in slide)),
    }


def blast_agreement(
    truth: Sequence[str],
    slide: Sequence[str | None],
    crops: Sequence[str],
    members: Sequence[str],
    p_slide: Sequence[float],
    p_crops: Sequence[float],
) -> dict:
    """The blast test on the slide and on the same crops: how many placed blasts each calls blasts
    (a missed cell calls nothing), how many non-blasts it calls blasts, and the AUC of each side's
    P(blast) (None where the cells hold one kind; a missed cell's P(blast) is the caller's, e.g. 0).
    Overall agreement can hold while a slide moves the few calls the flag counts, in either direction."""
    truth, crops = np.asarray(truth, object), np.asarray(crops, object)
    member = np.isin(truth, members)
    on_slide = np.array([s in members for s in slide], bool)
    on_crops = np.isin(crops, members)
    aucs = {f"auc_{side}": screening_test(member, np.asarray(p, float))["auc"] for side, p in (("slide", p_slide), ("crops", p_crops))}
    return {
        "blasts": int(member.sum()),
        "blasts_called_slide": int((on_slide & member).sum()),
        "blasts_called_crops": int((on_crops & member).sum()),
        "non_blasts": int((~member).sum()),
        "false_blasts_slide": int((on_slide & ~member).sum()),
        "false_blasts_crops": int((on_crops & ~member).sum()),
        **{k: None if np.isnan(v) else v for k, v in aucs.items()},
    }
