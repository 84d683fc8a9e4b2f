"""How often the blast prevalence interval covers the truth, how wide it is and how often the flag
fires, on simulated 2000-cell smears (normal background, MYO blasts) whose every call is drawn from
a 'true' confusion that is itself a posterior draw around a held-out one. The same seeded
simulation backs `tests/test_aggregate.py::test_slide_specific_interval_covers_the_truth_over_simulated_slides`,
which asserts ≥ 90 % coverage and a useful width; this script writes its figures to
docs/statistics/interval_coverage.json, rendered into docs/statistics.md by pipelines/doc_tables.py.

    PYTHONPATH=$PWD python -m benchmarks.interval_coverage && PYTHONPATH=$PWD python pipelines/doc_tables.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from wsi_screen.aggregate import prevalence
from wsi_screen.classes import CLASS_CODES
from wsi_screen.config import AggregateConfig
from wsi_screen.records import OperatingRates

OUT = Path(__file__).resolve().parents[1] / "docs" / "statistics" / "interval_coverage.json"
PREVALENCES = (0.0, 0.005, 0.05)
SMEARS, CELLS, BOOTSTRAP, SEED = 60, 2000, 1000, 7
BACKGROUND = {"NGS": 0.6, "LYT": 0.3, "MON": 0.1}


def example_confusion() -> np.ndarray:
    """A held-out confusion (counts): normal classes are almost never called blasts, promyelocytes
    often (15 %), blasts are found 80 % of the time; PMB has no held-out data."""
    k = len(CLASS_CODES)
    conf = np.zeros((k, k), int)
    for i, c in enumerate(CLASS_CODES):
        if c == "PMB":
            continue  # no held-out data
        conf[i, i] = 200
    myo, pmo, mon = (CLASS_CODES.index(c) for c in ("MYO", "PMO", "MON"))
    conf[pmo, myo], conf[pmo, pmo] = 30, 170
    conf[myo, myo], conf[myo, pmo] = 160, 40
    conf[mon, myo], conf[mon, mon] = 2, 198
    return conf


def _posterior_draw(conf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    draw = rng.gamma(conf + 0.5) * (conf.sum(1, keepdims=True) > 0)
    return draw / np.maximum(draw.sum(1, keepdims=True), 1e-12)


def simulate(true_prev: float, smears: int = SMEARS, cells: int = CELLS, bootstrap: int = BOOTSTRAP, seed: int = SEED) -> dict:
    """Coverage, mean width and flag rate of the composition-aware interval over `smears` smears."""
    rng = np.random.default_rng(seed)
    conf = example_confusion()
    rates = OperatingRates(0.8, 0.99, 200, 2800, "simulation", confusion=tuple(map(tuple, conf)))
    truth = _posterior_draw(conf, rng)
    classes = [CLASS_CODES.index(c) for c in BACKGROUND] + [CLASS_CODES.index("MYO")]
    weights = np.array([v * (1 - true_prev) for v in BACKGROUND.values()] + [true_prev])
    cfg = AggregateConfig(bootstrap_samples=bootstrap)
    blast = [CLASS_CODES.index("MYO"), CLASS_CODES.index("MOB")]
    covered, flagged, widths = 0, 0, []
    for _ in range(smears):
        true = rng.choice(classes, size=cells, p=weights)
        called = np.array([rng.choice(len(CLASS_CODES), p=truth[t]) for t in true])
        counts = np.bincount(called, minlength=len(CLASS_CODES))
        p = prevalence(np.isin(called, blast), np.zeros(cells), rates, cfg.blast_threshold, 0.9, 2, cfg, counts, blast)
        share = np.isin(true, blast).mean()
        covered += p.ci95[0] - 1e-9 <= share <= p.ci95[1] + 1e-9
        flagged += p.flag
        widths.append(p.ci95[1] - p.ci95[0])
    return {
        "true_prevalence": true_prev,
        "smears": smears,
        "coverage": float(covered / smears),
        "mean_width": float(np.mean(widths)),
        "flagged": float(flagged / smears),
    }


def main() -> None:
    rows = []
    for true_prev in PREVALENCES:
        t0 = time.perf_counter()
        rows.append(simulate(true_prev))
        print(json.dumps(rows[-1]), f"{time.perf_counter() - t0:.0f} s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cells": CELLS, "bootstrap_samples": BOOTSTRAP, "seed": SEED, "rows": rows}, indent=1) + "\n")
    print(f"→ {OUT}")


if __name__ == "__main__":
    main()
