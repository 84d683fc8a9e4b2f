import dataclasses

import numpy as np
import pytest

from benchmarks.interval_coverage import example_confusion as _confusion
from benchmarks.interval_coverage import simulate
from wsi_screen.aggregate import OperatingRates, blast_and_atypical, corrected_interval, differential, lab_flags, rogan_gladen
from wsi_screen.classes import CLASS_CODES
from wsi_screen.config import AggregateConfig
from wsi_screen.evaluate import fit_patient_effect

RATES = OperatingRates(sensitivity=0.95, specificity=0.995, n_positive=150, n_negative=2000, source="test")


def test_rogan_gladen_inverts_the_apparent_prevalence():
    true = np.array([0.0, 0.005, 0.05, 0.3])
    apparent = true * 0.95 + (1 - true) * (1 - 0.995)
    assert rogan_gladen(apparent, 0.95, 0.995) == pytest.approx(true, abs=1e-12)
    assert rogan_gladen(0.0, 0.95, 0.995) == 0.0  # clipped, not negative


@pytest.mark.parametrize("true_prev", [0.0, 0.005, 0.05])
def test_interval_covers_the_truth_over_simulated_slides(true_prev):
    """≥ 90 % coverage over 200 simulated smears of 2000 cells, classified with rates that are
    themselves only known from a finite validation set; the width stays useful."""
    rng = np.random.default_rng(42)
    se_true = rng.beta(RATES.sensitivity * RATES.n_positive + 0.5, (1 - RATES.sensitivity) * RATES.n_positive + 0.5)
    sp_true = rng.beta(RATES.specificity * RATES.n_negative + 0.5, (1 - RATES.specificity) * RATES.n_negative + 0.5)
    covered, widths = 0, []
    for _ in range(200):
        blasts = rng.random(2000) < true_prev
        called = np.where(blasts, rng.random(2000) < se_true, rng.random(2000) > sp_true)
        lo, hi, _ = corrected_interval(int(called.sum()), 2000, RATES, 2000, rng)
        covered += lo - 1e-9 <= true_prev <= hi + 1e-9
        widths.append(hi - lo)
    print(f"prevalence {true_prev}: coverage {covered / 200:.3f}, mean width {np.mean(widths):.4f}")
    assert covered / 200 >= 0.90
    assert np.mean(widths) < 0.03


def test_patient_effect_covers_patients_whose_false_calls_stray():
    """Each smear one patient whose false-call rate is the pooled one times a Gamma factor (mean
    1.85, shape 2.3: the shipped card's blast fit over 51 AML patients): the pooled interval misses
    the truth on most smears, the one with the patient effect covers it; the flag's evidence, the
    pooled lower bound, is the same either way."""
    rng = np.random.default_rng(5)
    with_effect = dataclasses.replace(RATES, patient_effect=(1.85, 2.3))
    covered = {"pooled": 0, "patient": 0}
    for _ in range(200):
        false_rate = (1 - RATES.specificity) * rng.gamma(2.3, 1.85 / 2.3)
        blasts = rng.random(2000) < 0.005
        count = int(np.where(blasts, rng.random(2000) < RATES.sensitivity, rng.random(2000) < false_rate).sum())
        pooled = corrected_interval(count, 2000, RATES, 2000, np.random.default_rng(1))
        patient = corrected_interval(count, 2000, with_effect, 2000, np.random.default_rng(1))
        assert patient.pooled_low == pooled.pooled_low == pooled.low and patient.low <= pooled.low
        covered["pooled"] += pooled.low <= 0.005 <= pooled.high
        covered["patient"] += patient.low <= 0.005 <= patient.high
    print(covered)
    assert covered["patient"] >= 0.9 * 200 and covered["pooled"] < 0.75 * 200


def test_patient_effect_fit_recovers_how_much_patients_differ():
    """Gamma–Poisson maximum likelihood on 300 simulated patients (their classes' pooled rates
    expect 1–25 false calls each) recovers the mean and shape it was drawn with."""
    rng = np.random.default_rng(3)
    expected = rng.uniform(1, 25, 300)
    observed = rng.poisson(expected * rng.gamma(2.0, 1.5 / 2.0, 300))
    fit = fit_patient_effect(observed, expected)
    assert fit["patients"] == 300 and fit["mean"] == pytest.approx(1.5, rel=0.1) and fit["shape"] == pytest.approx(2.0, rel=0.3)
    assert fit_patient_effect(observed[:4], expected[:4]) == {}


