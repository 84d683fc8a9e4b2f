"""Two recipes' cross-validations compared on the folds both finished: within-DeepAPL blast AUC and
false-blast rate per fold and pooled, and the difference (A − B) with a 95 % interval from a
patient bootstrap (DeepAPL patients resampled with replacement, both recipes scored on the same
draw, so what the patients do to both cancels). Recipe search trains one fold per recipe at a
time; a single fold moves by about ±0.01, so a lead is read from this interval, not from the
point figures.

    python pipelines/compare_folds.py runs/r30/cv runs/r22c/cv --folds 2 3 4
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from wsi_screen.classes import BLAST, CLASS_CODES, blast_called, member_probability
from wsi_screen.evaluate import joined, read_labels


def deepapl_predictions(cv_dir: Path, fold: int) -> pd.DataFrame:
    """One fold's held-out DeepAPL leukocytes: file, patient, fold, p_blast, called, blast."""
    fold_dir = cv_dir / f"fold_{fold}"
    frame = joined(fold_dir / "preds_test.csv", read_labels(fold_dir / "split.csv"))
    frame = frame[frame["source"] == "deepapl"]
    probs = frame[list(CLASS_CODES)].to_numpy()
    return pd.DataFrame(
        {
            "file": frame["key"],
            "patient": frame["patient"].astype(str),
            "fold": fold,
            "p_blast": member_probability(probs, BLAST),
            "called": blast_called(probs),
            "blast": frame["class"].isin(BLAST).to_numpy(),
        }
    )


def figures(frame: pd.DataFrame) -> tuple[float, float]:
    """Within-DeepAPL blast AUC and the false-blast rate among its non-blasts."""
    return float(roc_auc_score(frame["blast"], frame["p_blast"])), float(frame.loc[~frame["blast"], "called"].mean())


def patient_bootstrap(a: pd.DataFrame, b: pd.DataFrame, n_boot: int, seed: int = 0) -> np.ndarray:
    """n_boot × 2 differences (AUC, false-blast rate), A − B, over resampled patients."""
    rng = np.random.default_rng(seed)
    patients = a["patient"].unique()
    rows_a, rows_b = a.groupby("patient").indices, b.groupby("patient").indices
    out = []
    for _ in range(n_boot):
        draw = rng.choice(patients, len(patients))
        ia = np.concatenate([rows_a[p] for p in draw])
        ib = np.concatenate([rows_b[p] for p in draw])
        if a["blast"].iloc[ia].nunique() < 2:
            continue
        out.append(np.subtract(figures(a.iloc[ia]), figures(b.iloc[ib])))
    return np.array(out)


@click.command()
@click.argument("cv_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cv_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--folds", multiple=True, type=int, help="Folds to compare (default: every fold both finished).")
@click.option("--n-boot", default=2000, show_default=True)
def main(cv_a: Path, cv_b: Path, folds: tuple[int, ...], n_boot: int) -> None:
    done = [sorted(int(p.parent.name.split("_")[1]) for p in cv.glob("fold_*/preds_test.csv")) for cv in (cv_a, cv_b)]
    folds = folds or tuple(sorted(set(done[0]) & set(done[1])))
    if not folds:
        raise click.ClickException(f"{cv_a} and {cv_b}: no fold finished in both")
    runs = [pd.concat([deepapl_predictions(cv, k) for k in folds], ignore_index=True) for cv in (cv_a, cv_b)]
    a, b = (r.sort_values(["patient", "file"]).reset_index(drop=True) for r in runs)
    if not a["file"].equals(b["file"]):
        raise click.ClickException(f"{cv_a} and {cv_b}: the folds hold out different cells (another split)")
    per_fold = {k: {"a": figures(a[a["fold"] == k]), "b": figures(b[b["fold"] == k])} for k in folds}
    diffs = patient_bootstrap(a, b, n_boot)
    lo, hi = np.percentile(diffs, [2.5, 97.5], axis=0)
    pooled_a, pooled_b = figures(a), figures(b)
    click.echo(json.dumps({"a": str(cv_a), "b": str(cv_b), "folds": list(folds), "patients": int(a["patient"].nunique()), "cells": len(a)}))
    for k, f in per_fold.items():
        click.echo(f"fold {k}: AUC {f['a'][0]:.3f} vs {f['b'][0]:.3f}, false blasts {f['a'][1]:.1%} vs {f['b'][1]:.1%}")
    click.echo(
        f"pooled: AUC {pooled_a[0]:.3f} vs {pooled_b[0]:.3f}, difference {pooled_a[0] - pooled_b[0]:+.3f} [{lo[0]:+.3f}, {hi[0]:+.3f}]; "
        f"false blasts {pooled_a[1]:.1%} vs {pooled_b[1]:.1%}, difference {pooled_a[1] - pooled_b[1]:+.1%} [{lo[1]:+.1%}, {hi[1]:+.1%}] "
        f"(patient bootstrap, {len(diffs)} draws)"
    )


if __name__ == "__main__":
    main()
