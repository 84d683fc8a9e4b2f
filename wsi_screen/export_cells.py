"""Reviewed cells as a training tree: DEST/<CODE>/<slide>_<cell id>.png, the stored 29 µm patch of
every cell the reviewer gave one of the 15 classes, which `wsi-screen train` reads as a
folder-per-class tree (each image spanning the model's field). Cells the reviewer rejected,
deleted or left unlabelled, and added cells (no patch was cut), are not exported. Several
slides may export into one DEST; each file is written under a temporary name and renamed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import CLASS_CODES
from .errors import StoreError


def export_cells(result_dir: Path, dest: Path) -> dict[str, int]:
    """Writes the reviewed cells of OUT/<slide>/ under `dest`; returns the count per class."""
    from .export.store import open_patches, read_table

    result_dir, dest = Path(result_dir), Path(dest)
    store = result_dir / "cells.zarr"
    if not store.is_dir():
        raise StoreError("no cells.zarr: not a screened slide's results folder", result_dir)
    table = read_table(store)
    if "reviewer_class" not in table.columns:
        raise StoreError("no review imported yet: run `wsi-screen import-review` first", store)
    labels = table["reviewer_class"].to_numpy().astype(str)
    chosen = np.flatnonzero(np.isin(labels, CLASS_CODES))
    patches = open_patches(store)
    counts: dict[str, int] = {}
    for i in chosen:
        code, cell = labels[i], int(table["id"].iloc[i])
        target = dest / code / f"{result_dir.name}_{cell:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        Image.fromarray(patches[i]).save(tmp, format="PNG")
        tmp.replace(target)
        counts[code] = counts.get(code, 0) + 1
    return counts
