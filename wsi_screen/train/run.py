"""One training run as the CLI sees it: load the dataset (less the locked test cells, plus the
non-leukocyte crops for the reject output), write the split(s) and the config to the run
directory, and train the held-out model or each cross-validation fold."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..cell_images import load_table
from ..config import Config
from ..registry import ModelCard, resolve_device
from .loop import fit
from .non_leukocytes import LEUKOCYTE_CODE, cut_leukocytes, cut_non_leukocytes
from .splits import read_locked, recipe_folds, train_val_test, without_locked, write_split

log = logging.getLogger(__name__)


def training_table(
    data: str | Path,
    exclude: str | Path | None = None,
    non_leukocytes: str | Path | None = None,
    crops_dir: str | Path | None = None,
    field_leukocytes: bool = False,
) -> pd.DataFrame:
    """DATA's cells with absolute paths (valid in split.csv and preds from any directory), less the
    cells listed in `exclude` (a locked list, files relative to DATA's folder), plus non-leukocyte
    crops cut from the TXL-PBC tree `non_leukocytes` (its train split) into `crops_dir`, and with
    `field_leukocytes` that tree's leukocytes (class unknown)."""
    data = Path(data).resolve()
    table = load_table(data)
    if exclude:
        locked = set(read_locked(exclude)["file"])
        before = len(table)
        table = without_locked(table, locked, data if data.is_dir() else data.parent)
        log.info("%d locked test cells excluded (%d listed)", before - len(table), len(locked))
    if non_leukocytes:
        table = pd.concat([table, cut_non_leukocytes(non_leukocytes, "train", crops_dir)], ignore_index=True)
        if field_leukocytes:
            table = pd.concat([table, cut_leukocytes(non_leukocytes, "train", crops_dir)], ignore_index=True)
    return table


def train_run(
    data: str | Path,
    run_dir: str | Path,
    config: Config,
    folds: int = 0,
    fold: int | None = None,
    device: str = "auto",
    exclude: str | Path | None = None,
    non_leukocytes: str | Path | None = None,
    final: bool = False,
) -> list[ModelCard]:
    """folds=0: one patient-wise held-out split in run_dir (`final`: every cell trains, none held
    out: the shipped model, its epochs the recipe's, its temperature the folds' at export, tested
    on the locked cells); folds=N: N-fold (patient-grouped where ids exist) cross-validation in
    run_dir/fold_K, all folds or only `fold`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    cfg, field_um = config.train, config.patches.field_um
    table = training_table(data, exclude, non_leukocytes, run_dir.parent / "non_leukocytes", cfg.field_leukocytes)
    dev = resolve_device(device)
    if folds == 0:
        split = np.full(len(table), "train") if final else train_val_test(table, cfg.holdout_frac, cfg.val_frac, cfg.seed)
        split = train_only_unknown(table, split)
        write_split(run_dir / "split.csv", table, split)
        return [fit(table, split, run_dir, cfg, field_um, dev)]
    fold_of = recipe_folds(table, folds, cfg)
    cards = []
    for k in range(folds) if fold is None else [fold]:
        split = train_only_unknown(table, train_val_test(table, cfg.holdout_frac, cfg.val_frac, cfg.seed, fold=fold_of, k=k))
        write_split(run_dir / f"fold_{k}" / "split.csv", table, split)
        cards.append(fit(table, split, run_dir / f"fold_{k}", cfg, field_um, dev, cache_dir=run_dir))
    return cards


def train_only_unknown(table: pd.DataFrame, split: np.ndarray) -> np.ndarray:
    """`split` with every leukocyte of unknown class in train: it has no class to validate or test."""
    return np.where(table["label"].eq(LEUKOCYTE_CODE), "train", split)


def pooled_labels(run_dir: Path, folds: int) -> Path:
    """Every fold's held-out rows in one labels CSV; an image held out twice, or a classed image
    never held out, means broken folds."""
    parts = [pd.read_csv(run_dir / f"fold_{k}" / "split.csv", dtype={"patient": str}) for k in range(folds)]
    test = pd.concat([p[p["split"] == "test"].assign(fold=k) for k, p in enumerate(parts)], ignore_index=True)
    if test["file"].duplicated().any() or len(test) != (parts[0]["class"] != LEUKOCYTE_CODE).sum():
        raise RuntimeError(f"folds in {run_dir} do not hold out each image exactly once")
    path = run_dir / "labels.csv"
    test.to_csv(path, index=False)
    return path
