"""Numbers for reports and model cards: per-class precision/sensitivity/specificity (the paper's
Table 1), the blast and atypical screening tests from summed probabilities, calibration."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score, roc_curve

from .classes import ATYPICAL, BLAST, CLASS_CODES, member_probability


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) (Guo et al. 2017), by a bounded
    search over log T (one parameter; robust where LBFGS can diverge on separable data)."""
    logits = logits.float()
    grid = torch.linspace(math.log(0.05), math.log(20.0), 401).exp()
    nll = torch.stack([F.cross_entropy(logits / t, targets) for t in grid])
    return float(grid[int(nll.argmin())])


def ece(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence, equal-width bins."""
    conf, pred = probs.max(1), probs.argmax(1)
    correct = pred == targets
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    gaps = (abs(correct[which == b].mean() - conf[which == b].mean()) * (which == b).mean() for b in range(bins) if (which == b).any())
    return float(sum(gaps))


def per_class(y_true: np.ndarray, y_pred: np.ndarray, codes=CLASS_CODES) -> dict:
    """Per class: images, precision, sensitivity, specificity (NaN where undefined)."""
    out = {}
    for c in codes:
        t, p = y_true == c, y_pred == c
        tp, fp, fn, tn = (t & p).sum(), (~t & p).sum(), (t & ~p).sum(), (~t & ~p).sum()
        out[c] = {
            "n": int(t.sum()),
            "precision": _ratio(tp, tp + fp),
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
        }
    return out


def screening_test(truth: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict:
    """A binary test (blast / atypical): AUC, and sensitivity/specificity at `threshold`."""
    truth, pos = truth.astype(bool), score >= threshold
    return {
        "n_positive": int(truth.sum()),
        "n_negative": int((~truth).sum()),
        "auc": float(roc_auc_score(truth, score)) if 0 < truth.sum() < len(truth) else math.nan,
        "threshold": threshold,
        "sensitivity": _ratio((truth & pos).sum(), truth.sum()),
        "specificity": _ratio((~truth & ~pos).sum(), (~truth).sum()),
    }


def false_positive_rate_at(truth: np.ndarray, score: np.ndarray, sensitivity: float) -> float:
    """Share of negatives scoring at or above the highest threshold that keeps `sensitivity` of the
    positives: a ranking compared with a hard-call reader (a re-annotator) at that reader's sensitivity."""
    truth = truth.astype(bool)
    if truth.all() or not truth.any():
        return math.nan
    fpr, tpr, _ = roc_curve(truth, score, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr, sensitivity - 1e-12)])  # the first threshold reaching it


def summarise(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict:
    """Every number for one set of predictions: labels are class codes (leukocytes only), probs N×15."""
    codes = np.array(CLASS_CODES)
    pred = codes[probs.argmax(1)]
    present = [c for c in CLASS_CODES if (labels == c).any()]
    blast = member_probability(probs, BLAST)
    atyp = member_probability(probs, ATYPICAL)
    classes = per_class(labels, pred)
    return {
        "n_images": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else math.nan,
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)) if len(labels) else math.nan,
        "macro_f1": float(f1_score(labels, pred, labels=present, average="macro", zero_division=0)) if present else math.nan,
        "mean_sensitivity": float(np.mean([classes[c]["sensitivity"] for c in present])) if present else math.nan,
        "per_class": classes,
        "blast_test": screening_test(np.isin(labels, BLAST), blast, threshold),
        "atypical_test": screening_test(np.isin(labels, ATYPICAL), atyp, threshold),
        "ece": ece(probs, np.array([CLASS_CODES.index(c) for c in labels])) if len(labels) else math.nan,
        "confusion": confusion_matrix(labels, pred, labels=list(CLASS_CODES)).tolist(),
    }


def _ratio(a, b) -> float:
    return float(a / b) if b else math.nan
