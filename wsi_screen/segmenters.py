"""Per-pixel leukocyte maps for one RGB image at the detection µm/px: channel 0 is the cell
(nucleus + cytoplasm), channel 1 its core, one seed per cell for watershed. Two interchangeable
segmenters: the shipped U-Net and a classical stain-threshold baseline."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .qc import OD_OF_LEVEL, plasma_colour

CLASSICAL_MPP = 0.5  # the baseline's resolution: its stain threshold was set on fields at 0.5 µm/px


class UnetSegmenter:
    """A registered detector (default: the shipped U-Net) with its card: preprocessing and the
    µm/px it reads the slide at come from the card."""

    def __init__(self, name_or_path: str, device: str = "auto"):
        from .checksum import sha256
        from .model_files import resolve_model
        from .registry import for_inference, load_model, precision, resolve_device

        self.path = resolve_model(name_or_path, "detector")
        model, self.card = load_model(self.path, task="detector")
        self.mpp = self.card.mpp
        self.stride = model.encoder.output_stride  # inputs are padded to a multiple of it
        self.device = resolve_device(device)
        self.model = for_inference(model, self.device)
        self.precision = precision(self.device)  # the arithmetic its forward runs in (report.json)
        self.checksum = sha256(self.path)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.batch(rgb[None])[0]

    def batch(self, rgbs: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 → (N, 2, H, W) float32 probabilities; pads to the encoder stride."""
        import torch

        from .registry import mixed_precision

        n, h, w, _ = rgbs.shape
        ph, pw = -h % self.stride, -w % self.stride
        x = np.pad(rgbs, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else rgbs
        x = x.astype(np.float32)
        x /= 255.0  # in place: a tile's float copies cost more in fresh pages than in arithmetic
        x -= np.float32(self.card.mean)
        x /= np.float32(self.card.std)
        # the classifier's precision: bfloat16 where the CPU computes it natively, 2.8x the float32
        # forward on a 1894 px tile (AMX) with detections as in float32 (docs/detector.md)
        with torch.inference_mode(), mixed_precision(self.device):
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 3, 1, 2)  # NHWC memory = channels_last
            out = torch.sigmoid(self.model(t)).float().cpu().numpy()
        return out[:, :, :h, :w]


NUCLEUS_PIXEL = 0.5  # nucleus_stain above this counts as a nucleus pixel (the nucleated check)
# ... and this in a piece, which must show its chromatin: one cut by the image frame, or one split
# from a cell region it shares with another instance (a red cell touching a leukocyte). Some labs'
# red cells stain purplish up to ~0.6 (Raabin-WBC, DeepAPL under white light), where a nucleus
# saturates at 1. Set at the least-stained frame-cut leukocyte of the TXL-PBC train split
# (docs/detector.md)
PIECE_NUCLEUS_PIXEL = 0.75
# A nucleus pixel's blue optical density is below this share of its green one. Per leukocyte the
# median ratio over its stained pixels reaches 0.54 on the TXL-PBC train split (Raabin-WBC's 99th
# percentile; PBC, BCCD, BCD ≤ 0.41); red cells' medians lie at 0.58–0.83 by source, PBC's 0.63.
# At 0.6 no figure of the train or val split moves (docs/detector.md).
NUCLEUS_BLUE_GREEN = 0.6


def white_gain(rgb: np.ndarray) -> np.ndarray:
    """Per-channel gain (≥ 1: a channel is only brightened) that divides the image `rgb` by its
    illumination (von Kries), taken as the plasma's colour (`qc.plasma_colour`, the QC's own
    estimate, on a 1-in-16 pixel sample): a yellow or pink cast of another lab's lamp or camera then
    no longer hides a nucleus from a fixed stain level."""
    return np.maximum(255.0 / np.maximum(plasma_colour(rgb[::4, ::4]), 1.0), 1.0)


def white_balanced(rgb: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """`rgb` (any shape ending in 3) under white light: times `gain` (`white_gain` of the image or
    of the slide part it lies in); `rgb` itself when there is nothing to correct."""
    if np.all(gain <= 1.0):
        return rgb
    return np.clip(rgb * gain, 0, 255).astype(np.uint8)


def nucleus_hue(rgb: np.ndarray) -> np.ndarray:
    """Pixels of `rgb` (read under white light) of a nucleus's hue: blue optical density under
    NUCLEUS_BLUE_GREEN of green. Chromatin absorbs green but passes blue; haemoglobin absorbs blue
    too, and a pile of red cells scales every channel's optical density alike (Beer-Lambert), so
    however dark the pile its blue/green density ratio stays a red cell's, while the stain measure
    alone rises on it as its green saturates."""
    return OD_OF_LEVEL[rgb[..., 2]] < NUCLEUS_BLUE_GREEN * OD_OF_LEVEL[rgb[..., 1]]


def nucleus_stain(rgb: np.ndarray) -> np.ndarray:
    """0–1 nucleus-stain measure of a Romanowsky-stained smear: nuclei absorb green strongly but
    pass blue; red cells pass red, glass passes all."""
    f = rgb.astype(np.float32) / 255.0
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    return np.clip((b - g) * 2.0 + (1.0 - g) * 0.5 - (r - g) * 0.5, 0, 1)


class ClassicalSegmenter:
    """Baseline: leukocyte nuclei are the only strongly blue-purple objects in a Romanowsky-stained
    smear. Threshold a nucleus-stain measure, close the gaps between lobes of segmented nuclei,
    grow by a rim of cytoplasm, and seed each cell at the far end of its distance transform."""

    def __init__(self, nucleus_threshold: float, mpp: float = CLASSICAL_MPP, lobe_gap_um: float = 2.0, rim_um: float = 2.5):
        self.mpp = mpp
        self.nucleus_threshold = nucleus_threshold
        self.lobe_gap_px = max(1, int(round(lobe_gap_um / mpp)))
        self.rim_px = max(1, int(round(rim_um / mpp)))
        self.checksum = "classical"
        self.precision = None  # no network

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        mask = nucleus_stain(rgb) > self.nucleus_threshold
        disk = _disk(self.lobe_gap_px)
        mask = ndi.binary_closing(mask, structure=disk)
        mask = ndi.binary_fill_holes(ndi.binary_opening(mask, structure=_disk(1)))
        cell = ndi.binary_dilation(mask, structure=_disk(self.rim_px))
        dist = ndi.distance_transform_edt(cell)
        peak = ndi.maximum_filter(dist, size=2 * self.rim_px + 1)
        core = cell & (dist >= 0.6 * np.maximum(peak, 1e-6)) & (dist >= self.rim_px)
        return np.stack([cell, core]).astype(np.float32)

    def batch(self, rgbs: np.ndarray) -> np.ndarray:
        return np.stack([self(x) for x in rgbs])


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xx**2 + yy**2 <= radius**2