def test_differential_keeps_nrbc_and_smudge_cells_outside_the_denominator():
    predicted = ["NGS"] * 60 + ["LYT"] * 30 + ["EOS"] * 10 + ["EBO"] * 5 + ["KSC"] * 7
    d = differential(predicted)
    assert d.denominator == 100
    assert d.percent["NGS"] == 60.0 and d.percent["EOS"] == 10.0
    assert "EBO" not in d.percent and d.nrbc_per_100_wbc == 5.0 and d.smudge_cells == 7
    assert sum(d.counts.values()) == 112
    flags = lab_flags(d, AggregateConfig())
    assert len(flags) == 1 and flags[0].startswith("eosinophilia")


def _probs(codes, confidence=0.97):
    p = np.full((len(codes), len(CLASS_CODES)), (1 - confidence) / (len(CLASS_CODES) - 1))
    for i, c in enumerate(codes):
        p[i, CLASS_CODES.index(c)] = confidence
    return p


def test_rare_blast_population_flags_and_normal_smear_does_not():
    cfg = AggregateConfig()
    rates = {"blast": RATES, "atypical": RATES}
    normal = blast_and_atypical(_probs(["NGS"] * 700 + ["LYT"] * 300), rates, cfg)
    assert not normal["blast"].flag and normal["blast"].count == 0 and normal["blast"].ci95[0] == 0.0
    rare = blast_and_atypical(_probs(["NGS"] * 695 + ["LYT"] * 300 + ["MYO"] * 5), rates, cfg)
    b = rare["blast"]
    assert b.flag and b.count == 5 and b.raw_prevalence == 0.005
    assert b.expected_count == pytest.approx(5 * (0.97 + 0.03 / 14) + 995 * 2 * 0.03 / 14)
    assert b.ci95[0] <= b.prevalence <= b.ci95[1]
    assert rare["atypical"].count == 5


def test_empty_smear_gives_zero_counts():
    out = blast_and_atypical(np.zeros((0, 15)), {"blast": RATES, "atypical": RATES}, AggregateConfig())
    assert out["blast"].count == 0 and not out["blast"].flag and out["blast"].ci95 == (0.0, 1.0)
    assert differential([]).denominator == 0


def test_rare_population_rule_scales_with_the_slide_and_the_model_false_confident_rate():
    """0.3 % of held-out non-blasts reached P ≥ 0.9: among 5000 normal cells ~15 such cells are
    expected, so 15 must not flag but 60 must; with no measurement the fixed minimum applies.
    (The CI rule is set out of the way: this is the rare-population rule alone.)"""
    cfg = AggregateConfig(blast_threshold=0.5)
    measured = OperatingRates(0.95, 0.995, 150, 2000, "test", confident_negatives=((0.8, 12), (0.9, 6)))
    assert measured.false_confident_rate(0.9) == pytest.approx(0.0057, abs=0.001)  # upper bound of 6/2000
    assert measured.false_confident_rate(0.95) == measured.false_confident_rate(0.9)  # nearest lower threshold
    assert measured.false_confident_rate(0.7) is None
    rates = {"blast": measured, "atypical": measured}

    def slide(n_confident):
        p = _probs(["NGS"] * (5000 - n_confident))
        return np.vstack([p, _probs(["MYO"] * n_confident, confidence=0.93)])

    quiet = blast_and_atypical(slide(15), rates, cfg)["blast"]
    loud = blast_and_atypical(slide(60), rates, cfg)["blast"]
    assert not quiet.flag and loud.flag and "expected from the model's false-confident rate" in loud.rule
    few = blast_and_atypical(slide(3)[-1000:], {"blast": RATES, "atypical": RATES}, cfg)["blast"]
    assert few.flag and "at least 2 needed" in few.rule


