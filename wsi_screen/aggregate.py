"""Per-smear aggregation: counts, the differential as labs report it, and blast/atypical
prevalence corrected for the classifier's own error rates.

Among thousands of normal cells even a small false-positive rate looks like a blast population,
so the raw share of blast-classified cells is corrected with the Rogan–Gladen estimator using the
shipped model's measured sensitivity and specificity, and its 95 % interval propagates the
sampling of cells, the uncertainty of those rates (a Monte-Carlo bootstrap over Beta and
Dirichlet posteriors) and how far one patient's rates stray from the pooled ones. Specificity
depends on what the non-blast cells are, so it is taken on the slide's own mix: the held-out
confusion matrix per true class, weighted by the slide's class composition estimated by EM from
its predicted counts."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from .classes import ATYPICAL, BLAST, CLASS_CODES, member_probability
from .config import AggregateConfig
from .records import Differential, OperatingRates, Prevalence

NON_LEUKOCYTE_DENOMINATOR = ("EBO", "KSC")  # NRBC per 100 WBC and smudge cells are reported apart


def rogan_gladen(raw: np.ndarray | float, se: np.ndarray | float, sp: np.ndarray | float) -> np.ndarray:
    """True prevalence from apparent prevalence, clipped to [0, 1]."""
    youden = np.maximum(np.asarray(se) + np.asarray(sp) - 1.0, 1e-6)
    return np.clip((np.asarray(raw) + np.asarray(sp) - 1.0) / youden, 0.0, 1.0)


def composition(predicted_counts: np.ndarray, confusion: np.ndarray, iterations: int = 200) -> np.ndarray:
    """True class proportions of a slide from its predicted class counts and the classifier's
    confusion P(predicted j | true i), by EM (Saerens et al. 2002; maximum likelihood, never
    negative). Works on stacks: confusion (..., K, K) → proportions (..., K); classes whose
    confusion row is empty (no held-out data) keep proportion 0."""
    confusion = np.asarray(confusion, float)
    known = confusion.sum(-1) > 0
    pi = np.broadcast_to(known / np.maximum(known.sum(-1, keepdims=True), 1), confusion.shape[:-1]).copy()
    counts = np.asarray(predicted_counts, float)
    total = max(counts.sum(), 1e-300)
    for _ in range(iterations):  # π_i ← π_i Σ_j C_ij n_j / (Σ_k π_k C_kj) / N, as matrix-vector products
        called = np.einsum("...i,...ij->...j", pi, confusion)
        pi = pi * np.einsum("...ij,...j->...i", confusion, counts / np.maximum(called, 1e-300)) / total
    return pi


def slide_specificity(pi: np.ndarray, confusion: np.ndarray, members: list[int]) -> np.ndarray:
    """Specificity of "argmax in members" on the slide's own non-member mix: 1 − Σ_i w_i·P(called
    member | true i), w = the non-member part of the slide's composition. A normal smear's
    neutrophils and lymphocytes are rarely called blasts; an AML smear's promyelocytes often are:
    one specificity for every background would over- or under-correct."""
    others = np.setdiff1d(np.arange(confusion.shape[-1]), members)
    w = pi[..., others]
    w = w / np.maximum(w.sum(-1, keepdims=True), 1e-12)
    called = confusion[..., others, :][..., members].sum(-1)
    return 1.0 - (w * called).sum(-1)


def _row_normalised(counts: np.ndarray) -> np.ndarray:
    return counts / np.maximum(counts.sum(-1, keepdims=True), 1e-12)


def point_specificity(rates: OperatingRates, predicted_counts: np.ndarray | None, members: list[int] | None) -> float:
    """The slide's specificity at the measured confusion (slide_specificity), or the global one."""
    if not rates.confusion or predicted_counts is None:
        return rates.specificity
    conf = _row_normalised(np.asarray(rates.confusion, float))
    return float(slide_specificity(composition(predicted_counts, conf), conf, members))


class Interval(NamedTuple):
    low: float
    high: float
    pooled_low: float  # the lower bound at the held-out cells' pooled error rates: the flag's evidence


def corrected_interval(
    count: int,
    n: int,
    rates: OperatingRates,
    samples: int,
    rng: np.random.Generator,
    predicted_counts: np.ndarray | None = None,
    members: list[int] | None = None,
) -> Interval:
    """95 % interval of the Rogan–Gladen prevalence: cells ~ Beta(count+½, n−count+½) (Jeffreys),
    sensitivity ~ the Beta posterior of its validation counts; specificity ~ its Beta posterior,
    or, with a confusion matrix, the slide's own (slide_specificity) under Dirichlet posteriors of
    the confusion rows (Perks' prior), the composition re-estimated for each draw. A slide is one
    patient, whose cells draw more or fewer false calls than the pooled held-out cells of their
    classes: with a measured `patient_effect` each draw's false-call rate is multiplied by a
    Gamma(shape, mean/shape) factor (`evaluate.fit_patient_effect`). `pooled_low` is the lower
    bound without that factor: more calls than the pooled error rates explain, a screening
    signal. The upper bound is never below that of a slide whose every call is a true blast: a
    clean lab's rare blasts must not be subtracted away as the false calls another lab's cells
    would have made."""
    if n == 0:
        return Interval(0.0, 1.0, 0.0)
    raw = rng.beta(count + 0.5, n - count + 0.5, samples)
    tp = rates.sensitivity * rates.n_positive
    se = rng.beta(tp + 0.5, rates.n_positive - tp + 0.5, samples)
    if rates.confusion and predicted_counts is not None:
        conf = np.asarray(rates.confusion, float)
        # Perks' prior, one pseudo-call per row spread over its 15 cells: Jeffreys' ½ per cell would
        # invent 7.5 calls per row, one of them a blast call, i.e. a 1 % false-blast rate for a
        # class seen 100 times and never called a blast
        prior = 1.0 / conf.shape[-1]
        draws = rng.gamma(conf + prior, size=(samples,) + conf.shape) * (conf.sum(-1, keepdims=True) > 0)
        draws = _row_normalised(draws)
        sp = slide_specificity(composition(predicted_counts, draws, iterations=60), draws, members)
    else:
        tn = rates.specificity * rates.n_negative
        sp = rng.beta(tn + 0.5, rates.n_negative - tn + 0.5, samples)
    pooled_low = float(np.percentile(rogan_gladen(raw, se, sp), 2.5))
    if rates.patient_effect:
        mean, shape = rates.patient_effect
        sp = np.clip(1.0 - (1.0 - sp) * rng.gamma(shape, mean / shape, samples), 0.0, 1.0)
    lo, hi = np.percentile(rogan_gladen(raw, se, sp), [2.5, 97.5])
    # No false calls: the Jeffreys upper end of the apparent prevalence over the sensitivity.
    all_true_hi = rogan_gladen(stats.beta.ppf(0.975, count + 0.5, n - count + 0.5), rates.sensitivity, 1.0)
    return Interval(float(lo), float(max(hi, all_true_hi)), pooled_low)


