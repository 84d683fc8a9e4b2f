"""Which non-blasts outrank the blasts? For held-out predictions (a fold's preds_test.csv, or
several runs' predictions of the same cells, then also their average), within one source: per
non-blast class its cells, the blast test's AUC against it alone, its share of the misranked
(non-blast above blast) pairs, and how many it has called blasts. Tells a recipe search where
the within-DeepAPL blast AUC is lost, and whether averaging models (their variance) would help.
With the Matek annotations.dat (default: the shared copy, when present) it sets each run beside the
human bar: each re-annotator's blast calls on every class, what those per-class rates would call
on this mix of non-blasts, and the share of non-blasts the run scores as blasts at that
re-annotator's blast sensitivity.

    PYTHONPATH=$PWD python pipelines/blast_rivals.py runs/r17/cv/fold_2/preds_test.csv [runs/r16/cv/fold_2/preds_test.csv]
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd

from wsi_screen.agreement import expected_blast_calls, human_agreement
from wsi_screen.cell_images import load_table
from wsi_screen.classes import BLAST, CLASS_CODES, blast_called, member_probability
from wsi_screen.metrics import false_positive_rate_at, screening_test

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RATED_FROM = 3  # re-annotated cells a class needs before its human rate is used


def rivals(truth: np.ndarray, p_blast: np.ndarray, called: np.ndarray) -> pd.DataFrame:
    """One row per non-blast class present: cells, AUC of blasts against it, misranked-pair share
    (ties count half, as in the AUC), blast calls."""
    blast = np.isin(truth, BLAST)
    ranks = np.sort(p_blast[blast])
    rows = {}
    for code in sorted(set(truth[~blast])):
        own = p_blast[truth == code]
        under, at_or_under = np.searchsorted(ranks, own, "left"), np.searchsorted(ranks, own, "right")
        above = 0.5 * (under + at_or_under)  # blasts this cell outranks, ties half
        rows[code] = {"cells": len(own), "misranked": float(above.sum()), "called_blast": int(called[truth == code].sum())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["auc_against"] = 1 - table["misranked"] / (table["cells"] * len(ranks))
    table["share_of_misranked"] = table["misranked"] / table["misranked"].sum()
    return table.sort_values("misranked", ascending=False)


@click.command()
@click.argument("preds", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", default=str(SHARED / "cells"), show_default=True, type=click.Path(exists=True, path_type=Path))
@click.option("--source", default="deepapl", show_default=True)
@click.option(
    "--annotations", type=click.Path(dir_okay=False, path_type=Path), default=SHARED / "aml_cytomorphology_lmu" / "annotations.dat"
)
def main(preds: tuple[Path, ...], data: Path, source: str, annotations: Path) -> None:
    table = load_table(data).rename(columns={"label": "class"}).set_index("file")
    table = table[(table["source"] == source) & table["class"].isin(CLASS_CODES)]
    runs = [pd.read_csv(p).set_index("file") for p in preds]
    files = runs[0].index[runs[0].index.isin(table.index)]
    if any(not files.isin(run.index).all() for run in runs):
        raise click.UsageError("the predictions do not cover the same cells")
    truth = table.loc[files, "class"].to_numpy()
    probs = [run.loc[files, list(CLASS_CODES)].to_numpy() for run in runs]
    named = dict(zip(map(str, preds), probs)) | ({"average": np.mean(probs, 0)} if len(probs) > 1 else {})
    humans = human_agreement(annotations) if annotations.is_file() else {}
    for name, p in named.items():
        p_blast = member_probability(p, BLAST)
        auc = screening_test(np.isin(truth, BLAST), p_blast)["auc"]
        click.echo(f"\n{name}: {len(files)} {source} cells, blast AUC {auc:.4f}")
        table = rivals(truth, p_blast, blast_called(p))
        for who, h in humans.items():
            calls = {c: (v["called_blast"], v["n"]) for c, v in h["blast_calls_by_class"].items()}
            table[who] = ["{}/{}".format(*calls.get(c, (0, 0))) for c in table.index]
        click.echo(table.round(3).to_string())
        for who, h in humans.items():
            rate, classes = expected_blast_calls(h["blast_calls_by_class"], table["cells"].to_dict(), RATED_FROM)
            cells = np.isin(truth, BLAST + tuple(classes))  # blasts, and the non-blasts of the classes rated
            sens = h["blast_test"]["sensitivity"]
            fpr = false_positive_rate_at(np.isin(truth[cells], BLAST), p_blast[cells], sens)
            click.echo(
                f"{who} (blast sensitivity {100 * sens:.1f} %), on the {int(table.loc[classes, 'cells'].sum())} non-blasts of the "
                f"classes it re-annotated ≥ {RATED_FROM} of: its per-class rates call {100 * rate:.1f} % of them blasts; "
                f"this run, at that sensitivity, {100 * fpr:.1f} %"
            )


if __name__ == "__main__":
    main()
