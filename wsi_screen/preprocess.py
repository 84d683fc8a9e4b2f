"""Canvas → network input, as every model sees it: the centred field, its colours moved to the
card's CIELAB reference when the card has one, standardised with the card's mean/std; and the
colour changes that augmentation and shift checks share: a stain-space (HED) adjustment and a
Reinhard colour transfer."""

from __future__ import annotations

import numpy as np
import torch

# Ruifrok & Johnston stain vectors (skimage.color.hed_from_rgb), as a torch matrix.
_RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_RGB_FROM_HED = _RGB_FROM_HED / _RGB_FROM_HED.norm(dim=1, keepdim=True)
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Float [0, 1] C×H×W (or N×C×H×W) → standardised with the card's mean/std."""
    shape = (-1, 1, 1)
    return (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


def normalise_uint8(x: torch.Tensor, mean, std, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 0–255 C×H×W (or N×C×H×W) → the same as `normalise(x / 255)` in one fused
    multiply-add (a quarter of the three-pass cost: classification pays it per cell), in `dtype`.
    A 16-bit `dtype` holds every uint8 value exactly and the sum is still computed in float32, so
    the result is the float32 one rounded once, as autocast would round it at the first layer:
    the same network input in half the memory traffic (the forward pass's precision,
    `registry.forward_dtype`)."""
    shape = (-1, 1, 1)
    std = torch.tensor(std).view(shape)
    return torch.addcmul(-torch.tensor(mean).view(shape) / std, x.to(dtype), 1 / (255 * std)).to(dtype)


def network_input(x: torch.Tensor, mean, std, reference: tuple[float, ...] = (), dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (or float [0, 1]) C×H×W or N×C×H×W → the network's input, in `dtype`: with a
    `reference` (a card's `colour_reference`), each image's colours standardised to it first
    (`standardise_colours`)."""
    if x.dtype == torch.uint8 and not reference:
        return normalise_uint8(x, mean, std, dtype)
    x = x.float() / 255 if x.dtype == torch.uint8 else x
    return normalise(standardise_colours(x, reference) if reference else x, mean, std).to(dtype)


class EvalTransform:
    """Centre out_px² of the canvas (the 29 µm field) → the network's input (`network_input`)."""

    def __init__(self, out_px: int, mean, std, reference: tuple[float, ...] = ()):
        self.out_px, self.mean, self.std, self.reference = out_px, mean, std, reference

    @classmethod
    def for_card(cls, card) -> "EvalTransform":
        """The input a classifier card describes: its size, normalisation and colour standard."""
        return cls(card.input_px, card.mean, card.std, card.colour_reference)

    def __call__(self, canvas: np.ndarray) -> torch.Tensor:
        h, w = canvas.shape[:2]
        y0, x0 = (h - self.out_px) // 2, (w - self.out_px) // 2
        x = torch.from_numpy(np.array(canvas[y0 : y0 + self.out_px, x0 : x0 + self.out_px]))  # copy: cache may be read-only
        return network_input(x.permute(2, 0, 1), self.mean, self.std, self.reference)


def hed_adjust(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Scale and shift each stain's optical density (haematoxylin, eosin, DAB) of a float [0, 1]
    C×H×W image: a stronger or paler stain, as another lab's protocol gives."""
    od = -torch.log(x.clamp(min=1 / 255)).permute(1, 2, 0) @ _HED_FROM_RGB
    od = od * torch.as_tensor(scale, dtype=od.dtype) + torch.as_tensor(shift, dtype=od.dtype)
    return torch.exp(-(od @ _RGB_FROM_HED)).permute(2, 0, 1).clamp(0, 1)


def lab_moments(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel CIELAB mean and std of an RGB image (uint8, or float in [0, 1])."""
    moments = batch_lab_moments(_as_float_chw(rgb)[None])[0].numpy()
    return moments[:3], moments[3:]


def batch_lab_moments(x: torch.Tensor) -> torch.Tensor:
    """N×3×H×W RGB in [0, 1] → N×6 float64: each image's CIELAB channel means, then stds."""
    lab = rgb_to_lab(x).flatten(2).double()
    return torch.cat([lab.mean(2), lab.std(2, correction=0)], 1)


def reinhard_transfer(rgb: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray) -> np.ndarray:
    """Reinhard et al. (2001): an RGB image's CIELAB channels moved to a target mean and std, so its
    colours are another lab's (or another image's) while its own contrasts stay; float32 in [0, 1]."""
    moved = standardise_colours(_as_float_chw(rgb), tuple(np.concatenate([target_mean, target_std]).tolist()))
    return moved.permute(1, 2, 0).numpy()


def _as_float_chw(rgb: np.ndarray) -> torch.Tensor:
    rgb = np.asarray(rgb)
    x = torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy()).permute(2, 0, 1)  # a decoded image may be read-only
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()


# sRGB (D65) ↔ CIE XYZ, and the D65 white point: skimage.color's constants, as torch tensors.
_XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] sRGB …×3×H×W → CIELAB (L in [0, 100]), as `skimage.color.rgb2lab`, batched."""
    lin = torch.where(x > 0.04045, _power((x + 0.055) / 1.055, 2.4), x / 12.92)
    t = torch.einsum("ij,...jhw->...ihw", _XYZ_FROM_RGB / _WHITE[:, None], lin)
    f = torch.where(t > 0.008856, _power(t.clamp(min=0.008856), 1 / 3), 7.787 * t + 16 / 116)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB …×3×H×W → sRGB in [0, 1], as `skimage.color.lab2rgb` (out-of-gamut values clipped)."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, (fy - b / 200).clamp(min=0)], -3)
    t = torch.where(f > 0.2068966, f**3, (f - 16 / 116) / 7.787) * _WHITE[:, None, None]
    lin = torch.einsum("ij,...jhw->...ihw", _RGB_FROM_XYZ, t).clamp(min=0)
    return torch.where(lin > 0.0031308, 1.055 * _power(lin.clamp(min=0.0031308), 1 / 2.4) - 0.055, 12.92 * lin).clamp(0, 1)


def _power(x: torch.Tensor, exponent: float) -> torch.Tensor:
    """x ** exponent for x > 0 as exp(exponent · log x): on CPUs a third of the time of torch's pow
    with a float exponent (classification pays it per cell)."""
    return torch.exp(exponent * torch.log(x))


def standardise_colours(x: torch.Tensor, reference: tuple[float, ...]) -> torch.Tensor:
    """Float [0, 1] …×3×H×W → each image's CIELAB channels moved to `reference` (3 means, then 3
    stds): a Reinhard transfer to one fixed colour standard, so that a lab's or scanner's colour
    cast never reaches the network (every blast here comes from one lab)."""
    lab = rgb_to_lab(x)
    # spread from the mean square (a twentieth of torch.std's time on CPUs), floored at 1 CIELAB unit
    # so that a near-flat field (bare glass) is not stretched into noise
    mean = lab.mean((-2, -1), keepdim=True)
    std = ((lab * lab).mean((-2, -1), keepdim=True) - mean * mean).clamp(min=1.0).sqrt()
    target = torch.as_tensor(reference, dtype=lab.dtype).view(2, 3, 1, 1)
    return lab_to_rgb((lab - mean) / std * target[1] + target[0])
