"""Augmentation keeps the field, is reproducible for a seed, and varies otherwise."""

import numpy as np
import pytest
import torch

from wsi_screen.config import TrainConfig
from wsi_screen.preprocess import EvalTransform, normalise, normalise_uint8
from wsi_screen.train.augment import TrainTransform

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


def test_fixed_shifts_do_what_their_names_say():
    from wsi_screen.registry import ModelCard
    from wsi_screen.train.shifts import SHIFTS, Shift, ShiftedEval

    card = ModelCard("resnext_compact", 64, mean=MEAN, std=STD)
    canvas = disk_canvas(size=96, radius=16)
    plain = ShiftedEval(card, SHIFTS["none"])(canvas)
    assert torch.allclose(plain, EvalTransform(64, MEAN, STD)(canvas), atol=1e-6)

    def dark_px(shift):
        return int((ShiftedEval(card, shift)(canvas)[0] < 0).sum())  # below mid-grey: the disk

    assert abs(dark_px(Shift(field=0.77)) / dark_px(Shift()) - 1 / 0.77**2) < 0.1  # cells look larger
    assert abs(dark_px(Shift(field=1.43)) / dark_px(Shift()) - 1 / 1.43**2) < 0.1
    stronger = ShiftedEval(card, Shift(hed_scale=(1.3, 1.0, 1.0)))(canvas)
    assert stronger[:, 32, 32].mean() < plain[:, 32, 32].mean() - 0.05  # more stain: a darker nucleus
    blurred = ShiftedEval(card, Shift(blur_sigma_px=2.0))(canvas)
    assert blurred.diff(dim=-1).abs().max() < 0.6 * plain.diff(dim=-1).abs().max()


def test_uint8_normalisation_equals_the_float_one():
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.6, 0.5, 0.4), (0.2, 0.25, 0.3)
    assert torch.allclose(normalise_uint8(x, mean, std), normalise(x.float() / 255, mean, std), atol=1e-5)
    assert x.dtype == torch.uint8 and int(x.max()) <= 255  # the input is left alone


def test_uint8_normalisation_in_16_bits_is_the_float_one_rounded_once():
    """What classification hands a bfloat16 (CPU) or float16 (CUDA) forward pass: the float32
    input as autocast would round it, not a sum computed in 16 bits."""
    x = torch.arange(256, dtype=torch.uint8).repeat(3, 1).view(1, 3, 16, 16)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    full = normalise_uint8(x, mean, std)
    for dtype in (torch.bfloat16, torch.float16):
        half = normalise_uint8(x, mean, std, dtype)
        assert half.dtype == dtype and torch.equal(half, full.to(dtype))
        in_16_bits = (x.to(dtype) / 255 - torch.tensor(mean, dtype=dtype).view(-1, 1, 1)) / torch.tensor(std, dtype=dtype).view(-1, 1, 1)
        assert not torch.equal(half, in_16_bits)


def coloured_disk(disk_rgb, background_rgb, size=160, radius=30):
    yy, xx = np.mgrid[:size, :size]
    inside = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2)[..., None]
    return np.where(inside, np.array(disk_rgb, np.uint8), np.array(background_rgb, np.uint8)).astype(np.uint8)


def test_reinhard_transfer_reaches_the_target_moments_and_keeps_the_picture():
    from wsi_screen.preprocess import lab_moments, reinhard_transfer

    pale, dark = coloured_disk((150, 110, 190), (235, 215, 205)), coloured_disk((60, 40, 120), (200, 150, 170))
    target = lab_moments(dark)
    moved = reinhard_transfer(pale, *target)
    assert moved.dtype == np.float32 and 0 <= moved.min() and moved.max() <= 1
    mean, std = lab_moments(moved)
    assert np.allclose(mean, target[0], atol=1.5) and np.allclose(std, target[1], rtol=0.05, atol=0.5)
    disk = coloured_disk((1, 1, 1), (0, 0, 0))[..., 0].astype(bool)
    assert moved[disk].mean() < moved[~disk].mean() - 0.2  # the cell stays darker than its background


