"""Simonyan et al. (2014) gradient saliency: |∂ logit of the predicted class / ∂ input|, maximum over
colour channels, to check that the classifier looks at the cell and not at the background: for
the report's gallery cells (`patch_saliency`) and for image files (`save_saliency`, the CLI)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from .cell_images import load_canvas  # noqa: E402
from .classes import CLASS_CODES  # noqa: E402
from .preprocess import EvalTransform  # noqa: E402
from .registry import ModelCard  # noqa: E402


def saliency_maps(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """x: N×3×H×W normalised inputs → (N×H×W maps, each scaled to [0, 1]; N predicted output
    indices), in one forward and one backward pass: in eval mode no sample's logit depends on
    another's input, so the gradient of their sum is each logit's own gradient."""
    model.eval()
    x = x.clone().requires_grad_(True)
    logits = model(x)
    k = logits[:, : len(CLASS_CODES)].argmax(1)
    logits.gather(1, k[:, None]).sum().backward()
    grad = x.grad.abs().amax(1).numpy()
    return grad / np.maximum(grad.reshape(len(grad), -1).max(1), 1e-12)[:, None, None], k.numpy()


def saliency_map(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, int]:
    """x: 3×H×W normalised input → (H×W map scaled to [0, 1], predicted output index)."""
    maps, k = saliency_maps(model, x[None])
    return maps[0], int(k[0])


def patch_saliency(model: nn.Module, card: ModelCard, patches: np.ndarray, slide_colours=None, batch: int = 32) -> np.ndarray:
    """Saliency of each N×S×S×3 patch of the card's field, at patch size (N×S×S float32); only
    the patches given (the report's gallery, moved with their slide's colours), `batch` at a time."""
    import torch.nn.functional as F

    from .classify import patch_batch

    maps = []
    for start in range(0, len(patches), batch):
        smap, _ = saliency_maps(model, patch_batch(patches[start : start + batch], card, slide_colours))
        maps.append(F.interpolate(torch.from_numpy(smap)[:, None], size=patches.shape[1:3], mode="bilinear")[:, 0].numpy())
    return np.concatenate(maps) if maps else np.zeros((0,) + patches.shape[1:3], np.float32)


def save_saliency(model: nn.Module, card: ModelCard, image_path: str | Path, out_dir: str | Path, input_mpp: float | None = None) -> Path:
    """A PNG, side by side: the model's view of the 29 µm field and its saliency overlay."""
    canvas = load_canvas(image_path, np.nan if input_mpp is None else input_mpp, card.mpp, card.input_px, card.field_um)
    smap, k = saliency_map(model, EvalTransform.for_card(card)(canvas))
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(canvas)
    axes[1].imshow(canvas)
    axes[1].imshow(smap, cmap="jet", alpha=0.5)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{Path(image_path).name}: {CLASS_CODES[k]}")
    out = Path(out_dir) / f"{Path(image_path).stem}_saliency.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
