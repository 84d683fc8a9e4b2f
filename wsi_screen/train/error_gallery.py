"""PNG contact sheets of every false positive, false negative and outline swallowing a red cell
beyond its own leukocyte's box, of a detector evaluation: a square crop around each with the
predicted outlines (red: the error itself, green: the other instances), the true WBC boxes (blue)
and red-cell boxes (yellow, on the swallowing sheets), captioned with source and field, so a
reviewer sees in minutes whether the errors are pale cells, red-cell neighbours or labelling slips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..cell_images import read_image
from .detector_eval import FieldEval

CROP_UM = 30.0  # a leukocyte (≤ 20 µm) and its neighbours
THUMB = 160
COLUMNS = 8
ROWS = 6


KINDS = ("false_positives", "false_negatives", "swallowing_beyond_box")


def error_crops(e: FieldEval, rgb: np.ndarray) -> dict[str, list[Image.Image]]:
    """The crops of one field, by kind (KINDS)."""
    return {
        "false_positives": [_crop(e, rgb, e.outlines[i].centroid.coords[0], e.outlines[i]) for i in e.false_positives],
        "false_negatives": [_crop(e, rgb, ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2), None) for b in e.wbc_boxes[list(e.missed)]],
        "swallowing_beyond_box": [
            _crop(e, rgb, e.outlines[i].centroid.coords[0], e.outlines[i], red_cells=True) for i in e.swallowing_beyond_box
        ],
    }


def _crop(e: FieldEval, rgb: np.ndarray, centre: tuple[float, float], error, red_cells: bool = False) -> Image.Image:
    side = CROP_UM / e.mpp
    x0, y0 = centre[0] - side / 2, centre[1] - side / 2
    k = THUMB / side
    im = Image.fromarray(rgb).crop((int(x0), int(y0), int(x0 + side), int(y0 + side))).resize((THUMB, THUMB), Image.BILINEAR)
    draw = ImageDraw.Draw(im)

    def shift(x: float, y: float) -> tuple[float, float]:
        return (x - int(x0)) * k, (y - int(y0)) * k

    for b in e.wbc_boxes:
        draw.rectangle([shift(b[0], b[1]), shift(b[2], b[3])], outline=(40, 90, 255), width=2)
    for b in e.field.rbc_boxes if red_cells else ():
        draw.rectangle([shift(b[0], b[1]), shift(b[2], b[3])], outline=(230, 200, 0), width=1)
    for o in e.outlines:
        draw.line([shift(x, y) for x, y in o.exterior.coords], fill=(255, 0, 0) if o is error else (0, 170, 0), width=2)
    draw.text((3, THUMB - 12), f"{e.source} {e.field.image.stem}"[:26], fill=(0, 0, 0))
    return im


def write_gallery(evals: list[FieldEval], out: Path) -> dict[str, int]:
    """out/<kind>_NN.png for each of KINDS (an earlier run's sheets are removed first: a rerun
    with fewer errors leaves none behind); returns the counts by kind."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in [p for kind in KINDS for p in out.glob(f"{kind}_*.png")]:
        stale.unlink()
    found: dict[str, list[Image.Image]] = {kind: [] for kind in KINDS}
    for e in evals:
        if e.false_positives or e.missed or e.swallowing_beyond_box:
            for kind, crops in error_crops(e, read_image(e.field.image)).items():
                found[kind] += crops
    for name, crops in found.items():
        per = COLUMNS * ROWS
        for k in range(0, len(crops), per):
            batch = crops[k : k + per]
            sheet = Image.new("RGB", (COLUMNS * THUMB, -(-len(batch) // COLUMNS) * THUMB), "white")
            for j, im in enumerate(batch):
                sheet.paste(im, ((j % COLUMNS) * THUMB, (j // COLUMNS) * THUMB))
            sheet.save(out / f"{name}_{k // per + 1:02d}.png")
    return {kind: len(crops) for kind, crops in found.items()}
