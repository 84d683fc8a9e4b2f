"""Canvas → network input, as every model sees it: the centred field, standardised with the card's
mean/std; and the colour changes that augmentation and shift checks share: a stain-space (HED)
adjustment and a Reinhard colour transfer."""

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


def normalise_uint8(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 0–255 C×H×W (or N×C×H×W) → the same as `normalise(x / 255)` in one fused
    multiply-add (a quarter of the three-pass cost: classification pays it per cell)."""
    shape = (-1, 1, 1)
    std = torch.tensor(std).view(shape)
    return torch.addcmul(-torch.tensor(mean).view(shape) / std, x.float(), 1 / (255 * std))


class EvalTransform:
    """Centre out_px² of the canvas (the 29 µm field) → normalised float tensor."""

    def __init__(self, out_px: int, mean, std):
        self.out_px, self.mean, self.std = out_px, mean, std

    def __call__(self, canvas: np.ndarray) -> torch.Tensor:
        h, w = canvas.shape[:2]
        y0, x0 = (h - self.out_px) // 2, (w - self.out_px) // 2
        x = torch.from_numpy(np.array(canvas[y0 : y0 + self.out_px, x0 : x0 + self.out_px]))  # copy: cache may be read-only
        return normalise_uint8(x.permute(2, 0, 1), self.mean, self.std)


def hed_adjust(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Scale and shift each stain's optical density (haematoxylin, eosin, DAB) of a float [0, 1]
    C×H×W image: a stronger or paler stain, as another lab's protocol gives."""
    od = -torch.log(x.clamp(min=1 / 255)).permute(1, 2, 0) @ _HED_FROM_RGB
    od = od * torch.as_tensor(scale, dtype=od.dtype) + torch.as_tensor(shift, dtype=od.dtype)
    return torch.exp(-(od @ _RGB_FROM_HED)).permute(2, 0, 1).clamp(0, 1)


def lab_moments(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel CIELAB mean and std of an RGB image (uint8, or float in [0, 1])."""
    from skimage import color

    lab = color.rgb2lab(rgb).reshape(-1, 3)
    return lab.mean(0), lab.std(0)


def reinhard_transfer(rgb: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray) -> np.ndarray:
    """Reinhard et al. (2001): an RGB image's CIELAB channels moved to a target mean and std, so its
    colours are another lab's (or another image's) while its own contrasts stay; float32 in [0, 1]."""
    from skimage import color

    lab = color.rgb2lab(rgb)
    mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0) + 1e-6
    return np.clip(color.lab2rgb((lab - mean) / std * target_std + target_mean), 0, 1).astype(np.float32)
