"""Re-measure an exported classifier card's data checks without retraining, from the unlocked and
locked cells of the data it was trained on: its `colour_range` (the training leukocytes' colours,
which `screen` checks each slide against) and its stain-transfer check (the locked PBC normal cells
with PBC's stain rendered as DeepAPL's), for a card exported before either was measured as
`train.export` now measures it. Rewrites WEIGHTS and its JSON card; the weights are unchanged.

    PYTHONPATH=$PWD python pipelines/remeasure_card_checks.py wsi_screen/weights/classifier.pt
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import torch

from wsi_screen.classes import CLASS_CODES
from wsi_screen.evaluate import json_safe
from wsi_screen.registry import load_model, save_weights
from wsi_screen.train.export import CHECKS, locked_rows, stain_transfer_check, stain_transfer_target, training_colour_range
from wsi_screen.train.splits import LOCKED_TEST, unlocked_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@click.command()
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=SHARED / "cells", show_default=True)
@click.option("--locked", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=LOCKED_TEST, show_default=True)
@click.option("--threads", default=2, show_default=True)
def main(weights: Path, data: Path, locked: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    model, card = load_model(weights)
    table = unlocked_table(data, locked)
    colour_range = training_colour_range(table[table["label"].isin(CLASS_CODES)], card)
    transfer = stain_transfer_check(model, card, locked_rows(data, locked), table.rename(columns={"label": "class"}))
    metrics = {**card.metrics, "stain_transfer_to_deepapl": transfer}
    metrics["targets"] = {**metrics.get("targets", {}), "stain_transfer_class_change_pbc": stain_transfer_target(transfer)}
    provenance = {**card.provenance, "generalisation_checks": list(CHECKS)}
    card = dataclasses.replace(card, colour_range=colour_range, metrics=json_safe(metrics), provenance=provenance)
    save_weights(model, card, weights)
    click.echo(
        f"{weights}: colour range of {colour_range['cells']} training leukocytes, limit {colour_range['limit']:.2f}; "
        f"PBC normal cells changing class in DeepAPL's stain {transfer['class_changed']:.1%}"
    )


if __name__ == "__main__":
    main()