def prevalence(
    is_member: np.ndarray,
    p_member: np.ndarray,
    rates: OperatingRates,
    threshold: float,
    high_p: float,
    min_cells: int,
    cfg: AggregateConfig,
    predicted_counts: np.ndarray | None = None,
    members: list[int] | None = None,
) -> Prevalence:
    """Prevalence record for one clinical test with its flag rule: the lower bound at the pooled
    error rates above `threshold` (more calls than the model's held-out errors explain; the
    reported CI also allows for this patient's own error rates), or a rare population: more cells
    with P ≥ `high_p` than the model's own measured false-confident rate explains on n cells
    (Poisson, false-alarm rate ≤ cfg.rare_false_alarm), and never fewer than `min_cells`. On a big
    slide a fixed count would flag every normal smear."""
    n = len(is_member)
    count = int(is_member.sum())
    raw = count / n if n else 0.0
    rng = np.random.default_rng(cfg.seed)
    sp = point_specificity(rates, predicted_counts, members) if n else rates.specificity
    ci = corrected_interval(count, n, rates, cfg.bootstrap_samples, rng, predicted_counts, members)
    confident = int((p_member >= high_p).sum())
    false_rate = rates.false_confident_rate(high_p)
    expected_false = n * false_rate if false_rate is not None else 0.0
    needed = max(min_cells, int(stats.poisson.ppf(1 - cfg.rare_false_alarm, expected_false)) + 1)
    rule = None
    if n and ci.pooled_low > threshold:
        rule = f"more calls than the model's held-out error rates explain (95% lower bound {ci.pooled_low:.2%} > {threshold:.2%})"
    elif confident >= needed:
        rule = (
            f"{confident} cells with P >= {high_p:.2f} "
            f"(at least {needed} needed; {expected_false:.1f} expected from the model's false-confident rate)"
        )
    corrected = float(rogan_gladen(raw, rates.sensitivity, sp)) if n else 0.0
    return Prevalence(count, raw, corrected, (ci.low, ci.high), float(p_member.sum()), rule is not None, rule, sp, high_p)


def differential(predicted: list[str] | np.ndarray) -> Differential:
    """Counts per class code, per-100-leukocyte differential (EBO and KSC outside the denominator),
    NRBC per 100 WBC and smudge cells apart."""
    predicted = np.asarray(predicted)
    counts = {c: int((predicted == c).sum()) for c in CLASS_CODES}
    wbc = sum(v for c, v in counts.items() if c not in NON_LEUKOCYTE_DENOMINATOR)
    percent = {c: (100.0 * counts[c] / wbc if wbc else 0.0) for c in CLASS_CODES if c not in NON_LEUKOCYTE_DENOMINATOR}
    return Differential(counts, percent, wbc, 100.0 * counts["EBO"] / wbc if wbc else 0.0, counts["KSC"])


def blast_and_atypical(probs: np.ndarray, rates: dict[str, OperatingRates], cfg: AggregateConfig) -> dict[str, Prevalence]:
    """Both clinical tests of Matek et al.: summed probabilities, argmax membership for counts."""
    probs = np.asarray(probs, np.float64).reshape(-1, len(CLASS_CODES))
    predicted = np.asarray(CLASS_CODES)[probs.argmax(1)] if len(probs) else np.asarray([], str)
    counts = np.bincount(probs.argmax(1), minlength=len(CLASS_CODES)) if len(probs) else np.zeros(len(CLASS_CODES))
    out = {}
    for name, members, thr, high, k in (
        ("blast", BLAST, cfg.blast_threshold, cfg.blast_high_p, cfg.blast_min_cells),
        ("atypical", ATYPICAL, cfg.atypical_threshold, cfg.atypical_high_p, cfg.atypical_min_cells),
    ):
        idx = [CLASS_CODES.index(c) for c in members]
        out[name] = prevalence(np.isin(predicted, members), member_probability(probs, members), rates[name], thr, high, k, cfg, counts, idx)
    return out


def lab_flags(diff: Differential, cfg: AggregateConfig) -> list[str]:
    """Further flags a lab expects, from the differential (percent of leukocytes)."""
    d = diff.percent
    flags = []
    if diff.denominator == 0:
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
