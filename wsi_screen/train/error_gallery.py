"""PNG contact sheets of every false positive and false negative of a detector evaluation: a
square crop around each error with the predicted outlines (red: the error itself, green: the
other instances) and the true WBC boxes (blue), captioned with source and field, so a reviewer
sees in minutes whether the misses are pale cells, red-cell neighbours or labelling slips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .detector_eval import FieldEval
from .fields import read_rgb

CROP_UM = 30.0  # a leukocyte (≤ 20 µm) and its neighbours
THUMB = 160
COLUMNS = 8
ROWS = 6


def error_crops(e: FieldEval, rgb: np.ndarray) -> tuple[list[Image.Image], list[Image.Image]]:
    """(false-positive crops, false-negative crops) of one field."""
    fp = [_crop(e, rgb, e.outlines[i].centroid.coords[0], e.outlines[i]) for i in e.false_positives]
    fn = [_crop(e, rgb, ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2), None) for b in e.wbc_boxes[list(e.missed)]]
    return fp, fn


def _crop(e: FieldEval, rgb: np.ndarray, centre: tuple[float, float], error) -> Image.Image:
    side = CROP_UM / e.mpp
    x0, y0 = centre[0] - side / 2, centre[1] - side / 2
    k = THUMB / side
    im = Image.fromarray(rgb).crop((int(x0), int(y0), int(x0 + side), int(y0 + side))).resize((THUMB, THUMB), Image.BILINEAR)
    draw = ImageDraw.Draw(im)

    def shift(x: float, y: float) -> tuple[float, float]:
        return (x - int(x0)) * k, (y - int(y0)) * k

    for b in e.wbc_boxes:
        draw.rectangle([shift(b[0], b[1]), shift(b[2], b[3])], outline=(40, 90, 255), width=2)
    for o in e.outlines:
        draw.line([shift(x, y) for x, y in o.exterior.coords], fill=(255, 0, 0) if o is error else (0, 170, 0), width=2)
    draw.text((3, THUMB - 12), f"{e.source} {e.field.image.stem}"[:26], fill=(0, 0, 0))
    return im


def write_gallery(evals: list[FieldEval], out: Path) -> dict[str, int]:
    """out/false_positives_NN.png and out/false_negatives_NN.png (an earlier run's sheets are
    removed first: a rerun with fewer errors leaves none behind); returns the error counts."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("false_positives_*.png"), *out.glob("false_negatives_*.png")]:
        stale.unlink()
    fps, fns = [], []
    for e in evals:
        if e.false_positives or e.missed:
            fp, fn = error_crops(e, read_rgb(e.field.image))
            fps += fp
            fns += fn
    for name, crops in (("false_positives", fps), ("false_negatives", fns)):
        per = COLUMNS * ROWS
        for k in range(0, len(crops), per):
            batch = crops[k : k + per]
            sheet = Image.new("RGB", (COLUMNS * THUMB, -(-len(batch) // COLUMNS) * THUMB), "white")
            for j, im in enumerate(batch):
                sheet.paste(im, ((j % COLUMNS) * THUMB, (j // COLUMNS) * THUMB))
            sheet.save(out / f"{name}_{k // per + 1:02d}.png")
    return {"false_positives": len(fps), "false_negatives": len(fns)}
