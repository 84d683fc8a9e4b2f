"""Deterministic splits. Cells of one patient are never on both sides (they share stain, smear and
disease), so rows with a patient id are split by patient; rows without one (PBC normal donors) are
split by image, stratified by class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..classes import BLAST


def kfold(table: pd.DataFrame, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per row: rows with patient ids by StratifiedGroupKFold (whole patients), rows
    without by StratifiedKFold, so each part is stratified on its own."""
    labels = table["label"].to_numpy()
    has_patient = (table["patient"].fillna("") != "").to_numpy()
    fold = np.full(len(table), -1)
    for rows, grouped in ((np.flatnonzero(has_patient), True), (np.flatnonzero(~has_patient), False)):
        if not len(rows):
            continue
        if grouped:
            parts = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(rows, labels[rows], table["patient"].to_numpy()[rows])
        else:
            parts = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(rows, labels[rows])
        for k, (_, test) in enumerate(parts):
            fold[rows[test]] = k
    return fold


def holdout(table: pd.DataFrame, frac: float, seed: int = 0, trials: int = 500) -> np.ndarray:
    """Boolean mask of a held-out share ≈ frac. Patients: among `trials` random draws of
    round(frac × patients) patients, the one whose per-class held-out shares are closest to frac
    and that leaves blasts on both sides. Images without patient: stratified random share."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(table), bool)
    has_patient = (table["patient"].fillna("") != "").to_numpy()
    sub = table[has_patient]
    if len(sub):
        patients = np.array(sorted(sub["patient"].unique()))
        counts = pd.crosstab(sub["patient"], sub["label"]).reindex(patients)
        total = counts.sum(axis=0).to_numpy()
        blast_cols = [c for c in counts.columns if c in BLAST]
        n_pick = max(1, round(frac * len(patients)))
        best, best_score = None, np.inf
        for _ in range(trials):
            pick = np.zeros(len(patients), bool)
            pick[rng.choice(len(patients), n_pick, replace=False)] = True
            held = counts.to_numpy()[pick].sum(axis=0)
            blasts = counts[blast_cols].to_numpy()[pick].sum() if blast_cols else 0
            total_blasts = counts[blast_cols].to_numpy().sum() if blast_cols else 0
            if total_blasts and not 0 < blasts < total_blasts:
                continue
            score = float(np.sum(total * (held / total - frac) ** 2))
            if score < best_score:
                best, best_score = pick, score
        if best is None:
            best = np.isin(np.arange(len(patients)), rng.choice(len(patients), n_pick, replace=False))
        out[has_patient] = np.isin(sub["patient"].to_numpy(), patients[best])
    labels = table["label"].to_numpy()
    for label in np.unique(labels[~has_patient]):
        rows = rng.permutation(np.flatnonzero(~has_patient & (labels == label)))
        out[rows[: round(frac * len(rows))]] = True
    return out


def train_val_test(table: pd.DataFrame, test_frac: float, val_frac: float, seed: int = 0, fold: np.ndarray | None = None, k: int | None = None) -> np.ndarray:
    """'train' / 'val' / 'test' per row. Test is fold k when folds are given, else a `holdout`;
    validation (early stopping, temperature) is a `holdout` of the remainder."""
    test = (fold == k) if fold is not None else holdout(table, test_frac, seed)
    rest = np.flatnonzero(~test)
    val = np.zeros(len(table), bool)
    val[rest[holdout(table.iloc[rest].reset_index(drop=True), val_frac, seed + 1)]] = True
    return np.where(test, "test", np.where(val, "val", "train"))


def write_split(path: str | Path, table: pd.DataFrame, split: np.ndarray) -> Path:
    """The split as a CSV (file, class, source, patient, mpp, split): also a LABELS file for `evaluate`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table[["file", "label", "source", "patient", "mpp"]].rename(columns={"label": "class"}).assign(split=split)
    out.to_csv(path, index=False)
    return path
