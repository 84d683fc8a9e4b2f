"""One colour move per slide. Each lab's stain, and each smear's, shifts every cell's colours
together; a classifier trained on two labs can take that shift for a class (every blast here comes
from one lab). A model trained with `train.slide_colours` saw each patient's cells (PBC's, one
lab's) moved together by one Reinhard et al. (2001) transfer, from the mean of their cells' CIELAB
means and stds to the training cells' mean (`ClassifierCard.slide_colour_target`); `screen` moves a
slide's cells by the same rule, so the differences between its cells stay and the slide's cast
goes. A single cell is never moved on its own colours: that would erase what tells its class."""

from __future__ import annotations

import numpy as np
import torch

from .preprocess import lab_to_rgb, rgb_to_lab


def group_colours(moments: np.ndarray) -> np.ndarray:
    """N×6 cells' CIELAB means then stds (`colour_range.colour_moments`) → the group's 6: their mean."""
    return np.asarray(moments, dtype=np.float64).mean(0)


def move_colours(x: torch.Tensor, group: np.ndarray, target: tuple[float, ...]) -> torch.Tensor:
    """Float [0, 1] RGB …×3×H×W of one group → the same images with the group's mean CIELAB moments
    moved to `target` (3 means, then 3 stds): L, a and b each shifted and scaled alike for every image."""
    g = torch.as_tensor(np.asarray(group), dtype=x.dtype).view(2, 3, 1, 1)
    t = torch.as_tensor(target, dtype=x.dtype).view(2, 3, 1, 1)
    return lab_to_rgb((rgb_to_lab(x) - g[0]) * (t[1] / g[1].clamp(min=1.0)) + t[0])
