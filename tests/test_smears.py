"""Known-prevalence smears from model outputs: a classifier that is always right never flags a
smear without blasts and always flags one with a 0.5 % or 5 % blast population."""

import numpy as np
import pytest

from wsi_screen.classes import CLASS_CODES
from wsi_screen.summarize import rates_from_metrics
from wsi_screen.synth import NORMAL_MIX
from wsi_screen.train.smears import SMEAR_CELLS, flag_rates, smears

pytestmark = pytest.mark.slow  # aggregates 120 smears of 2000 cells


def _confident(labels, p=0.96):
    probs = np.full((len(labels), len(CLASS_CODES)), (1 - p) / (len(CLASS_CODES) - 1))
    probs[np.arange(len(labels)), [CLASS_CODES.index(c) for c in labels]] = p
    return probs


def _perfect_rates(n_per_class=200):
    confusion = np.diag([n_per_class] * len(CLASS_CODES)).tolist()
    none = {"n_negative": 13 * n_per_class, "thresholds": [0.5, 0.9], "counts": [0, 0]}
    return rates_from_metrics({"test": {"confusion": confusion}, "confident_negatives": {"blast": none, "atypical": none}})


def test_smears_hold_the_mix_and_the_blasts():
    labels = np.array([c for c in NORMAL_MIX for _ in range(30)] + ["MYO"] * 30)
    probs = _confident(labels)
    cells = next(smears(probs, labels, ~np.isin(labels, ["MYO"]), 0.005, seed=3))
    predicted = np.asarray(CLASS_CODES)[cells.argmax(1)]
    assert len(cells) == SMEAR_CELLS and (predicted == "MYO").sum() == 10 and (predicted == "NGS").sum() == round(0.55 * 1990)


def test_a_perfect_classifier_flags_populations_and_nothing_else():
    labels = np.array([c for c in NORMAL_MIX for _ in range(30)] + ["MYO"] * 30)
    rates = flag_rates(_confident(labels), labels, ~np.isin(labels, ["MYO"]), _perfect_rates())
    assert rates == {"0.0": 0.0, "0.005": 1.0, "0.05": 1.0}
    normal = labels[labels != "MYO"]
    missing = flag_rates(_confident(normal), normal, np.ones(len(normal), bool), _perfect_rates())
    assert missing["0.0"] == 0.0 and np.isnan(missing["0.005"])  # no blasts to place: not measurable
