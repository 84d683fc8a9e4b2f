"""Held-out cells under shifts beyond the training augmentation: a field scale the scanner
mis-declares, another lab's stain strength, a hue cast, defocus. Blasts from other labs and
scanners must still score a high P_blast; the model card reports what each shift costs (blast AUC,
within DeepAPL too, the argmax blast call's sensitivity, the false-blast rate on normal PBC cells),
measured without training on any of it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from ..classes import BLAST, CLASS_CODES, blast_called
from ..classify import classify_files, file_colour_moments
from ..metrics import screening_test
from ..preprocess import hed_adjust, network_input
from ..registry import ModelCard
from ..slide_colours import group_colours, move_colours
from .group_colours import smear_colours


@dataclass(frozen=True)
class Shift:
    """One fixed perturbation; training's own ranges are scale ±25 %, HED ±3 %, hue ±0.03, blur σ ≤ 1 px."""

    field: float = 1.0  # >1: a wider field squeezed into the input (cells look smaller)
    hed_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    hue: float = 0.0
    blur_sigma_px: float = 0.0


SHIFTS: dict[str, Shift] = {
    "none": Shift(),
    "cells 30 % larger (field x0.77)": Shift(field=0.77),
    "cells 30 % smaller (field x1.43)": Shift(field=1.43),
    "haematoxylin +30 %": Shift(hed_scale=(1.3, 1.0, 1.0)),
    "haematoxylin -30 %, eosin +30 %": Shift(hed_scale=(0.7, 1.3, 1.0)),
    "hue +0.08": Shift(hue=0.08),
    "hue -0.08": Shift(hue=-0.08),
    "defocus (blur sigma 2 px = 0.45 um)": Shift(blur_sigma_px=2.0),
}


class ShiftedEval:
    """Canvas (≥ 1.5× the input, the field at the card's µm/px) → the centre field × `shift.field`,
    resized to the input, perturbed, normalised."""

    def __init__(self, card: ModelCard, shift: Shift):
        self.card, self.shift = card, shift

    def __call__(self, canvas: np.ndarray) -> torch.Tensor:
        s, px = self.shift, self.card.input_px
        side = round(px * s.field)
        h, w = canvas.shape[:2]
        y0, x0 = (h - side) // 2, (w - side) // 2
        x = torch.from_numpy(np.array(canvas[y0 : y0 + side, x0 : x0 + side])).permute(2, 0, 1).float() / 255
        if side != px:
            x = F.interpolate(x[None], size=(px, px), mode="bilinear", antialias=True, align_corners=False)[0]
        if s.hed_scale != (1.0, 1.0, 1.0):
            x = hed_adjust(x, torch.tensor(s.hed_scale), torch.zeros(3))
        if s.hue:
            x = TF.adjust_hue(x, s.hue)
        if s.blur_sigma_px:
            k = 2 * math.ceil(3 * s.blur_sigma_px) + 1
            x = TF.gaussian_blur(x, [k, k], [s.blur_sigma_px])
        return network_input(x.clamp(0, 1), self.card.mean, self.card.std, self.card.colour_reference)


def shift_robustness(model: torch.nn.Module, card: ModelCard, rows: pd.DataFrame, batch_size: int = 64) -> dict:
    """Per shift, on `rows` (file, class, source, patient, mpp): blast AUC overall and within DeepAPL, the
    argmax blast call's sensitivity and its false-blast rate on PBC cells."""
    truth = rows["class"].isin(BLAST).to_numpy()
    apl = (rows["source"] == "deepapl").to_numpy()
    pbc_normal = (rows["source"] == "pbc").to_numpy() & ~truth
    files, mpp = rows["file"].tolist(), rows["mpp"].tolist()
    smears = smear_colours(card, rows)  # each cell shifted alone, in its own smear
    out = {}
    for name, shift in SHIFTS.items():
        canvas_px = math.ceil(1.5 * card.input_px)
        p = classify_files(
            model, card, files, mpp, batch_size, "cpu", transform=ShiftedEval(card, shift), canvas_px=canvas_px, slide_colours=smears
        )
        called = blast_called(p.probs)
        out[name] = {
            "blast_auc": screening_test(truth, p.p_blast)["auc"],
            "blast_auc_deepapl": screening_test(truth[apl], p.p_blast[apl])["auc"] if apl.any() else math.nan,
            "blast_call_sensitivity": float(called[truth].mean()) if truth.any() else math.nan,
            "false_blast_rate_pbc": float(called[pbc_normal].mean()) if pbc_normal.any() else math.nan,
        }
    return out


