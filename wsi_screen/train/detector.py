"""Train and validate the leukocyte U-Net on real smear fields (TXL-PBC layout).

Every field is resampled to the detector µm/px from its own red-cell scale, then jittered by
±25 % scale, rotations/flips and stain/colour/focus changes (wide enough for the darkest and
bluest sources) so the detector meets scanners and labs it never saw. Labelled red cells and
platelets weigh `negative_weight` times plasma in the loss."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from ..cell_images import read_image
from ..config import DetectConfig
from ..detect import detect_image
from ..records import Detection
from ..registry import DetectorCard, create_model, default_input_px, save_weights
from .detection_metrics import DetectionScore, match, merge_duplicates
from .fields import Field, estimate_mpp, load_fields, negative_weights, wbc_targets


@dataclass(frozen=True)
class DetectorTrainConfig:
    crop_px: int = 0  # 0: the architecture's default input
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    scale_jitter: float = 0.25
    negative_weight: float = 4.0  # loss weight of red-cell and platelet pixels (plasma: 1)
    gamma: tuple[float, float] = (0.4, 1.6)  # per-channel gamma range of the stain jitter: < 1 fades (pale, washed-out stains), > 1 darkens
    seed: int = 0
    threads: int = 1


def resized(a: np.ndarray, factor: float, resample) -> np.ndarray:
    """`a` (an image or a mask) resampled by `factor` with PIL's `resample` filter."""
    h, w = a.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(a).resize(size, resample))


def _stain_jitter(rgb: np.ndarray, rng: np.random.Generator, gamma: tuple[float, float]) -> np.ndarray:
    """Per-channel gain/gamma (a gamma multiplies each channel's optical density: 0.4 is a stain
    faded to 40 %, as BCD's palest cells; 1.6 dark, dense stains), saturation and brightness
    changes, sometimes blur (focus)."""
    x = rgb.astype(np.float32) / 255.0
    x = np.clip(x, 1e-3, 1) ** rng.uniform(*gamma, 3) * rng.uniform(0.8, 1.12, 3)
    grey = x.mean(-1, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.5, 1.6)
    x = (x - 0.5) * rng.uniform(0.75, 1.25) + 0.5 + rng.uniform(-0.12, 0.08)
    out = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    if rng.random() < 0.3:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2))))
    return out


