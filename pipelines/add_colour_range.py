"""Give an exported classifier's card its `colour_range` (the training cells' colours, which
`screen` checks each slide's leukocytes against) without retraining: from the unlocked leukocytes
of the data it was trained on, for a card exported before the range existed (new exports measure
it on their own training split). Rewrites WEIGHTS and its JSON card; the weights are unchanged.

    PYTHONPATH=$PWD python pipelines/add_colour_range.py wsi_screen/weights/classifier.pt
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from wsi_screen.classes import CLASS_CODES
from wsi_screen.registry import load_model, save_weights
from wsi_screen.train.export import training_colour_range
from wsi_screen.train.splits import LOCKED_TEST, unlocked_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@click.command()
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=SHARED / "cells", show_default=True)
@click.option("--locked", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=LOCKED_TEST, show_default=True)
def main(weights: Path, data: Path, locked: Path) -> None:
    model, card = load_model(weights)
    table = unlocked_table(data, locked)
    colour_range = training_colour_range(table[table["label"].isin(CLASS_CODES)], card)
    save_weights(model, dataclasses.replace(card, colour_range=colour_range), weights)
    click.echo(f"{weights}: colour range of {colour_range['cells']} training leukocytes, limit {colour_range['limit']:.2f}")


if __name__ == "__main__":
    main()
