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

from ..classes import BLAST, blast_called
from ..classify import classify_files
from ..metrics import screening_test
from ..preprocess import hed_adjust, lab_moments, network_input, reinhard_transfer
from ..registry import ModelCard
from ..slide_colours import move_colours
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
    """Canvas → Reinhard et al. (2001) colour transfer in CIELAB to a target lab's per-channel
    mean/std, then the card's normalisation: one lab's cells as another lab's stain renders them.
    A model that moves each slide's colours sees the transferred cells as one slide of that lab:
    their mean moments are the target's."""

    def __init__(self, card: ModelCard, target: tuple[np.ndarray, np.ndarray]):
        self.card, self.target = card, target

    def __call__(self, canvas: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(reinhard_transfer(canvas, *self.target)).permute(2, 0, 1)
        if self.card.slide_colour_target:
            x = move_colours(x, np.concatenate(self.target), self.card.slide_colour_target)
        return network_input(x, self.card.mean, self.card.std, self.card.colour_reference)


def lab_statistics(files: list[str], mpp: list[float], card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """Mean over images of each image's CIELAB per-channel mean and std, on the model's field."""
    from ..cell_images import load_canvas

    moments = [lab_moments(load_canvas(f, m, card.mpp, card.input_px, card.field_um)) for f, m in zip(files, mpp)]
    return np.mean([m for m, _ in moments], axis=0), np.mean([s for _, s in moments], axis=0)


def stain_transfer_change(model: torch.nn.Module, card: ModelCard, rows: pd.DataFrame, target: tuple[np.ndarray, np.ndarray]) -> dict:
    """How often a cell's predicted class changes when its stain is transferred to `target` (the
    lab check: a normal donor's neutrophil must stay a neutrophil in DeepAPL's colours), and how
    often it then becomes a blast."""
    files, mpp = rows["file"].tolist(), rows["mpp"].tolist()
    plain = classify_files(model, card, files, mpp, device="cpu").probs
    moved = classify_files(model, card, files, mpp, device="cpu", transform=StainTransfer(card, target)).probs
    was_blast = blast_called(plain)
    return {
        "n_cells": int(len(rows)),
        "class_changed": float((moved.argmax(1) != plain.argmax(1)).mean()) if len(rows) else math.nan,
        "became_blast": float(blast_called(moved)[~was_blast].mean()) if (~was_blast).any() else math.nan,
    }
