"""One training run as the CLI sees it: load the dataset, write the split(s) and the config to the
run directory, and train the held-out model or each cross-validation fold."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from ..classify import resolve_device
from ..config import Config
from ..registry import ModelCard
from ..cell_images import load_table
from .loop import fit
from .splits import kfold, train_val_test, write_split

log = logging.getLogger(__name__)


def train_run(data: str | Path, run_dir: str | Path, config: Config, folds: int = 0, fold: int | None = None, device: str = "auto") -> list[ModelCard]:
    """folds=0: one patient-wise held-out split (the shipped model's) in run_dir; folds=N: N-fold
    (patient-grouped where ids exist) cross-validation in run_dir/fold_K, all folds or only `fold`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    cfg, field_um = config.train, config.patches.field_um
    table = load_table(Path(data).resolve())  # absolute paths in split.csv and preds: valid from any directory
    dev = resolve_device(device)
    if folds == 0:
        split = train_val_test(table, cfg.holdout_frac, cfg.val_frac, cfg.seed)
        write_split(run_dir / "split.csv", table, split)
        return [fit(table, split, run_dir, cfg, field_um, dev)]
    fold_of = kfold(table, folds, cfg.seed)
    cards = []
    for k in range(folds) if fold is None else [fold]:
        split = train_val_test(table, cfg.holdout_frac, cfg.val_frac, cfg.seed, fold=fold_of, k=k)
        write_split(run_dir / f"fold_{k}" / "split.csv", table, split)
        cards.append(fit(table, split, run_dir / f"fold_{k}", cfg, field_um, dev, cache_dir=run_dir))
    return cards
