"""Classifier recipe search (issue 12): each recipe trained on the same patient-grouped folds of
the unlocked cells (the locked test list never enters), plus the non-leukocyte reject crops, then
scored on its pooled out-of-fold predictions — every unlocked image predicted once by a model that
never saw its patient. Folds run as separate one-thread processes, `--jobs` at a time (a lone
last one on every thread): two one-thread runs use both cores without the stalls two-thread
training suffers on a busy machine.
Resumable: a fold with model.pt is done, a fold with last.pt continues.

    PYTHONPATH=$PWD nohup python pipelines/search_recipes.py configs/recipes/r1_*.yaml -o runs/recipes > runs/recipes.log 2>&1 &

Writes runs/recipes/<recipe>/report (evaluate's report on the pooled out-of-fold predictions) and
runs/recipes/summary.csv (one row per finished recipe)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from wsi_screen.evaluate import evaluate
from wsi_screen.train.jobs import run_jobs, train_command
from wsi_screen.train.non_leukocytes import cut_non_leukocytes
from wsi_screen.train.run import pooled_labels

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def summarise_recipe(run_dir: Path, folds: int) -> dict:
    """Pooled out-of-fold figures (one prediction per image) and the folds' spread."""
    preds = [run_dir / f"fold_{k}" / "preds_test.csv" for k in range(folds)]
    labels = pooled_labels(run_dir, folds)
    oof = run_dir / "oof.csv"
    pd.concat([pd.read_csv(p) for p in preds], ignore_index=True).to_csv(oof, index=False)
    pooled = evaluate([oof], labels, run_dir / "report")["runs"][0]
    per_fold = evaluate(preds, labels, run_dir / "report_folds")["runs"]
    src = pooled["per_source"]
    within = [r["per_source"]["deepapl"]["blast_test"]["auc"] for r in per_fold]
    return {
        "recipe": run_dir.name,
        "blast_auc": pooled["blast_test"]["auc"],
        "blast_auc_deepapl": src["deepapl"]["blast_test"]["auc"],
        "blast_auc_deepapl_folds": " ".join(f"{a:.3f}" for a in within),
        "atypical_auc": pooled["atypical_test"]["auc"],
        "mean_sensitivity": pooled["mean_sensitivity"],
        "false_blast_pbc": src["pbc"]["false_blast_rate"],
        "false_blast_deepapl": src["deepapl"]["false_blast_rate"],
        "ece": pooled["ece"],
        "epochs": json.loads((run_dir / "fold_0" / "model.json").read_text())["provenance"]["epochs_trained"],
    }


@click.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", default=str(REPO / "runs" / "recipes"), show_default=True, type=click.Path(path_type=Path))
@click.option("--folds", default=3, show_default=True)
@click.option("--jobs", default=2, show_default=True, help="Folds trained at once (one thread each; a lone last fold gets them all).")
@click.option("--data", default=str(SHARED / "cells"), show_default=True, type=click.Path(exists=True, path_type=Path))
@click.option("--txl", default=str(SHARED / "detection" / "txl_pbc"), show_default=True, type=click.Path(exists=True, path_type=Path))
def main(recipes, out: Path, folds: int, jobs: int, data: Path, txl: Path):
    cut_non_leukocytes(txl, "train", out / "non_leukocytes")  # once, before parallel folds read it
    todo = [
        (train_command(data, out / r.stem, r, txl, folds, k), out / r.stem / f"fold_{k}.log")
        for r in recipes
        for k in range(folds)
        if not (out / r.stem / f"fold_{k}" / "model.pt").is_file()
    ]
    run_jobs(todo, jobs, REPO)
    rows = [
        summarise_recipe(out / r.stem, folds)
        for r in recipes
        if all((out / r.stem / f"fold_{k}" / "model.pt").is_file() for k in range(folds))
    ]
    if rows:
        summary = out / "summary.csv"
        old = pd.read_csv(summary) if summary.is_file() else pd.DataFrame()
        table = pd.concat(
            [old[~old.get("recipe", pd.Series(dtype=str)).isin([r["recipe"] for r in rows])], pd.DataFrame(rows)], ignore_index=True
        )
        table.to_csv(summary, index=False)
        click.echo(table.to_string(index=False))


if __name__ == "__main__":
    main()
