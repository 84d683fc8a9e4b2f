"""Score a trained classifier on the locked test cells (crops), beside the shipped card's locked
figures: the quick verdict on a recipe's final run before its folds are spent (r7, r8).

    PYTHONPATH=$PWD python pipelines/score_locked.py runs/r8/final/model.pt [--json runs/r8/locked.json] [--preds runs/r8/locked.csv]
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from wsi_screen.evaluate import full_summary, json_safe
from wsi_screen.model_files import DEFAULT_WEIGHTS
from wsi_screen.registry import load_card, load_model
from wsi_screen.train.export import headline, locked_rows, scored
from wsi_screen.train.reject_rate import reject_rates
from wsi_screen.train.splits import LOCKED_TEST

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@click.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", default=str(SHARED / "cells"), show_default=True, type=click.Path(exists=True, path_type=Path))
@click.option("--threads", default=2, show_default=True)
@click.option("--tta", is_flag=True, help="Average the 8 rotations/flips.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the figures here.")
@click.option("--preds", "preds_path", type=click.Path(path_type=Path), help="Also write each cell's probabilities here (csv).")
def main(model_path: Path, data: Path, threads: int, tta: bool, json_path: Path | None, preds_path: Path | None) -> None:
    torch.set_num_threads(threads)
    model, card = load_model(model_path)
    frame, review = scored(model, card, locked_rows(data, LOCKED_TEST), tta)
    summary = full_summary(frame, 0.5)
    if preds_path:
        frame.to_csv(preds_path, index=False)
    figures = {
        **headline(summary),
        "accuracy": summary["accuracy"],
        "reject_max_share": reject_rates(frame.rename(columns={"class": "label"}))["max_share"],
    }
    shipped = load_card(DEFAULT_WEIGHTS).metrics["headline"]["locked"]
    for name, value in figures.items():
        print(f"{name:26s} {value:.4f}" + (f"   shipped {shipped[name]:.4f}" if name in shipped else ""))
    if json_path:
        json_path.write_text(json.dumps(json_safe({"model": str(model_path), "locked": figures, "needs_review": review}), indent=1))


if __name__ == "__main__":
    main()
