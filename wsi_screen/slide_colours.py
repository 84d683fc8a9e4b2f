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
    """Float [0, 1] RGB …×3×H×W → the same images with their group's mean CIELAB moments (`group`:
    6, or N×6 for N images of several groups) moved to `target` (3 means, then 3 stds): L, a and b
    each shifted and scaled alike for every image of a group."""
    g = torch.tensor(np.asarray(group, dtype=np.float64), dtype=x.dtype)  # a copy: `group` may be a read-only view
    t = torch.as_tensor(target, dtype=x.dtype)
    mean, std = g[..., :3, None, None], g[..., 3:, None, None].clamp(min=1.0)
    return lab_to_rgb((rgb_to_lab(x) - mean) * (t[3:, None, None] / std) + t[:3, None, None])


def move_images(images: np.ndarray, group: np.ndarray, target: tuple[float, ...]) -> np.ndarray:
    """`move_colours` on uint8 …×H×W×3 images (one, or N with one group each), back to uint8."""
    x = torch.from_numpy(np.array(images)).movedim(-1, -3).float() / 255
    return (move_colours(x, group, target) * 255).round().to(torch.uint8).movedim(-3, -1).numpy()
