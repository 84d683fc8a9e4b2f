"""Metric functions on hand-checkable numbers."""

import numpy as np
import pytest
import torch

from wsi_screen.classes import CLASS_CODES
from wsi_screen.metrics import ece, fit_temperature, per_class, screening_test, summarise


def test_per_class_counts():
    y = np.array(["MYO", "MYO", "NGS", "NGS", "LYT"])
    p = np.array(["MYO", "NGS", "NGS", "NGS", "MYO"])
    m = per_class(y, p)
    assert m["MYO"] == {"n": 2, "precision": 0.5, "sensitivity": 0.5, "specificity": 2 / 3}
    assert m["NGS"]["precision"] == 2 / 3 and m["NGS"]["sensitivity"] == 1.0
    assert np.isnan(m["EOS"]["sensitivity"]) and m["EOS"]["specificity"] == 1.0


def test_screening_test():
    t = screening_test(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1, 0.2]))
    assert t["auc"] == pytest.approx(5 / 6) and t["sensitivity"] == 0.5 and t["specificity"] == 2 / 3


def test_temperature_recovers_known_value():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 5, generator=g) * 2
    y = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=g)[:, 0]
    assert fit_temperature(true_logits * 3, y) == pytest.approx(3, rel=0.1)


def test_ece():
    probs = np.array([[0.8, 0.2]] * 10)
    assert ece(probs, np.array([0] * 8 + [1] * 2)) == pytest.approx(0.0)
    assert ece(probs, np.array([1] * 10)) == pytest.approx(0.8)


def test_summarise_blast_test_from_summed_probabilities():
    probs = np.zeros((3, 15))
    probs[0, CLASS_CODES.index("MYO")] = 0.3
    probs[0, CLASS_CODES.index("MOB")] = 0.3
    probs[0, CLASS_CODES.index("NGS")] = 0.4  # argmax NGS, but p_blast 0.6: a positive blast test
    probs[1, CLASS_CODES.index("NGS")] = 1
    probs[2, CLASS_CODES.index("LYT")] = 1
    s = summarise(np.array(["MYO", "NGS", "LYT"]), probs)
    assert s["blast_test"]["sensitivity"] == 1.0 and s["blast_test"]["auc"] == 1.0
    assert s["per_class"]["MYO"]["sensitivity"] == 0.0 and s["accuracy"] == pytest.approx(2 / 3)
