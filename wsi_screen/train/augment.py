"""Canvas → network input. Training draws a rotation (0–359°), flips and a field scale from one
affine resampling of the canvas (reflection outside it, so no black corners), then, for a share of
the images, another training image's colours (a Reinhard transfer, either source: blasts exist only
in DeepAPL, and a colour must not stand for a class), then stain (HED, and the whole stain's
density: AML patients' red cells absorb up to 2.7× as much as PBC's), colour
(brightness/contrast/saturation/hue), blur and JPEG re-encoding jitter. All randomness comes from torch's RNG,
which the DataLoader seeds per worker, so runs are reproducible for a fixed seed."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from ..config import TrainConfig
from ..preprocess import EvalTransform, hed_adjust, lab_moments, network_input, reinhard_transfer


class TrainTransform(EvalTransform):
    def __init__(self, out_px: int, mean, std, cfg: TrainConfig, bank: np.ndarray | None = None, reference: tuple[float, ...] = ()):
        """`bank`: N×2×3 CIELAB means and stds of training leukocyte fields (`colour_bank`), which
        `cfg.stain_mix` > 0 draws from; `reference`: the card's colour standard, applied last, as
        at test time."""
        if cfg.stain_mix and (bank is None or not len(bank)):
            raise ValueError("train.stain_mix needs a colour bank of training fields")
        super().__init__(out_px, mean, std, reference)
        self.cfg, self.bank = cfg, bank

    @classmethod
    def for_card(cls, card, cfg: TrainConfig, bank: np.ndarray | None = None) -> "TrainTransform":
        """The training twin of `EvalTransform.for_card`: the card's input, then `cfg`'s augmentation."""
        return cls(card.input_px, card.mean, card.std, cfg, bank, card.colour_reference)

    def __call__(self, canvas: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(canvas)).permute(2, 0, 1).float() / 255
        x = self._geometry(x)
        if self.cfg.stain_mix and torch.rand(()) < self.cfg.stain_mix:
            mean, std = self.bank[int(torch.randint(len(self.bank), ()))]
            x = torch.from_numpy(reinhard_transfer(x.permute(1, 2, 0).numpy(), mean, std)).permute(2, 0, 1)
        x = self._stain(x)
        c = self.cfg
        if c.stain_density:  # Beer–Lambert: a denser stain multiplies every channel's optical density
            x = x.clamp(min=1 / 255) ** ((1 + c.stain_density) ** _u())
        x = TF.adjust_brightness(x, 1 + c.brightness * _u())
        x = TF.adjust_contrast(x, 1 + c.contrast * _u())
        x = TF.adjust_saturation(x, 1 + c.saturation * _u())
        if c.hue:
            x = TF.adjust_hue(x, c.hue * _u())
        if torch.rand(()) < c.blur_prob:  # the kernel spans ±2 of the largest sigma (5 px for the default 1 px)
            side = 2 * math.ceil(2 * c.blur_max_sigma) + 1
            x = TF.gaussian_blur(x, [side, side], [0.1 + (c.blur_max_sigma - 0.1) * float(torch.rand(()))])
        x = x.clamp(0, 1)
        if torch.rand(()) < c.jpeg_prob:
            x = TF.jpeg((x * 255).round().to(torch.uint8), int(torch.randint(40, 96, ()))).float() / 255
        return network_input(x, self.mean, self.std, self.reference)

    def _geometry(self, x: torch.Tensor) -> torch.Tensor:
        c, canvas = self.cfg, x.shape[-1]
        angle = 2 * math.pi * float(torch.rand(())) if c.rotate else 0.0
        scale = 1 + c.scale_jitter * _u()  # >1: a wider field is squeezed into out_px (cells look smaller)
        a = scale * self.out_px / canvas
        fx, fy = (-1 if torch.rand(()) < 0.5 else 1), (-1 if torch.rand(()) < 0.5 else 1)
        cos, sin = math.cos(angle) * a, math.sin(angle) * a
        theta = torch.tensor([[[cos * fx, -sin * fy, 0.0], [sin * fx, cos * fy, 0.0]]])
        grid = F.affine_grid(theta, [1, 3, self.out_px, self.out_px], align_corners=False)
        return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="reflection", align_corners=False)[0]

    def _stain(self, x: torch.Tensor) -> torch.Tensor:
        """Tellez et al. 2018 HED jitter."""
        s = self.cfg.hed_jitter
        if not s:
            return x
        return hed_adjust(x, 1 + s * torch.empty(3).uniform_(-1, 1), s * torch.empty(3).uniform_(-1, 1))


def colour_bank(canvases: Iterable[np.ndarray], out_px: int) -> np.ndarray:
    """N×2×3: each canvas's centre field's CIELAB per-channel mean and std (what stain mixing draws),
    one canvas at a time (a run's cache is memory-mapped)."""
    return np.stack([np.stack(lab_moments(_centre(c, out_px))) for c in canvases])


def _centre(canvas: np.ndarray, px: int) -> np.ndarray:
    y0, x0 = (canvas.shape[0] - px) // 2, (canvas.shape[1] - px) // 2
    return canvas[y0 : y0 + px, x0 : x0 + px]


def _u() -> float:
    """Uniform in [-1, 1)."""
    return 2 * float(torch.rand(())) - 1
