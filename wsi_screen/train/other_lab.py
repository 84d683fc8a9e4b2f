"""A classifier on another lab's leukocytes: wbc_seg Dataset1 (Zheng et al. 2018, GPL-3.0:
evaluation only, never training), 300 crops of five normal classes in another lab's rapid stain
and camera. Every training cell comes from two labs (PBC, DeepAPL), and the card's shift checks
perturb those labs' own cells; this is the one labelled set here from neither, so it measures what
a lab with a stain of its own gets. Its label "neutrophil" does not tell bands from segmented
cells, so either counts as right.

The leukocytes of TXL-PBC's other three labs carry no class here; their colours are borrowed
instead: the locked PBC normal cells, PBC's stain rendered as each lab's (one move of the labs'
mean leukocyte colours), should keep their class (the card's DeepAPL check, `train.shifts.stain_transfer_change`, for
every lab whose fields the detector sees)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..cell_images import read_image, to_canvas
from ..classes import ATYPICAL, BLAST
from ..preprocess import lab_moments
from ..records import Probabilities
from ..registry import ModelCard
from ..slide_colours import group_colours
from .fields import Field, centred_crop, source_mpp, source_of

WBC_SEG_CLASSES = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}
RIGHT_CODES = {"neutrophil": ("NGS", "NGB"), "lymphocyte": ("LYT",), "monocyte": ("MON",), "eosinophil": ("EOS",), "basophil": ("BAS",)}


def wbc_seg_table(root: Path) -> pd.DataFrame:
    """id, file (images/NNN.png) and cell (the class name) of every labelled crop."""
    labels = pd.read_csv(root / "labels.csv")
    ids = labels.iloc[:, 0].astype(int)
    files = [str(root / "images" / f"{i:03d}.png") for i in ids]
    return pd.DataFrame({"id": ids, "file": files, "cell": labels.iloc[:, 1].astype(int).map(WBC_SEG_CLASSES)})


def other_lab_figures(cells: pd.Series, result: Probabilities) -> dict:
    """Accuracy and per-class sensitivity of the argmax class, the share called blasts (argmax MYO or
    MOB) and atypical (argmax in the atypical test), the share the product rejects, and what
    each class was called: every cell here is a normal leukocyte."""
    cells = cells.to_numpy()
    predicted = result.predicted
    right = np.array([p in RIGHT_CODES[c] for c, p in zip(cells, predicted)])
    per_class = {}
    for c in RIGHT_CODES:
        rows = cells == c
        if rows.any():
            called = {k: int(v) for k, v in pd.Series(predicted[rows]).value_counts().items()}
            per_class[c] = {"n": int(rows.sum()), "sensitivity": float(right[rows].mean()), "called": called}
    return {
        "n": int(len(cells)),
        "accuracy": float(right.mean()),
        "mean_sensitivity": float(np.mean([v["sensitivity"] for v in per_class.values()])),
        "blast_calls": float(np.isin(predicted, BLAST).mean()),
        "atypical_calls": float(np.isin(predicted, ATYPICAL).mean()),
        "rejected": float(result.rejected.mean()),
        "per_class": per_class,
    }


def field_leukocyte_colours(fields: list[Field], card: ModelCard) -> dict[str, np.ndarray]:
    """Per TXL-PBC source: its colours (`slide_colours.group_colours`) from its labelled leukocytes,
    each on the model's field around the box centre at the source's one scale (the field
    reflect-padded where the box lies near its edge)."""
    scale = source_mpp(fields)
    moments: dict[str, list] = {}
    for f in fields:
        mpp = scale[source_of(f)]
        half = int(round(card.field_um / 2 / mpp))
        rgb = read_image(f.image)
        for x0, y0, x1, y1 in f.wbc_boxes:
            crop = centred_crop(rgb, (x0 + x1) / 2, (y0 + y1) / 2, half)
            canvas = to_canvas(crop, mpp, card.mpp, card.input_px, card.field_um)
            moments.setdefault(source_of(f), []).append(np.concatenate(lab_moments(canvas)))
    return {s: group_colours(np.stack(v)) for s, v in sorted(moments.items())}
