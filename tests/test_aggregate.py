import numpy as np
import pytest

from wsi_screen.aggregate import OperatingRates, blast_and_atypical, corrected_interval, differential, lab_flags, rogan_gladen
from wsi_screen.classes import CLASS_CODES
from wsi_screen.config import AggregateConfig

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
        lo, hi = corrected_interval(int(called.sum()), 2000, RATES, 2000, rng)
        covered += lo - 1e-9 <= true_prev <= hi + 1e-9
        widths.append(hi - lo)
    print(f"prevalence {true_prev}: coverage {covered / 200:.3f}, mean width {np.mean(widths):.4f}")
    assert covered / 200 >= 0.90
    assert np.mean(widths) < 0.03


def test_differential_keeps_nrbc_and_smudge_cells_outside_the_denominator():
    predicted = ["NGS"] * 60 + ["LYT"] * 30 + ["EOS"] * 10 + ["EBO"] * 5 + ["KSC"] * 7
    d = differential(predicted)
    assert d["differential_denominator"] == 100
    assert d["differential"]["NGS"] == 60.0 and d["differential"]["EOS"] == 10.0
    assert "EBO" not in d["differential"] and d["nrbc_per_100_wbc"] == 5.0 and d["smudge_cells"] == 7
    assert sum(d["counts"].values()) == 112
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
    assert differential([])["differential_denominator"] == 0