class StainTransfer:
    """Canvas → one lab's stain rendered as another's: the Reinhard et al. (2001) transfer of the
    source lab's mean CIELAB moments to the target lab's, the same move for every cell (as a stain
    shifts a whole smear; moving each cell to the target on its own moments would also erase the
    colour differences between classes, changing 5–9 % of PBC cells' class on the way to their own lab's
    colours), then the card's normalisation. A model that moves each slide's colours sees the
    transferred cells as one slide of the target lab: their mean moments are the target's."""

    def __init__(self, card: ModelCard, source: np.ndarray, target: np.ndarray):
        self.card, self.source, self.target = card, source, target

    def __call__(self, canvas: np.ndarray) -> torch.Tensor:
        x = move_colours(torch.from_numpy(np.array(canvas)).permute(2, 0, 1).float() / 255, self.source, self.target)
        if self.card.slide_colour_target:
            x = move_colours(x, self.target, self.card.slide_colour_target)
        return network_input(x, self.card.mean, self.card.std, self.card.colour_reference)


def lab_colours(files: list[str], mpp: list[float], card: ModelCard) -> np.ndarray:
    """A lab's 6 colour moments (`slide_colours.group_colours`) from its cells, on the model's field."""
    return group_colours(file_colour_moments(card, files, mpp))


def matched_lab_colours(rows: pd.DataFrame, card: ModelCard, labs: tuple[str, ...] = ("pbc", "deepapl"), per_class: int = 50) -> dict:
    """Each lab's colours from the same cells in kind: `per_class` cells (fewer where a lab has
    fewer) of every leukocyte class all `labs` have, so the difference is the stain's, not the
    class mix's (a blast-rich lab would otherwise look bluer); NaN where they share none. `rows`:
    file, class, source, mpp."""
    rows = rows[rows["class"].isin(CLASS_CODES)]
    counts = pd.crosstab(rows["class"], rows["source"]).reindex(columns=list(labs), fill_value=0)
    take = counts.min(axis=1).clip(upper=per_class)
    out = {}
    for lab in labs:
        mine = rows[rows["source"] == lab]
        picked = [mine[mine["class"] == c].sample(n, random_state=0) for c, n in take.items() if n]
        cells = pd.concat(picked) if picked else None
        out[lab] = np.full(6, np.nan) if cells is None else lab_colours(cells["file"].tolist(), cells["mpp"].tolist(), card)
    return out


def stain_transfer_probs(
    model: torch.nn.Module, card: ModelCard, rows: pd.DataFrame, source: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The cells' probabilities as scanned in their lab's stain (`source`) and rendered in
    `target`'s. A slide-colour model sees them as one slide: of `source` plainly, of `target`
    transferred (StainTransfer moves them after the stain; the dataset's own move, before it, is
    made the identity)."""
    files, mpp = rows["file"].tolist(), rows["mpp"].tolist()
    slide = np.asarray(card.slide_colour_target) if card.slide_colour_target else None
    plain = classify_files(model, card, files, mpp, device="cpu", slide_colours=None if slide is None else source).probs
    transfer = StainTransfer(card, source, target)
    return plain, classify_files(model, card, files, mpp, device="cpu", transform=transfer, slide_colours=slide).probs


def stain_transfer_change(model: torch.nn.Module, card: ModelCard, rows: pd.DataFrame, source: np.ndarray, target: np.ndarray) -> dict:
    """How often a cell's predicted class changes when its lab's stain (`source`) is rendered as
    `target`'s (the lab check: a normal donor's neutrophil must stay a neutrophil in DeepAPL's
    colours), and how often it then becomes a blast; NaN without cells or colours."""
    if not (len(rows) and np.isfinite(source).all() and np.isfinite(target).all()):
        return {"n_cells": int(len(rows)), "class_changed": math.nan, "became_blast": math.nan}
    plain, moved = stain_transfer_probs(model, card, rows, source, target)
    was_blast = blast_called(plain)
    return {
        "n_cells": int(len(rows)),
        "class_changed": float((moved.argmax(1) != plain.argmax(1)).mean()),
        "became_blast": float(blast_called(moved)[~was_blast].mean()) if (~was_blast).any() else math.nan,
    }
