"""Augmentation keeps the field, is reproducible for a seed, and varies otherwise."""

import numpy as np
import torch

from wsi_screen.config import TrainConfig
from wsi_screen.train.augment import EvalTransform, TrainTransform

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def disk_canvas(size=160, radius=30):
    yy, xx = np.mgrid[:size, :size]
    return np.where(((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2)[..., None], 60, 230).astype(np.uint8).repeat(3, 2)


def test_eval_takes_the_centre():
    canvas = disk_canvas()
    x = EvalTransform(128, MEAN, STD)(canvas)
    assert x.shape == (3, 128, 128)
    back = (x * 0.25 + 0.5)[0].numpy() * 255
    assert np.allclose(back, canvas[16:144, 16:144, 0], atol=0.5)


def test_train_is_seeded_and_geometric_only_keeps_disk_area():
    cfg = TrainConfig(hed_jitter=0, brightness=0, contrast=0, saturation=0, hue=0, blur_prob=0, scale_jitter=0)
    t = TrainTransform(128, MEAN, STD, cfg)
    torch.manual_seed(1)
    a = t(disk_canvas())
    torch.manual_seed(1)
    assert torch.equal(a, t(disk_canvas()))
    dark = ((a * 0.25 + 0.5)[0] < 0.56).float().sum()  # a rotated/flipped centred disk keeps its area
    assert abs(float(dark) - np.pi * 30**2) < 0.05 * np.pi * 30**2


def test_scale_and_colour_vary():
    t = TrainTransform(128, MEAN, STD, TrainConfig())
    torch.manual_seed(0)
    outs = torch.stack([t(disk_canvas()) for _ in range(8)])
    areas = ((outs * 0.25 + 0.5).mean(1) < 0.5).float().sum((1, 2))
    assert areas.max() / areas.min() > 1.15  # scale ±25 % → area ratio up to (1.25/0.75)²
    assert outs.mean((2, 3)).std(0).min() > 0.005  # colour jitter moves every channel