def test_composition_and_specificity_follow_the_slide_background():
    from wsi_screen.aggregate import composition, slide_specificity

    conf = _confusion()
    p = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    true = np.zeros(len(CLASS_CODES))
    true[[CLASS_CODES.index(c) for c in ("NGS", "LYT", "MON", "MYO")]] = [0.6, 0.3, 0.07, 0.03]
    pi = composition(10000 * true @ p, p)
    assert pi == pytest.approx(true, abs=1e-3) and pi[CLASS_CODES.index("PMB")] == 0
    blast = [CLASS_CODES.index("MYO"), CLASS_CODES.index("MOB")]
    normal = slide_specificity(pi, p, blast)
    apl = true.copy()
    apl[[CLASS_CODES.index("NGS"), CLASS_CODES.index("PMO")]] = [0.3, 0.3]
    assert normal > 0.999 and slide_specificity(apl, p, blast) < 0.96


def test_normal_background_is_not_over_corrected():
    """300 cells, 5 % blasts found 80 % of the time, no false calls on a normal background: the
    global specificity (held-out set rich in promyelocytes) would push the estimate far below the
    truth; the slide's own specificity keeps the interval on it."""
    conf = _confusion()
    rates = OperatingRates(0.8, 1 - 32 / 2800, 200, 2800, "test", confusion=tuple(map(tuple, conf)))
    codes = ["NGS"] * 170 + ["LYT"] * 90 + ["MON"] * 25 + ["MYO"] * 12 + ["NGS"] * 3  # 15 blasts, 12 called
    out = blast_and_atypical(_probs(codes), {"blast": rates, "atypical": rates}, AggregateConfig())["blast"]
    assert out.specificity > 0.995 and out.ci95[0] <= 0.05 <= out.ci95[1] and out.prevalence == pytest.approx(0.05, abs=0.01)
    global_rates = {"blast": RATES.__class__(0.8, rates.specificity, 200, 2800), "atypical": RATES}
    plain = blast_and_atypical(_probs(codes), global_rates, AggregateConfig())["blast"]
    assert plain.prevalence < 0.045  # what a single specificity does


@pytest.mark.slow
@pytest.mark.parametrize("true_prev", [0.0, 0.005, 0.05])
def test_slide_specific_interval_covers_the_truth_over_simulated_slides(true_prev):
    """60 simulated smears of 2000 cells (normal background, MYO blasts), each cell's call drawn
    from a 'true' confusion that is itself a posterior draw around the held-out one: ≥ 90 %
    coverage of the composition-aware interval, with a useful width, and a normal smear almost
    never flagged. The figures themselves are benchmarks.interval_coverage's (docs/statistics.md)."""
    r = simulate(true_prev)
    assert r["coverage"] >= 0.90 and r["mean_width"] < 0.04
    if true_prev == 0.0:
        assert r["flagged"] <= 0.05


def test_no_blast_calls_still_leave_an_upper_bound():
    """0 calls among 150 cells cannot exclude a small population: P(0 calls | 1 %, Se 0.8) ≈ 30 %."""
    out = blast_and_atypical(_probs(["NGS"] * 150), {"blast": RATES, "atypical": RATES}, AggregateConfig())["blast"]
    assert out.ci95[0] == 0.0 and 0.005 < out.ci95[1] < 0.03 and not out.flag


def test_a_lab_without_false_calls_keeps_its_rare_blasts():
    """12 blasts among 2000 cells (0.6 %), 10 of them called, on a monocyte-rich background whose
    cells this lab never calls blasts, although 1 % of 2000 held-out monocytes were: subtracting
    the 10 false calls the held-out rates expect put the whole interval below the truth (0 – 0.54 %)."""
    conf = _confusion() * 10
    rates = OperatingRates(0.8, 0.99, 2000, 28000, "test", confusion=tuple(map(tuple, conf)))
    codes = ["NGS"] * 602 + ["LYT"] * 388 + ["MON"] * 1000 + ["MYO"] * 10  # 2 missed blasts among the NGS
    out = blast_and_atypical(_probs(codes), {"blast": rates, "atypical": rates}, AggregateConfig())["blast"]
    print(f"prevalence {out.prevalence:.4f}, CI {out.ci95}")
    assert out.ci95[0] <= 0.006 <= out.ci95[1] < 0.02
