"""Batched inference: patches (or image files) → the 15 class probabilities in CLASS_CODES order.

Preprocessing comes from the model card: a 400 px patch of the 29 µm field is resized to the card's
input size; any other image is first resampled from its own µm/px to the card's. A card's internal
reject outputs (PLT) are dropped and the 15 leukocyte probabilities renormalised (probabilities
*given* a leukocyte); the reject probability is returned beside them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .cell_images import CELL_IMAGE_SUFFIXES, CellDataset
from .classes import CLASS_CODES
from .colour_range import colour_moments
from .errors import DatasetError
from .patches import resize_patches
from .preprocess import EvalTransform, network_input
from .records import Probabilities
from .registry import ModelCard, forward_dtype, mixed_precision, resolve_device
from .slide_colours import group_colours, move_colours

log = logging.getLogger(__name__)


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations/flips: cells have no orientation."""
    return [torch.rot90(v, k, (-2, -1)) for v in (x, x.flip(-1)) for k in range(4)]


@torch.inference_mode()
def batch_logits(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device, tta: bool = False) -> torch.Tensor:
    """Concatenated logits (float32, CPU) of normalised N×3×H×W batches; TTA averages logits over
    the dihedral group. channels_last inputs; float16 autocast on CUDA, bfloat16 on CPUs that
    compute it natively (the model card's figures are measured the same way)."""
    model.eval()
    out = []
    for x in batches:
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with mixed_precision(device):
            views = _dihedral(x) if tta else [x]
            out.append(torch.stack([model(v).float() for v in views]).mean(0).cpu())
    return torch.cat(out) if out else torch.zeros((0, len(CLASS_CODES)))


def to_probabilities(logits: torch.Tensor, card: ModelCard) -> Probabilities:
    """Temperature-scaled softmax over all outputs, split into the 15 renormalised columns and p_reject."""
    p = F.softmax(logits.float() / card.temperature, dim=1).numpy().astype(np.float64)
    n = len(card.class_codes)
    leuk = p[:, :n]
    return Probabilities(leuk / np.clip(leuk.sum(1, keepdims=True), 1e-12, None), p[:, n:].sum(1))


def classify_inputs(
    model: nn.Module,
    card: ModelCard,
    inputs,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    tta: bool = False,
    slide_colours: np.ndarray | None = None,
) -> Probabilities:
    """Every cell of `inputs` (N×input×input×3 uint8, array-like: a cells.zarr `model_input` array,
    the patches already at the card's input size) → Probabilities. For a card with a slide colour
    target, the cells are one slide: moved by `slide_colours` (its 6 CIELAB moments), measured on
    `inputs` when not given. On CUDA the next two batches are read and normalised in a thread while
    the device runs; on a CPU the forward pass already uses every core, and such a thread only
    competes with it (measured: 0.75 of the raw forward with it, 0.9–1.0 without)."""
    device = resolve_device(device) if isinstance(device, str) else device
    model.to(device)
    starts = range(0, inputs.shape[0], batch_size)
    if card.slide_colour_target and slide_colours is None:
        slide_colours = group_colours(colour_moments(inputs))

    dtype = forward_dtype(device)  # normalised straight into the forward's precision (`normalise_uint8`)

    def load(start: int) -> torch.Tensor:
        return patch_batch(inputs[start : start + batch_size], card, slide_colours, dtype)

    batches = _prefetched(load, starts) if device.type == "cuda" else map(load, starts)
    return to_probabilities(batch_logits(model, batches, device, tta), card)


