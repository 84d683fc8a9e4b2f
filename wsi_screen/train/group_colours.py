"""The groups `train.slide_colours` moves together: one smear's cells. A DeepAPL patient's cells
come from one smear; PBC's donors carry no ids, one lab and one stain, so PBC is one group, as is
each TXL-PBC source. Groups never mix splits: a held-out patient is moved by its own cells only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..classes import CLASS_CODES
from ..colour_range import colour_moments
from ..slide_colours import group_colours
from .non_leukocytes import LEUKOCYTE_CODE


def patient_colours(table: pd.DataFrame, split: np.ndarray, cache: np.ndarray, input_px: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """Per row its group's colours (N×6: the mean over the group's leukocytes of their CIELAB means
    and stds on the model's field, as `screen` measures a slide's), and the target: the training
    leukocytes' mean."""
    y0 = (cache.shape[1] - input_px) // 2
    moments = colour_moments(cache[:, y0 : y0 + input_px, y0 : y0 + input_px])
    leukocyte = table["label"].isin(CLASS_CODES + (LEUKOCYTE_CODE,)).to_numpy()
    patient = table["patient"].fillna("").astype(str)
    key = pd.Series(np.asarray(split).astype(str)) + ":" + patient.where(patient != "", table["source"].astype(str))
    out = np.zeros((len(table), 6))
    for _, rows in key.groupby(key).groups.items():
        rows = np.asarray(rows)
        measured = rows[leukocyte[rows]] if leukocyte[rows].any() else rows
        out[rows] = group_colours(moments[measured])
    target = group_colours(moments[(np.asarray(split) == "train") & leukocyte])
    return out, tuple(float(v) for v in target)
