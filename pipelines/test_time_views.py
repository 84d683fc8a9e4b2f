"""A fold model's held-out cells under test-time views (wider fields, blur, the 8 rotations and
flips) and their averages: does averaging views help the within-DeepAPL blast ranking on patients
the model never saw? Decided on folds, never on the locked cells.

    PYTHONPATH=$PWD python pipelines/test_time_views.py runs/r16/cv/fold_2 [--json runs/r16/views.json]
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np
import pandas as pd
import torch

from wsi_screen.cell_images import load_table
from wsi_screen.classes import CLASS_CODES
from wsi_screen.classify import classify_files
from wsi_screen.evaluate import full_summary
from wsi_screen.registry import load_model
from wsi_screen.train.export import headline
from wsi_screen.train.shifts import Shift, ShiftedEval

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VIEWS = {  # name: (shift, averaged over the 8 rotations and flips)
    "none": (Shift(), False),
    "none, flipped": (Shift(), True),
    "field x1.2": (Shift(field=1.2), False),
    "field x1.43": (Shift(field=1.43), False),
    "field x1.43, flipped": (Shift(field=1.43), True),
    "blur 1 px": (Shift(blur_sigma_px=1.0), False),
}
AVERAGES = {
    "fields x1, x1.2, x1.43": ("none", "field x1.2", "field x1.43"),
    "field x1 and blur 1 px": ("none", "blur 1 px"),
    "rotations and flips, fields x1 and x1.43": ("none, flipped", "field x1.43, flipped"),
}


def figures(rows: pd.DataFrame, probs: np.ndarray) -> dict:
    """The card's target figures (`train.export.headline`) and accuracy of one view's probabilities."""
    summary = full_summary(pd.concat([pd.DataFrame(probs, columns=list(CLASS_CODES)), rows[["class", "source"]]], axis=1))
    return {**headline(summary), "accuracy": summary["accuracy"]}


@click.command()
@click.argument("fold_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", default=str(SHARED / "cells"), show_default=True, type=click.Path(exists=True, path_type=Path))
@click.option("--threads", default=2, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the figures here.")
def main(fold_dir: Path, data: Path, threads: int, json_path: Path | None) -> None:
    torch.set_num_threads(threads)
    model, card = load_model(fold_dir / "model.pt")
    held_out = set(pd.read_csv(fold_dir / "preds_test.csv")["file"])
    table = load_table(data).rename(columns={"label": "class"})
    rows = table[table["file"].isin(held_out) & table["class"].isin(CLASS_CODES)].reset_index(drop=True)
    files, mpp, canvas_px = rows["file"].tolist(), rows["mpp"].tolist(), math.ceil(1.5 * card.input_px)
    probs = {
        name: classify_files(model, card, files, mpp, device="cpu", tta=tta, transform=ShiftedEval(card, shift), canvas_px=canvas_px).probs
        for name, (shift, tta) in VIEWS.items()
    }
    probs |= {name: np.mean([probs[v] for v in members], axis=0) for name, members in AVERAGES.items()}
    out = {"fold": str(fold_dir), "cells": len(rows), "views": {name: figures(rows, p) for name, p in probs.items()}}
    for name, f in out["views"].items():
        print(f"{name:42s} " + "  ".join(f"{k} {v:.4f}" for k, v in f.items()))
    if json_path:
        json_path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
