"""The groups `train.slide_colours` moves together: one smear's cells. A DeepAPL patient's cells
come from one smear; PBC's donors carry no ids, one lab and one stain, so PBC is one group, as is
each TXL-PBC source. Groups never mix splits: a held-out patient is moved by its own cells only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..classes import CLASS_CODES
from ..classify import file_colour_moments
from ..colour_range import colour_moments
from ..registry import ModelCard
from ..slide_colours import group_colours, move_images
from .non_leukocytes import LEUKOCYTE_CODE


def patient_colours(table: pd.DataFrame, split: np.ndarray, cache: np.ndarray, input_px: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """Per row its group's colours (N×6: the mean over the group's leukocytes of their CIELAB means
    and stds on the model's field, as `screen` measures a slide's), and the target: the training
    leukocytes' mean."""
    y0 = (cache.shape[1] - input_px) // 2
    moments = colour_moments(cache[:, y0 : y0 + input_px, y0 : y0 + input_px])
    leukocyte = table["label"].isin(CLASS_CODES + (LEUKOCYTE_CODE,)).to_numpy()
    key = pd.Series(np.asarray(split).astype(str)) + ":" + smear_of(table).to_numpy()
    target = group_colours(moments[(np.asarray(split) == "train") & leukocyte])
    return _per_group(moments, key.to_numpy(), leukocyte), tuple(float(v) for v in target)


def smear_colours(card: ModelCard, rows: pd.DataFrame) -> np.ndarray | None:
    """Per row (file, mpp, source, patient: leukocytes), its smear's colours, as `classify_files`
    takes them; None for a card that moves no colours."""
    if not card.slide_colour_target:
        return None
    moments = file_colour_moments(card, rows["file"].tolist(), rows["mpp"].tolist())
    return _per_group(moments, smear_of(rows).to_numpy(), np.ones(len(rows), bool))


def smear_of(table: pd.DataFrame) -> pd.Series:
    """A row's smear: its patient, or its source where patients carry no ids."""
    patient = table["patient"].fillna("").astype(str)
    return patient.where(patient != "", table["source"].astype(str)).reset_index(drop=True)


def _per_group(moments: np.ndarray, key: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Each row's group's colours: the mean of the `counted` rows' moments (all rows where none is)."""
    out = np.zeros((len(key), 6))
    for k in np.unique(key):
        rows = np.flatnonzero(key == k)
        measured = rows[counted[rows]] if counted[rows].any() else rows
        out[rows] = group_colours(moments[measured])
    return out


def moved_canvases(cache: np.ndarray, groups: np.ndarray, target: tuple[float, ...], batch: int = 256) -> np.ndarray:
    """Every cached canvas moved with its group's colours, once per run, in memory: the move is the
    same every epoch, and per image in the data workers it cost 40 % of an epoch."""
    out = np.empty(cache.shape, np.uint8)
    for s in range(0, len(cache), batch):
        out[s : s + batch] = move_images(cache[s : s + batch], groups[s : s + batch], target)
    return out
