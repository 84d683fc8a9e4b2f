"""Per-pixel leukocyte maps for one RGB image at the detection µm/px: channel 0 is the cell
(nucleus + cytoplasm), channel 1 its core, one seed per cell for watershed. Two interchangeable
segmenters: the shipped U-Net and a classical stain-threshold baseline."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .errors import ModelError

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class SegmenterCard:
    """What a U-Net expects and how it was made; preprocessing is derived from it."""

    name: str
    encoder: str
    encoder_depth: int
    decoder_channels: tuple[int, ...]
    mpp: float
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channels: tuple[str, ...] = ("cell", "core")
    provenance: dict = field(default_factory=dict)


def build_unet(card: SegmenterCard):
    import segmentation_models_pytorch as smp

    return smp.Unet(
        card.encoder,
        encoder_weights=None,  # nothing is downloadable: weights are ours, trained here
        encoder_depth=card.encoder_depth,
        decoder_channels=card.decoder_channels,
        classes=len(card.channels),
    )


def save_unet(model, card: SegmenterCard, path: Path) -> None:
    import torch

    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"card": asdict(card), "state_dict": state}, path)


def resolve_weights(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix != ".pt":
        path = WEIGHTS_DIR / f"{name_or_path}.pt"
    if not path.is_file():
        raise ModelError("detector weights not found", path)
    return path


class UnetSegmenter:
    """The shipped detector: a small smp U-Net (MobileNetV2 encoder, no squeeze-excitation, so a
    pixel's output depends only on its neighbourhood and tiling cannot change it)."""

    def __init__(self, name_or_path: str, device: str = "auto"):
        import torch

        self.path = resolve_weights(name_or_path)
        try:
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
            card = dict(blob["card"])
            card["decoder_channels"] = tuple(card["decoder_channels"])
            self.card = SegmenterCard(**{k: tuple(v) if isinstance(v, list) else v for k, v in card.items()})
            model = build_unet(self.card)
            model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"not a valid detector weights file ({exc.__class__.__name__}: {exc})", self.path) from None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.mpp = self.card.mpp
        from .registry import for_inference, sha256

        self.model = for_inference(model, self.device)
        self.checksum = sha256(self.path)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.batch(rgb[None])[0]

    def batch(self, rgbs: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 → (N, 2, H, W) float32 probabilities; pads to the encoder stride."""
        import torch

        n, h, w, _ = rgbs.shape
        stride = 2**self.card.encoder_depth
        ph, pw = -h % stride, -w % stride
        x = np.pad(rgbs, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else rgbs
        x = (x.astype(np.float32) / 255.0 - np.float32(self.card.mean)) / np.float32(self.card.std)
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 3, 1, 2)  # NHWC memory = channels_last
            out = torch.sigmoid(self.model(t)).cpu().numpy()
        return out[:, :, :h, :w]


NUCLEUS_PIXEL = 0.5  # nucleus_stain above this counts as a nucleus pixel (the nucleated check)


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

    def __init__(self, mpp: float, nucleus_threshold: float, lobe_gap_um: float = 2.0, rim_um: float = 2.5):
        self.mpp = mpp
        self.nucleus_threshold = nucleus_threshold
        self.lobe_gap_px = max(1, int(round(lobe_gap_um / mpp)))
        self.rim_px = max(1, int(round(rim_um / mpp)))
        self.checksum = "classical"

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