def test_torch_cielab_is_skimages_and_the_colour_standard_reaches_its_reference():
    from skimage import color

    from wsi_screen.preprocess import lab_moments, lab_to_rgb, reinhard_transfer, rgb_to_lab, standardise_colours

    pale = coloured_disk((150, 110, 190), (235, 215, 205))
    x = torch.from_numpy(pale).permute(2, 0, 1).float() / 255
    lab = rgb_to_lab(x)
    assert np.allclose(lab.permute(1, 2, 0).numpy(), color.rgb2lab(pale), atol=1e-3)
    assert torch.allclose(lab_to_rgb(lab), x, atol=1e-5)
    reference = (62.0, 18.0, -20.0, 14.0, 9.0, 7.0)  # CIELAB means, then stds
    moved = standardise_colours(torch.stack([x, x.flip(0)]), reference)  # batched: each image on its own
    for image in moved:
        mean, std = lab_moments(image.permute(1, 2, 0).numpy())
        assert np.allclose(mean, reference[:3], atol=0.5) and np.allclose(std, reference[3:], atol=0.5)
    lab_sk = color.rgb2lab(pale)
    mean, std = lab_sk.reshape(-1, 3).mean(0), lab_sk.reshape(-1, 3).std(0)
    skimage_way = np.clip(color.lab2rgb((lab_sk - mean) / std * reference[3:] + reference[:3]), 0, 1)
    assert np.abs(moved[0].permute(1, 2, 0).numpy() - skimage_way).max() < 1e-3
    assert np.abs(reinhard_transfer(pale, np.array(reference[:3]), np.array(reference[3:])) - skimage_way).max() < 1e-3
    glass = torch.full((3, 64, 64), 0.97) + 0.002 * torch.rand(3, 64, 64)  # bare glass: its sensor noise stays noise
    assert lab_moments(standardise_colours(glass, reference).permute(1, 2, 0).numpy())[1].max() < 1


def test_stain_mix_gives_a_field_the_colours_of_the_bank():
    from wsi_screen.preprocess import lab_moments
    from wsi_screen.train.augment import colour_bank

    still = dict(hed_jitter=0, brightness=0, contrast=0, saturation=0, hue=0, blur_prob=0, scale_jitter=0, rotate=False)
    pale, dark = coloured_disk((150, 110, 190), (235, 215, 205)), coloured_disk((60, 40, 120), (200, 150, 170))
    bank = colour_bank(np.stack([dark, dark]), 128)
    assert bank.shape == (2, 2, 3) and np.allclose(bank[0, 0], lab_moments(dark[16:144, 16:144])[0])

    def lab_mean(cfg):
        x = TrainTransform(128, MEAN, STD, cfg, bank)(pale) * 0.25 + 0.5
        return lab_moments(x.permute(1, 2, 0).clamp(0, 1).numpy())[0]

    torch.manual_seed(0)
    assert np.allclose(lab_mean(TrainConfig(**still, stain_mix=1.0)), bank[0, 0], atol=2)
    assert np.allclose(lab_mean(TrainConfig(**still)), lab_moments(pale[16:144, 16:144])[0], atol=1)  # off: its own colours
    with pytest.raises(ValueError, match="colour bank"):
        TrainTransform(128, MEAN, STD, TrainConfig(stain_mix=0.5))


def test_stain_density_scales_every_channels_optical_density_by_one_factor():
    still = dict(hed_jitter=0, brightness=0, contrast=0, saturation=0, hue=0, blur_prob=0, scale_jitter=0, rotate=False)
    cell = coloured_disk((150, 110, 190), (235, 215, 205))
    centre = torch.from_numpy(cell[80, 80].astype(np.float64) / 255)  # inside the disk, away from its edge
    plain = -torch.log(centre)
    factors = []
    torch.manual_seed(0)
    for _ in range(200):
        x = (TrainTransform(128, MEAN, STD, TrainConfig(**still, stain_density=1.5))(cell) * 0.25 + 0.5)[:, 64, 64].double()
        ratio = -torch.log(x) / plain
        assert ratio.max() - ratio.min() < 0.02  # one factor for R, G and B: the stain's hue is kept
        factors.append(float(ratio.mean()))
    assert 1 / 2.5 - 0.01 < min(factors) < 0.45 and 2.2 < max(factors) < 2.5 + 0.01  # log-uniform over [1/2.5, 2.5]
    assert abs(np.median(np.log(factors))) < 0.15
    torch.manual_seed(0)
    off = (TrainTransform(128, MEAN, STD, TrainConfig(**still))(cell) * 0.25 + 0.5)[:, 64, 64].double()
    assert torch.allclose(off, centre, atol=1e-3)


def test_blur_reaches_its_largest_sigma():
    """A sharp edge blurred with sigma drawn up to blur_max_sigma: the widest blurs spread it over
    about as many pixels as that sigma, the default's never beyond about 1 px."""
    still = dict(hed_jitter=0, brightness=0, contrast=0, saturation=0, hue=0, scale_jitter=0, rotate=False, jpeg_prob=0)
    cell = coloured_disk((60, 40, 120), (235, 215, 205))

    def widest(max_sigma: float) -> float:
        t = TrainTransform(128, MEAN, STD, TrainConfig(**still, blur_prob=1.0, blur_max_sigma=max_sigma))
        torch.manual_seed(0)
        rows = [(t(cell) * 0.25 + 0.5)[0, 64].numpy() for _ in range(40)]  # the red channel across the disk's middle
        # pixels between 10 % and 90 % of the edge's step, on the row that spreads it most
        return max(((r > r.min() + 0.1 * np.ptp(r)) & (r < r.max() - 0.1 * np.ptp(r))).sum() / 2 for r in rows)

    sharp, default, wide = widest(0.1), widest(1.0), widest(3.0)
    assert sharp <= 1.5 < default <= 3 < wide  # a Gaussian's 10-90 % rise is about 2.6 sigma
