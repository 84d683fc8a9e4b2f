"""Whether a cell's colours lie within those the classifier was trained on. Every training cell
comes from two labs; another lab's stain can move every call (on wbc_seg's rapid-stained normal
leukocytes the shipped r11 is right for 20 % of them, `docs/classifier.md`), so a
slide whose leukocytes mostly fall outside the training colours is reported as unvalidated rather
than read as if it were not.

A cell's colours are the CIELAB means and stds of its model input (the 29 µm field, as the
classifier sees it); the range is their mean and inverse covariance over the training
leukocytes, and a cell lies outside it when its Mahalanobis distance exceeds the distance that
`quantile` of the training cells stay within."""

from __future__ import annotations

import numpy as np
import torch

from .preprocess import batch_lab_moments

QUANTILE = 0.99


def colour_moments(images: np.ndarray, step: int = 2, batch: int = 256) -> np.ndarray:
    """N×H×W×3 uint8 (array-like: a cells.zarr `model_input` array) → N×6: each image's CIELAB
    channel means, then stds, over every `step`-th pixel in each direction (the moments of a
    112 px field barely move; a quarter of the work)."""
    out = []
    for start in range(0, images.shape[0], batch):
        block = np.asarray(images[start : start + batch])[:, ::step, ::step]
        out.append(batch_lab_moments(torch.from_numpy(np.ascontiguousarray(block)).permute(0, 3, 1, 2).float() / 255).numpy())
    return np.concatenate(out) if out else np.zeros((0, 6))


def fit_colour_range(moments: np.ndarray, quantile: float = QUANTILE) -> dict:
    """The card's `colour_range` from the training cells' moments (plain lists: JSON). A ridge of
    0.01 CIELAB units² keeps the covariance invertible when a colour never varied in training."""
    mean = moments.mean(0)
    inverse = np.linalg.inv(np.cov(moments.T) + 0.01 * np.eye(moments.shape[1]))
    limit = float(np.quantile(_distance(moments, mean, inverse), quantile))
    return {"mean": mean.tolist(), "inverse_covariance": inverse.tolist(), "limit": limit, "quantile": quantile, "cells": len(moments)}


def colour_distance(moments: np.ndarray, colour_range: dict) -> np.ndarray:
    """Each cell's Mahalanobis distance from the training cells' colours."""
    return _distance(moments, np.asarray(colour_range["mean"]), np.asarray(colour_range["inverse_covariance"]))


def outside_colour_range(moments: np.ndarray, colour_range: dict) -> np.ndarray:
    """One bool per cell (N×6 `colour_moments`): its colours lie beyond the range's limit."""
    return colour_distance(moments, colour_range) > colour_range["limit"]


def _distance(moments: np.ndarray, mean: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    d = moments - mean
    return np.sqrt(np.einsum("ij,jk,ik->i", d, inverse, d))
