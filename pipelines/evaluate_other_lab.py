"""Classifiers on another lab's leukocytes (wbc_seg Dataset1, GPL-3.0, evaluation only), each crop
read as `wsi-screen classify --input-mpp` reads it, at the crops' scale estimated from TXL-PBC's
leukocyte sizes (as `evaluate_outlines.py` does) and at ±15 % of it, with the share of crops whose
colours `screen` would find outside the model's training colours (cards that record them); and the
locked PBC normal cells with PBC's stain rendered as each other lab's (one move of the labs' mean
colours, `train.shifts.StainTransfer`: DeepAPL's as the card checks, TXL-PBC val leukocytes' of each
source, and wbc_seg's): how often their class changes, how often they become blasts. TXL-PBC's PBC
fields share the crops' camera and stain, so their row is near the identity. Writes OUT (JSON).

    PYTHONPATH=$PWD python pipelines/evaluate_other_lab.py ../shared/data/segmentation/wbc_seg/Dataset1 \\
        ../shared/data/detection/txl_pbc -o docs/other_lab.json --model shipped=classifier --model r22=runs/r22/export/classifier.pt
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from wsi_screen.checksum import sha256
from wsi_screen.classes import BLAST
from wsi_screen.classify import classify_files, file_colour_moments
from wsi_screen.colour_range import outside_colour_range
from wsi_screen.model_files import resolve_model
from wsi_screen.registry import load_model
from wsi_screen.train.export import locked_rows
from wsi_screen.train.fields import load_fields
from wsi_screen.train.other_lab import field_leukocyte_colours, other_lab_figures, wbc_seg_table
from wsi_screen.train.outlines import estimate_crop_mpp, load_wbc_seg
from wsi_screen.train.shifts import lab_colours, matched_lab_colours, stain_transfer_change
from wsi_screen.train.splits import LOCKED_TEST, unlocked_table

SCALES = (1.0, 0.85, 1.15)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@click.command()
@click.argument("wbc_seg", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("txl_pbc", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--cells", type=click.Path(exists=True, path_type=Path), default=SHARED / "cells", show_default=True, help="The locked cells' data."
)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--model", "models", multiple=True, default=("shipped=classifier",), show_default=True, help="NAME=weights; repeatable.")
@click.option("--threads", default=2, show_default=True)
def main(wbc_seg: Path, txl_pbc: Path, cells: Path, out: Path, models: tuple[str, ...], threads: int) -> None:
    torch.set_num_threads(threads)
    table = wbc_seg_table(wbc_seg)
    mpp = estimate_crop_mpp(load_wbc_seg(wbc_seg), load_fields(txl_pbc, "train"))
    locked = locked_rows(cells, LOCKED_TEST)
    pbc_normal = locked[(locked["source"] == "pbc") & ~locked["class"].isin(BLAST)].reset_index(drop=True)
    unlocked = unlocked_table(cells).rename(columns={"label": "class"})
    val_fields = load_fields(txl_pbc, "val")
    result = {"wbc_seg_mpp": mpp, "pbc_normal_cells": len(pbc_normal), "models": {}}
    for name, weights in (m.split("=", 1) for m in models):
        model, card = load_model(weights)
        figures = {}
        for k in SCALES:
            calls = classify_files(model, card, table["file"].tolist(), input_mpp=mpp * k, device="cpu")
            figures[f"{k:g}x"] = other_lab_figures(table["cell"], calls)
            if card.colour_range:
                outside = outside_colour_range(file_colour_moments(card, table["file"].tolist(), mpp * k), card.colour_range)
                figures[f"{k:g}x"]["outside_training_colours"] = float(outside.mean())
        matched = matched_lab_colours(unlocked, card)  # the card's own check, on unlocked cells
        colours = {
            "deepapl": matched["deepapl"],
            **field_leukocyte_colours(val_fields, card),
            "wbc_seg": lab_colours(table["file"].tolist(), [mpp] * len(table), card),
        }
        transfer = {lab: stain_transfer_change(model, card, pbc_normal, matched["pbc"], target) for lab, target in colours.items()}
        result["models"][name] = {
            "weights": weights,
            "sha256": sha256(resolve_model(weights, "classifier")),
            "figures": figures,
            "pbc_normal_in_other_labs_colours": transfer,
        }
        click.echo(f"{name}: accuracy {figures['1x']['accuracy']:.3f}, blast calls {figures['1x']['blast_calls']:.3f}")
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
