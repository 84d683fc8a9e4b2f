"""Add `metrics.patient_effect` to a classifier's card (in its weights file and the JSON beside
it) exported before cards carried it (the shipped r11, whose out-of-fold predictions are gone):
the blast test's fit from the card's own per-patient out-of-fold counts (`test.per_patient`),
each patient's expected false calls from its unlocked cells' classes in the manifest and the
card's out-of-fold confusion. The atypical test keeps none: such cards hold no per-patient
atypical counts. New exports fit both (`evaluate.patient_effects`).

    python pipelines/card_patient_effect.py wsi_screen/weights/classifier.pt ../shared/data/cells
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd
import torch

from wsi_screen.classes import BLAST, CLASS_CODES
from wsi_screen.evaluate import fit_patient_effect
from wsi_screen.train.splits import LOCKED_TEST, read_locked


@click.command()
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("cells", type=click.Path(exists=True, file_okay=False, path_type=Path))
def main(weights: Path, cells: Path) -> None:
    blob = torch.load(weights, map_location="cpu", weights_only=True)
    metrics = blob["card"]["metrics"]
    if "patient_effect" in metrics:
        sys.exit(f"{weights}: already carries metrics.patient_effect")
    confusion = np.asarray(metrics["test"]["confusion"], float)
    members = [CLASS_CODES.index(c) for c in BLAST]
    rate = dict(zip(CLASS_CODES, confusion[:, members].sum(1) / np.maximum(confusion.sum(1), 1)))
    manifest = pd.read_csv(cells / "manifest.csv", dtype={"patient": str}, keep_default_na=False)
    manifest = manifest[~manifest["file"].isin(read_locked(LOCKED_TEST)["file"]) & manifest["class"].isin(CLASS_CODES)]
    negatives = manifest[~manifest["class"].isin(BLAST) & (manifest["patient"] != "")]
    per_patient = metrics["test"]["per_patient"]
    by_patient = negatives["class"].map(rate).groupby(negatives["patient"])
    n_cells, expected_of = by_patient.size(), by_patient.sum()
    for patient, counts in per_patient.items():
        if (n := n_cells.get(patient, 0)) != counts["non_blasts"]:
            sys.exit(f"{weights}: {patient} has {counts['non_blasts']} out-of-fold non-blasts, the manifest {n}")
    observed = np.array([per_patient[p]["false_blast_calls"] for p in per_patient])
    expected = expected_of[list(per_patient)].to_numpy()
    metrics["patient_effect"] = {"blast": fit_patient_effect(observed, expected), "atypical": {}}
    torch.save(blob, weights)
    beside = weights.with_suffix(".json")
    doc = json.loads(beside.read_text())
    doc["metrics"]["patient_effect"] = metrics["patient_effect"]
    beside.write_text(json.dumps(doc, indent=2) + "\n")
    click.echo(f"{weights}: blast patient effect {metrics['patient_effect']['blast']}")


if __name__ == "__main__":
    main()
