"""A cell's colours against the classifier's training colours: the moments are CIELAB's (checked
against scikit-image), the limit leaves its quantile of the training cells outside, and another
lab's cast (a yellow rapid stain) falls outside where the training labs' own variation does not."""

import numpy as np
import pytest
from skimage.color import rgb2lab

from wsi_screen.colour_range import colour_distance, colour_moments, fit_colour_range, outside_colour_range


def _cells(n: int, seed: int, cast=(1.0, 1.0, 1.0), px: int = 32) -> np.ndarray:
    """n fields: a pale pinkish background with a purple disc of a third of the field across,
    each with its own stain strength."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:px, :px]
    disc = (yy - px / 2) ** 2 + (xx - px / 2) ** 2 < (px / 3) ** 2
    out = np.empty((n, px, px, 3))
    for i in range(n):
        strength = rng.uniform(0.8, 1.2)
        field = np.where(disc[..., None], np.array([120, 70, 160]) * strength, np.array([235, 220, 225]))
        out[i] = field * np.asarray(cast) + rng.normal(0, 6, field.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_moments_are_cielab_means_and_stds():
    images = _cells(3, seed=0, px=112)  # the classifier's input size
    lab = rgb2lab(images).reshape(3, -1, 3)
    expected = np.concatenate([lab.mean(1), lab.std(1)], 1)
    np.testing.assert_allclose(colour_moments(images, step=1), expected, atol=0.05)
    assert np.abs(colour_moments(images) - expected).max() < 0.5  # every second pixel: barely moves


def test_the_limit_leaves_its_quantile_outside():
    moments = np.random.default_rng(1).normal([70, 15, -5, 20, 12, 15], [3, 2, 2, 1, 1, 1], (4000, 6))
    r = fit_colour_range(moments, quantile=0.95)
    assert (colour_distance(moments, r) > r["limit"]).mean() == pytest.approx(0.05, abs=0.002)
    assert r["cells"] == 4000 and len(r["inverse_covariance"]) == 6


def test_another_labs_cast_lies_outside():
    r = fit_colour_range(colour_moments(_cells(400, seed=2)))
    assert outside_colour_range(colour_moments(_cells(200, seed=3)), r).mean() < 0.05  # the same labs, other cells
    assert outside_colour_range(colour_moments(_cells(200, seed=3, cast=(1.0, 1.0, 0.75))), r).mean() > 0.95  # yellow: blue absorbed
