"""Examples for the classifier's reject output, cut from real TXL-PBC smear fields around their
labelled boxes at a fixed physical field, each source at its own median µm/px: red cells (alone,
overlapping, or touching a leukocyte, which is what a detector wrongly hands over) and platelets as
non-leukocytes (a box whose centre lies inside a WBC box is skipped: its crop centre is a
leukocyte), and the leukocytes of all four sources, class unknown, as "not rejected": the reject
output otherwise learns "leukocyte" from two labs' looks only and drops other labs' pale cells."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..cell_images import read_image
from .fields import PLATELET, RBC, WBC, centred_crop, load_fields, source_mpp, source_of

log = logging.getLogger(__name__)
REJECT_CODE = "NLK"  # one reject output: anything that is not a leukocyte
LEUKOCYTE_CODE = "WBC"  # a leukocyte of unknown class: trains only "not rejected" (train/loop.training_loss)
_TAGS = {PLATELET: "plt", RBC: "rbc", WBC: "wbc"}


def _centres(boxes: np.ndarray, cls: int) -> np.ndarray:
    b = boxes[boxes[:, 0] == cls, 1:]
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)


def _outside_wbc(points: np.ndarray, wbc: np.ndarray) -> np.ndarray:
    if not len(wbc) or not len(points):
        return np.ones(len(points), bool)
    x, y = points[:, :1], points[:, 1:]
    inside = (x >= wbc[:, 0]) & (x <= wbc[:, 2]) & (y >= wbc[:, 1]) & (y <= wbc[:, 3])
    return ~inside.any(1)


def cut_non_leukocytes(
    root: str | Path, split: str, out_dir: str | Path, per_source: int = 400, field_um: float = 36.0, seed: int = 0
) -> pd.DataFrame:
    """PNG crops of `field_um` (reflect-padded at the field border, so the object stays centred)
    and their table (file, label NLK, source txl_<source>, patient '', mpp). Platelets are taken
    first (they are rare), red cells fill the rest. Cached: a finished folder is read back."""

    def objects(f) -> list[tuple[float, float, int]]:
        found = []
        for cls in (PLATELET, RBC):
            pts = _centres(f.boxes, cls)
            found += [(float(x), float(y), cls) for x, y in pts[_outside_wbc(pts, f.wbc_boxes)]]
        return found

    return _cut(root, split, Path(out_dir) / split, objects, REJECT_CODE, per_source, field_um, seed)


def cut_leukocytes(
    root: str | Path, split: str, out_dir: str | Path, per_source: int = 400, field_um: float = 36.0, seed: int = 0
) -> pd.DataFrame:
    """The fields' whole leukocytes (boxes clear of the field border: a cut cell's box centre is
    not its centre) as `cut_non_leukocytes` cuts its objects, labelled WBC (class unknown), in
    out_dir/<split>_leukocytes."""

    def whole(f) -> list[tuple[float, float, int]]:
        b = f.wbc_boxes
        b = b[(b[:, 0] > 1) & (b[:, 1] > 1) & (b[:, 2] < f.width - 1) & (b[:, 3] < f.height - 1)]
        return [(float(x0 + x1) / 2, float(y0 + y1) / 2, WBC) for x0, y0, x1, y1 in b]

    return _cut(root, split, Path(out_dir) / f"{split}_leukocytes", whole, LEUKOCYTE_CODE, per_source, field_um, seed)


def _cut(root, split: str, out_dir: Path, objects, label: str, per_source: int, field_um: float, seed: int) -> pd.DataFrame:
    """Crops around `objects(field)` -> [(x, y, cls)], at most `per_source` per source (shuffled,
    platelets first), written under out_dir with their table; a finished folder is read back."""
    table_path = out_dir / "table.csv"
    if table_path.is_file():
        return pd.read_csv(table_path, dtype={"patient": str}, keep_default_na=False)
    fields = load_fields(root, split)
    mpp = source_mpp(fields)
    rng = np.random.default_rng(seed)
    candidates: dict[str, list[tuple[int, float, float, int]]] = {}
    for i, f in enumerate(fields):
        for x, y, cls in objects(f):
            candidates.setdefault(source_of(f), []).append((i, x, y, cls))
    rows = []
    for source, items in sorted(candidates.items()):
        items = [items[j] for j in rng.permutation(len(items))]
        items.sort(key=lambda t: t[3] != PLATELET)  # stable: platelets first, each group shuffled
        half = round(field_um / mpp[source] / 2)
        (out_dir / source).mkdir(parents=True, exist_ok=True)
        for n, (i, x, y, cls) in enumerate(items[:per_source]):
            crop = centred_crop(read_image(fields[i].image), x, y, half)
            path = out_dir / source / f"{fields[i].image.stem}_{n}_{_TAGS[cls]}.png"
            Image.fromarray(crop).save(path)
            rows.append((str(path.resolve()), label, f"txl_{source}", "", mpp[source]))
    table = pd.DataFrame(rows, columns=["file", "label", "source", "patient", "mpp"])
    table.to_csv(table_path, index=False)
    log.info("%d %s crops from %s/%s in %s", len(table), label, root, split, out_dir)
    return table
