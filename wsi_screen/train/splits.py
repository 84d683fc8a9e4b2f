"""Deterministic splits. Cells of one patient are never on both sides (they share stain, smear and
disease), so rows with a patient id are split by patient; rows without one (PBC normal donors) are
split by image, stratified by class."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..cell_images import load_table
from ..classes import BLAST
from ..config import TrainConfig
from ..errors import DatasetError

LOCKED_TEST = Path(__file__).resolve().parents[2] / "configs" / "locked_test.csv"


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
            parts = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(
                rows, labels[rows], table["patient"].to_numpy()[rows]
            )
        else:
            parts = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(rows, labels[rows])
        for k, (_, test) in enumerate(parts):
            fold[rows[test]] = k
    return fold


def recipe_folds(table: pd.DataFrame, n_folds: int, train: TrainConfig) -> np.ndarray:
    """A recipe's folds: drawn by `train.fold_seed`, or by `train.seed` where that is unset, so a
    recipe that changes only its training seed can keep every other recipe's folds (patient for
    patient comparable)."""
    return kfold(table, n_folds, train.seed if train.fold_seed is None else train.fold_seed)


def holdout(
    table: pd.DataFrame,
    frac: float,
    seed: int = 0,
    trials: int = 500,
    image_frac: float | None = None,
    each_on_both_sides: tuple[str, ...] = (),
) -> np.ndarray:
    """Boolean mask of a held-out share ≈ frac. Patients: among `trials` random draws of
    round(frac × patients) patients, the one whose per-class held-out shares are closest to frac
    and that leaves blasts (and each class of `each_on_both_sides`) on both sides. Images without
    patient: a stratified random share of `image_frac` (default frac)."""
    rng = np.random.default_rng(seed)
    image_frac = frac if image_frac is None else image_frac
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
            each = [counts[c].to_numpy() for c in each_on_both_sides if c in counts.columns]
            if any(not 0 < col[pick].sum() < col.sum() for col in each):
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
        out[rows[: round(image_frac * len(rows))]] = True
    return out


def train_val_test(
    table: pd.DataFrame, test_frac: float, val_frac: float, seed: int = 0, fold: np.ndarray | None = None, k: int | None = None
) -> np.ndarray:
    """'train' / 'val' / 'test' per row. Test is fold k when folds are given, else a `holdout`
    (none at test_frac 0: a final model, tested on the locked cells); validation (early stopping,
    temperature) is a `holdout` of the remainder."""
    if fold is not None:
        test = fold == k
    else:
        test = holdout(table, test_frac, seed) if test_frac else np.zeros(len(table), bool)
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


def lock_test_set(table: pd.DataFrame, n_patients: int, image_frac: float, seed: int = 0) -> np.ndarray:
    """The locked test set no run trains on: `n_patients` whole patients (each blast class on both
    sides of the lock) and a class-stratified `image_frac` of the images without patient ids."""
    n_all = table.loc[table["patient"].fillna("") != "", "patient"].nunique()
    return holdout(table, (n_patients - 0.49) / n_all, seed, trials=2000, image_frac=image_frac, each_on_both_sides=BLAST)


def is_locked(table: pd.DataFrame, locked_files: set[str], root: str | Path) -> np.ndarray:
    """Per row: is its path relative to `root` in `locked_files` (the locked list's file names)?"""
    root = Path(root).resolve()
    rel = [Path(f).resolve().relative_to(root).as_posix() if Path(f).resolve().is_relative_to(root) else f for f in table["file"]]
    return np.array([r in locked_files for r in rel], bool)


def without_locked(table: pd.DataFrame, locked_files: set[str], root: str | Path) -> pd.DataFrame:
    """`table` less the rows whose path relative to `root` is in `locked_files`."""
    return table[~is_locked(table, locked_files, root)].reset_index(drop=True)


def unlocked_table(data: str | Path, locked: str | Path = LOCKED_TEST) -> pd.DataFrame:
    """`data`'s table (`cell_images.load_table`) less its locked cells: what runs train on."""
    return without_locked(load_table(data), set(read_locked(locked)["file"]), data)


def read_locked(path: str | Path = LOCKED_TEST) -> pd.DataFrame:
    """The locked list (file relative to the cells folder, class, source, patient), checked against
    the SHA-256 written beside it when it was locked: an edited list is an error, not a new lock."""
    path = Path(path)
    try:
        data, expected = path.read_bytes(), path.with_name(path.name + ".sha256").read_text().split()[0]
    except FileNotFoundError as exc:
        raise DatasetError("locked test list or its checksum is missing", exc.filename) from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise DatasetError("locked test list does not match its checksum", path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)
