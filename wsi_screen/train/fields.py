"""Real smear fields with YOLO boxes (TXL-PBC layout: images/<split>/*.jpg, labels/<split>/*.txt,
`class cx cy w h` normalised; 0 WBC, 1 RBC, 2 platelets) turned into detector training targets.

Fields come from several sources at different magnifications, so each field's µm/px is estimated
from its own red cells (≈ 7.5 µm across) and everything is resampled to the detector's µm/px.

Boxes → masks: a WBC box is tight around a roughly convex cell, so the inscribed ellipse holds the
cell and excludes the box corners (where neighbouring red cells sit); intersecting it with the
stained (non-background) pixels trims the ellipse to the cell's real outline. A box the field
border cuts is the visible part of a round cell, so it is extended past the border to a square
before the ellipse is inscribed, and it is not opened: the visible part can be a strip a few
pixels wide, and it is still a cell to find. The "core" target (the inner half of each cell by
distance) gives watershed one seed per cell, which is what splits touching cells."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ..errors import DatasetError

RBC_DIAMETER_UM = 7.5
WBC, RBC, PLATELET = 0, 1, 2


@dataclass(frozen=True)
class Field:
    image: Path
    boxes: np.ndarray  # (n, 5): class, x0, y0, x1, y1 in pixels
    width: int
    height: int

    @property
    def wbc_boxes(self) -> np.ndarray:
        return self.boxes[self.boxes[:, 0] == WBC, 1:]

    @property
    def rbc_boxes(self) -> np.ndarray:
        return self.boxes[self.boxes[:, 0] == RBC, 1:]


def load_fields(root: str | Path, split: str) -> list[Field]:
    root = Path(root)
    images = sorted((root / "images" / split).glob("*.jpg"))
    if not images:
        raise DatasetError(f"no images for split {split!r}", root / "images" / split)
    fields = []
    for image in images:
        label = root / "labels" / split / (image.stem + ".txt")
        with Image.open(image) as im:
            width, height = im.size
        rows = np.loadtxt(label, ndmin=2) if label.exists() and label.stat().st_size else np.zeros((0, 5))
        c, cx, cy, w, h = rows.T
        boxes = np.stack([c, (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
        fields.append(Field(image, boxes, width, height))
    return fields


def estimate_mpp(fields: list[Field]) -> list[float]:
    """µm/px of each field from the median diameter of its red cells that the border does not cut;
    fields without such cells take the median of fields of the same pixel size (same source)."""
    own: list[float | None] = []
    for f in fields:
        b = f.rbc_boxes
        inside = (b[:, 0] > 1) & (b[:, 1] > 1) & (b[:, 2] < f.width - 1) & (b[:, 3] < f.height - 1)
        b = b[inside]
        own.append(RBC_DIAMETER_UM / float(np.median(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))) if len(b) else None)
    by_size: dict[tuple[int, int], list[float]] = {}
    for f, m in zip(fields, own):
        if m is not None:
            by_size.setdefault((f.width, f.height), []).append(m)
    overall = float(np.median([m for m in own if m is not None]))
    return [m if m is not None else float(np.median(by_size.get((f.width, f.height), [overall]))) for f, m in zip(fields, own)]


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Summed optical density: 0 for white glass, large for dense stain."""
    return -np.log(np.clip(rgb.astype(np.float32), 1, 255) / 255.0).sum(axis=-1)


def negative_weights(shape: tuple[int, int], boxes: np.ndarray, leukocytes: np.ndarray, weight: float) -> np.ndarray:
    """(H, W) float32 loss weight: `weight` on labelled red cells and platelets (their inscribed
    ellipses) outside the leukocyte mask, 1 elsewhere. Plasma is an easy negative; a red cell
    touching a leukocyte is the hard one a detector must learn is not part of it, nor a cell."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.ones(shape, np.float32)
    for _, x0, y0, x1, y1 in boxes[boxes[:, 0] != WBC]:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1), max((y1 - y0) / 2, 1)
        out[(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1) & ~leukocytes] = weight
    return out


def wbc_targets(rgb: np.ndarray, wbc_boxes: np.ndarray) -> np.ndarray:
    """(2, H, W) float32: cell foreground and cell core, from the WBC boxes of one field."""
    h, w = rgb.shape[:2]
    od = optical_density(rgb)
    background = od < np.percentile(od, 10) + 0.08  # plasma/glass: the palest pixels
    yy, xx = np.mgrid[0:h, 0:w]
    fg = np.zeros((h, w), bool)
    core = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in wbc_boxes:
        inside = x0 > 1 and y0 > 1 and x1 < w - 1 and y1 < h - 1
        side = max(x1 - x0, y1 - y0)  # a cut cell's box extends past the border to a round cell's
        x0, y0 = (min(x0, x1 - side) if x0 <= 1 else x0), (min(y0, y1 - side) if y0 <= 1 else y0)
        x1, y1 = (max(x1, x0 + side) if x1 >= w - 1 else x1), (max(y1, y0 + side) if y1 >= h - 1 else y1)
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1), max((y1 - y0) / 2, 1)
        ellipse = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        cell = ndi.binary_fill_holes(ellipse & ~background)
        if inside:  # opening would erase a frame-cut sliver
            cell = ndi.binary_opening(cell, iterations=2)
        labels, n = ndi.label(cell)
        if n:
            cell = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        if cell.sum() < 0.3 * ellipse.sum():  # stain trimming failed (pale cell): trust the ellipse
            cell = ellipse
        dist = ndi.distance_transform_edt(cell)
        core |= dist >= 0.5 * dist.max()
        fg |= cell
    return np.stack([fg, core]).astype(np.float32)


# TXL-PBC's four sources are told apart by field size.
SOURCE_BY_SIZE = {(575, 575): "raabin", (360, 363): "pbc", (366, 369): "pbc", (640, 480): "bccd", (416, 416): "bcd"}


def centred_crop(rgb: np.ndarray, x: float, y: float, half: int) -> np.ndarray:
    """The 2·half square around (x, y), the field reflected where the square passes its edge (a
    cell near the border keeps its centre at the crop's centre)."""
    padded = np.pad(rgb, ((half, half), (half, half), (0, 0)), mode="reflect")
    cx, cy = round(x) + half, round(y) + half
    return padded[cy - half : cy + half, cx - half : cx + half]


def source_of(field: Field) -> str:
    return SOURCE_BY_SIZE.get((field.width, field.height), f"{field.width}x{field.height}")


def source_mpp(fields: list[Field]) -> dict[str, float]:
    """One µm/px per source (the median of its fields' own estimates): a new lab's scanner has one
    scale, never one derived from each field's labels."""
    by_source: dict[str, list[float]] = {}
    for f, m in zip(fields, estimate_mpp(fields)):
        by_source.setdefault(source_of(f), []).append(m)
    return {s: float(np.median(v)) for s, v in by_source.items()}
