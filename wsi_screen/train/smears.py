"""Known-prevalence smears built from real model outputs: 2000-cell smears resampled from the
probabilities a model gave real cells (a normal mix plus blasts at a set share), aggregated exactly
as `screen` does, to measure how often the blast flag fires where 0.5 % is a population (one blast
among 300 cells never can: both flag rules need two cells' evidence)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..aggregate import blast_and_atypical
from ..classes import BLAST
from ..config import AggregateConfig
from ..synth import NORMAL_MIX

SMEAR_CELLS = 2000
SMEARS = 40
PREVALENCES = (0.0, 0.005, 0.05)


def smears(probs: np.ndarray, labels: np.ndarray, normal: np.ndarray, prevalence: float, seed: int) -> Iterator[np.ndarray]:
    """SMEARS smears of SMEAR_CELLS rows of `probs`: NORMAL_MIX drawn from the `normal` rows,
    blasts (MYO, MOB) from any row, at `prevalence`."""
    blasts = probs[np.isin(labels, BLAST)]
    n_blasts = round(prevalence * SMEAR_CELLS)
    counts = {code: round(share * (SMEAR_CELLS - n_blasts)) for code, share in NORMAL_MIX.items()}
    by_class = {code: probs[normal & (labels == code)] for code in counts}
    rng = np.random.default_rng(seed)
    for _ in range(SMEARS):
        cells = [by_class[c][rng.integers(len(by_class[c]), size=k)] for c, k in counts.items()]
        yield np.vstack(cells + [blasts[rng.integers(len(blasts), size=n_blasts)]])


def flag_rates(probs: np.ndarray, labels: np.ndarray, normal: np.ndarray, rates: dict, seed: int = 11) -> dict[str, float]:
    """Share of smears flagged at each of PREVALENCES, with the operating `rates` screen would use;
    NaN where the cells lack a class the smear needs."""
    cfg = AggregateConfig(bootstrap_samples=500)
    have = {code: bool((normal & (labels == code)).any()) for code in NORMAL_MIX} | {"blast": bool(np.isin(labels, BLAST).any())}
    out = {}
    for p in PREVALENCES:
        if all(have[c] for c in NORMAL_MIX) and (have["blast"] or not p):
            out[str(p)] = float(
                np.mean([blast_and_atypical(cells, rates, cfg)["blast"].flag for cells in smears(probs, labels, normal, p, seed)])
            )
        else:
            out[str(p)] = float("nan")
    return out