def _prefetched(load, starts: range, depth: int = 2) -> Iterator[torch.Tensor]:
    """load(start) for every start, `depth` of them ahead in a thread."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pending = deque(pool.submit(load, s) for s in starts[:depth])
        for start in starts[depth:]:
            pending.append(pool.submit(load, start))
            yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def patch_batch(
    patches: np.ndarray, card: ModelCard, slide_colours: np.ndarray | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """N×S×S×3 uint8 patches of the card's field → the normalised N×3×input×input network input
    in `dtype`; for a card with a slide colour target, moved with their slide's colours
    (`slide_colours`; not given: these patches are the slide)."""
    x = torch.from_numpy(resize_patches(patches, card.input_px)).permute(0, 3, 1, 2)
    if card.slide_colour_target:
        group = group_colours(colour_moments(patches)) if slide_colours is None else slide_colours
        x = move_colours(x.float() / 255, group, card.slide_colour_target)
    return network_input(x, card.mean, card.std, card.colour_reference, dtype)


_SUFFIXES = " ".join(CELL_IMAGE_SUFFIXES)


def list_inputs(path: str | Path) -> tuple[list[str], Path | None]:
    """Images under a folder (recursive, sorted), the `file` column of a CSV as given, or one image,
    and the folder their relative paths are read from: a CSV's own (its paths are kept as given, so
    predictions join its labels), None for the others, whose paths are whole. None at all is an
    error, not an empty result."""
    path = Path(path)
    suffix = path.suffix.lower()
    base = None
    if path.is_dir():
        files = sorted(str(f) for f in path.rglob("*") if f.suffix.lower() in CELL_IMAGE_SUFFIXES)
    elif path.is_file() and suffix == ".csv":
        table = pd.read_csv(path)
        if "file" not in table.columns:
            raise DatasetError("CSV has no 'file' column", path)
        files, base = table["file"].astype(str).tolist(), path.parent
    elif path.is_file() and suffix in CELL_IMAGE_SUFFIXES:
        files = [str(path)]
    else:
        raise DatasetError(f"input must be a folder of images, a CSV with a 'file' column or an image ({_SUFFIXES})", path)
    if not files:
        raise DatasetError(f"no images to classify (looked for {_SUFFIXES})", path)
    return files, base


def classify_files(
    model: nn.Module,
    card: ModelCard,
    files: list[str],
    input_mpp: float | list[float] | None = None,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    tta: bool = False,
    num_workers: int = 0,
    base: Path | None = None,
    transform=None,
    canvas_px: int = 0,
    slide_colours: np.ndarray | None = None,
) -> Probabilities:
    """Image files → Probabilities. `input_mpp` (one value or one per file) None/NaN: the image's
    shorter side spans the card's field (a cell patch cut like ours); otherwise images are resampled
    from input_mpp and centre-cropped to the field. Relative paths are resolved against `base`.
    `transform` (canvas → input; default: the centred field) sees a `canvas_px` canvas (default:
    the card's input size). For a card with a slide colour target the files are one slide's cells,
    moved by `slide_colours` (6 CIELAB moments, or N×6: each file's slide's; measured on the files
    as one slide when not given)."""
    device = resolve_device(device) if isinstance(device, str) else device
    model.to(device)
    table = _file_table(files, input_mpp, base)
    transform = transform or EvalTransform.for_card(card)
    group = None
    if card.slide_colour_target:
        slide_colours = group_colours(file_colour_moments(card, files, input_mpp, base)) if slide_colours is None else slide_colours
        group = (np.broadcast_to(slide_colours, (len(table), 6)), card.slide_colour_target)
    data = CellDataset(table, CLASS_CODES, transform, card.mpp, canvas_px or card.input_px, card.field_um, group_colours=group)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=num_workers)
    return to_probabilities(batch_logits(model, (x for x, _ in loader), device, tta), card)


def _file_table(files: list[str], input_mpp, base: Path | None) -> pd.DataFrame:
    paths = [str((base / f) if base is not None and not Path(f).is_absolute() else f) for f in files]
    return pd.DataFrame({"file": paths, "label": CLASS_CODES[0], "mpp": np.nan if input_mpp is None else input_mpp})


def file_colour_moments(card: ModelCard, files: list[str], input_mpp=None, base: Path | None = None, chunk: int = 256) -> np.ndarray:
    """N×6 CIELAB moments (`colour_moments`) of each file's field as the model receives it."""
    data = CellDataset(_file_table(files, input_mpp, base), CLASS_CODES, None, card.mpp, card.input_px, card.field_um)
    parts = [colour_moments(np.stack([data.canvas(i) for i in range(s, min(s + chunk, len(data)))])) for s in range(0, len(data), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, 6))


def predictions_frame(files: list[str], result: Probabilities, review_below: float = 0.5) -> pd.DataFrame:
    """preds.csv layout: file, the 15 probabilities, p_blast, p_atypical, predicted, then p_reject
    and needs_review (see `Probabilities.needs_review`)."""
    frame = pd.DataFrame(result.probs, columns=list(CLASS_CODES))
    frame.insert(0, "file", files)
    frame["p_blast"] = result.p_blast
    frame["p_atypical"] = result.p_atypical
    frame["predicted"] = result.predicted
    frame["p_reject"] = result.p_reject
    frame["needs_review"] = result.needs_review(review_below)
    return frame
