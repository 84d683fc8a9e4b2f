"""Per-smear aggregation: counts, the differential as labs report it, and blast/atypical
prevalence corrected for the classifier's own error rates.

Among thousands of normal cells even a small false-positive rate looks like a blast population,
so the raw share of blast-classified cells is corrected with the Rogan–Gladen estimator using the
shipped model's measured sensitivity and specificity, and its 95 % interval propagates both the
sampling of cells and the uncertainty of those rates (a Monte-Carlo bootstrap over Beta
posteriors)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import ATYPICAL, BLAST, CLASS_CODES
from .config import AggregateConfig

NON_LEUKOCYTE_DENOMINATOR = ("EBO", "KSC")  # NRBC per 100 WBC and smudge cells are reported apart


@dataclass(frozen=True)
class OperatingRates:
    """Operating characteristics of a binary test (argmax in a class set), from validation data."""

    sensitivity: float
    specificity: float
    n_positive: int
    n_negative: int
    source: str = ""


@dataclass(frozen=True)
class Prevalence:
    count: int
    raw_prevalence: float
    prevalence: float
    ci95: tuple[float, float]
    expected_count: float
    flag: bool
    rule: str | None


def rogan_gladen(raw: np.ndarray | float, se: np.ndarray | float, sp: np.ndarray | float) -> np.ndarray:
    """True prevalence from apparent prevalence, clipped to [0, 1]."""
    youden = np.maximum(np.asarray(se) + np.asarray(sp) - 1.0, 1e-6)
    return np.clip((np.asarray(raw) + np.asarray(sp) - 1.0) / youden, 0.0, 1.0)


def corrected_interval(count: int, n: int, rates: OperatingRates, samples: int, rng: np.random.Generator) -> tuple[float, float]:
    """95 % interval of the Rogan–Gladen prevalence: cells ~ Beta(count+½, n−count+½) (Jeffreys),
    sensitivity and specificity ~ Beta posteriors of their validation counts."""
    if n == 0:
        return (0.0, 1.0)
    raw = rng.beta(count + 0.5, n - count + 0.5, samples)
    tp = rates.sensitivity * rates.n_positive
    tn = rates.specificity * rates.n_negative
    se = rng.beta(tp + 0.5, rates.n_positive - tp + 0.5, samples)
    sp = rng.beta(tn + 0.5, rates.n_negative - tn + 0.5, samples)
    lo, hi = np.percentile(rogan_gladen(raw, se, sp), [2.5, 97.5])
    return (float(lo), float(hi))


def prevalence(
    is_member: np.ndarray, p_member: np.ndarray, rates: OperatingRates, threshold: float, high_p: float, min_cells: int, cfg: AggregateConfig
) -> Prevalence:
    """Prevalence record for one clinical test with its flag rule: the CI's lower bound above
    `threshold`, or at least `min_cells` cells with P above `high_p` (a rare population)."""
    n = len(is_member)
    count = int(is_member.sum())
    raw = count / n if n else 0.0
    rng = np.random.default_rng(cfg.seed)
    ci = corrected_interval(count, n, rates, cfg.bootstrap_samples, rng)
    confident = int((p_member >= high_p).sum())
    rule = None
    if n and ci[0] > threshold:
        rule = f"95% CI lower bound {ci[0]:.2%} exceeds {threshold:.2%}"
    elif confident >= min_cells:
        rule = f"{confident} cells with P >= {high_p:.2f} (at least {min_cells} needed)"
    return Prevalence(count, raw, float(rogan_gladen(raw, rates.sensitivity, rates.specificity)) if n else 0.0, ci, float(p_member.sum()), rule is not None, rule)


def differential(predicted: list[str] | np.ndarray) -> dict:
    """Counts per class code, per-100-leukocyte differential (EBO and KSC outside the denominator),
    NRBC per 100 WBC and smudge cells apart."""
    predicted = np.asarray(predicted)
    counts = {c: int((predicted == c).sum()) for c in CLASS_CODES}
    wbc = sum(v for c, v in counts.items() if c not in NON_LEUKOCYTE_DENOMINATOR)
    diff = {c: (100.0 * counts[c] / wbc if wbc else 0.0) for c in CLASS_CODES if c not in NON_LEUKOCYTE_DENOMINATOR}
    return {
        "counts": counts,
        "differential": diff,
        "differential_denominator": wbc,
        "nrbc_per_100_wbc": 100.0 * counts["EBO"] / wbc if wbc else 0.0,
        "smudge_cells": counts["KSC"],
    }


def blast_and_atypical(probs: np.ndarray, rates: dict[str, OperatingRates], cfg: AggregateConfig) -> dict[str, Prevalence]:
    """Both clinical tests of Matek et al.: summed probabilities, argmax membership for counts."""
    probs = np.asarray(probs, np.float64).reshape(-1, len(CLASS_CODES))
    predicted = np.asarray(CLASS_CODES)[probs.argmax(1)] if len(probs) else np.asarray([], str)
    out = {}
    for name, members, thr, high, k in (
        ("blast", BLAST, cfg.blast_threshold, cfg.blast_high_p, cfg.blast_min_cells),
        ("atypical", ATYPICAL, cfg.atypical_threshold, cfg.atypical_high_p, cfg.atypical_min_cells),
    ):
        idx = [CLASS_CODES.index(c) for c in members]
        out[name] = prevalence(np.isin(predicted, members), probs[:, idx].sum(1), rates[name], thr, high, k, cfg)
    return out


def lab_flags(diff: dict, cfg: AggregateConfig) -> list[str]:
    """Further flags a lab expects, from the differential (percent of leukocytes)."""
    d = diff["differential"]
    flags = []
    if diff["differential_denominator"] == 0:
        return flags
    if d["EOS"] > cfg.eosinophilia_pct:
        flags.append(f"eosinophilia: {d['EOS']:.1f}% eosinophils (> {cfg.eosinophilia_pct:g}%)")
    immature = d["NGB"] + d["MMZ"] + d["MYB"] + d["PMO"] + d["PMB"]
    if immature > cfg.left_shift_pct:
        flags.append(f"left shift: {immature:.1f}% bands and immature granulocytes (> {cfg.left_shift_pct:g}%)")
    promyelocytes = d["PMO"] + d["PMB"]
    if promyelocytes > cfg.apl_promyelocyte_pct:
        flags.append(f"suspected APL: {promyelocytes:.1f}% promyelocytes (> {cfg.apl_promyelocyte_pct:g}%)")
    return flags