class FieldSamples:
    """Fields held at native resolution with their targets; each draw is a new augmented crop."""

    def __init__(self, fields: list[Field], mpps: list[float], mpp: float, crop_px: int, cfg: DetectorTrainConfig):
        self.cfg, self.mpp, self.crop_px = cfg, mpp, crop_px
        self.items = []
        for f, m in tqdm(list(zip(fields, mpps)), desc="preparing fields", leave=False):
            rgb = read_image(f.image)
            targets = wbc_targets(rgb, f.wbc_boxes)
            weights = negative_weights(rgb.shape[:2], f.boxes, targets[0] > 0, cfg.negative_weight)
            self.items.append((rgb, (targets * 255).astype(np.uint8), weights, m))

    def draw(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """An augmented crop and its (3, H, W) targets: cell, core and the per-pixel loss weight."""
        rgb, targets, weights, field_mpp = self.items[index]
        factor = field_mpp / self.mpp * rng.uniform(1 - self.cfg.scale_jitter, 1 + self.cfg.scale_jitter)
        img = resized(rgb, factor, Image.BILINEAR)
        tgt = np.stack([resized(t, factor, Image.BILINEAR) > 127 for t in targets] + [resized(weights, factor, Image.NEAREST)])
        k = rng.integers(4)
        img, tgt = np.rot90(img, k), np.rot90(tgt, k, axes=(1, 2))
        if rng.random() < 0.5:
            img, tgt = img[:, ::-1], tgt[:, :, ::-1]
        c = self.crop_px
        h, w = img.shape[:2]
        ph, pw = max(0, c - h), max(0, c - w)
        pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        img = np.pad(img, pads + ((0, 0),), mode="reflect")
        tgt = np.pad(tgt, ((0, 0),) + pads, mode="reflect")
        y = rng.integers(img.shape[0] - c + 1)
        x = rng.integers(img.shape[1] - c + 1)
        img, tgt = img[y : y + c, x : x + c], tgt[:, y : y + c, x : x + c]
        return _stain_jitter(np.ascontiguousarray(img), rng, self.cfg.gamma), np.ascontiguousarray(tgt, dtype=np.float32)


def detect_field(segmenter, field: Field, mpp: float, detect_cfg: DetectConfig) -> list[Detection]:
    """Detections of one camera field taken to be at `mpp` µm/px, in the field's own pixels
    (the field is resampled to the segmenter's µm/px, read from its card)."""
    factor = mpp / segmenter.mpp
    return detect_image(resized(read_image(field.image), factor, Image.BILINEAR), segmenter, detect_cfg, scale=1 / factor)


def evaluate(segmenter, fields: list[Field], mpps: list[float], detect_cfg: DetectConfig, sliver_um: float = 0.0) -> DetectionScore:
    """Centroid-in-box precision/recall over whole fields resampled to the segmenter's µm/px,
    duplicate boxes merged.

    With `sliver_um` > 0, boxes that touch the field border and are narrower than that (a cell
    cut to a strip by the camera frame, which a whole-slide scan never has) are left out."""
    total = DetectionScore(0, 0, 0)
    for f, m in zip(fields, mpps):
        centroids = np.array([(d.x, d.y) for d in detect_field(segmenter, f, m, detect_cfg)]).reshape(-1, 2)
        boxes = merge_duplicates(f.wbc_boxes)
        if sliver_um > 0:
            x0, y0, x1, y1 = boxes.T
            at_border = (x0 <= 1) | (y0 <= 1) | (x1 >= f.width - 1) | (y1 >= f.height - 1)
            boxes = boxes[~(at_border & (np.minimum(x1 - x0, y1 - y0) * m < sliver_um))]
        total = total + match(centroids, boxes)
    return total


def train_detector(data: Path, out: Path, name: str, card: DetectorCard, cfg: DetectorTrainConfig) -> dict:
    """Train `card.arch` at `card.mpp` on data's train split, keep the epoch with the best val F1,
    write OUT/<name>.pt with its card (and the card as JSON beside it)."""
    import torch

    from ..segmenters import UnetSegmenter

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    train_fields, val_fields = load_fields(data, "train"), load_fields(data, "val")
    samples = FieldSamples(train_fields, estimate_mpp(train_fields), card.mpp, cfg.crop_px or default_input_px(card.arch), cfg)
    val_mpps = estimate_mpp(val_fields)
    model = create_model(card.arch, card.num_outputs)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = cfg.epochs * (len(samples.items) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    mean, std = np.float32(card.mean), np.float32(card.std)
    detect_cfg = DetectConfig()
    best, history, weights = -1.0, [], out / f"{name}.pt"
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(samples.items))
        losses, t0 = [], time.time()
        for i in tqdm(range(0, len(order) - cfg.batch_size + 1, cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False):
            imgs, tgts = zip(*(samples.draw(j, rng) for j in order[i : i + cfg.batch_size]))
            x = torch.from_numpy(((np.stack(imgs).astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2).copy())
            tgt = torch.from_numpy(np.stack(tgts))
            y, weight = tgt[:, :2], tgt[:, 2:]
            logits = model(x)
            prob = torch.sigmoid(logits)
            dice = 1 - (2 * (prob * y).sum((0, 2, 3)) + 1) / (prob.sum((0, 2, 3)) + y.sum((0, 2, 3)) + 1)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=weight.expand_as(y), reduction="sum")
            loss = bce / weight.expand_as(y).sum() + dice.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        save_weights(model, card, out / "last.pt")
        score = evaluate(UnetSegmenter(str(out / "last.pt"), "cpu"), val_fields, val_mpps, detect_cfg)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": time.time() - t0, **score.as_dict()})
        print(json.dumps(history[-1]), flush=True)
        if score.f1 > best:
            best = score.f1
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    (out / "last.pt").unlink()
    (out / "last.json").unlink()
    (out / "history.json").write_text(json.dumps({"config": asdict(cfg), "history": history}, indent=1))
    top = max(history, key=lambda h: h["f1"])
    model.load_state_dict(best_state)
    save_weights(model, replace(card, provenance={**card.provenance, "val_metrics": top}), weights)
    return top
