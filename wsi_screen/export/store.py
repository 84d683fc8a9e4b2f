"""cells.zarr: the per-cell table, the cell patches and the AOI mask of one slide.

Zarr format 2 throughout, because the AOI is an OME-Zarr (NGFF 0.4) image and 0.4 is defined on
format 2 with `/`-separated chunk keys (ome-zarr-py reads `.`-separated arrays as zeros), so every
array here is written with `dimension_separator: "/"`. Written with the zarr-python 3 API
(`create_array`, `compressors=`). Patches are JPEG-compressed one cell per chunk (~26 kB a cell
instead of 480 kB raw), so any worker can write any cell's region without coordinating with the
others. The JPEG codec is imagecodecs', so a reader needs, besides `zarr` and `imagecodecs`, only
`import imagecodecs.numcodecs; imagecodecs.numcodecs.register_codecs()` before opening `patches`.

While `screen` runs, the store also holds `model_input`: every patch already resized to the
classifier's input, losslessly (LZ4), written by the same workers that cut the patches, so that
classification reads ready inputs instead of decoding JPEGs on the cores the model needs. It is
scaffolding: `drop_model_input` removes it once the cells are classified."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from imagecodecs.numcodecs import Jpeg, register_codecs
from numcodecs import Blosc

from ..classes import CLASS_CODES
from ..config import PatchConfig
from ..errors import StoreError
from ..records import AoiMask, Detection, Probabilities

register_codecs()  # readers of the store need the JPEG codec registered too

MODEL_INPUT = "model_input"
SLASH_KEYS = {"name": "v2", "separator": "/"}  # NGFF 0.4: chunk keys `0/1`, not `0.1`

CELL_COLUMNS: dict[str, str] = {
    "id": "i8",
    "x": "f8",
    "y": "f8",
    "bbox_x0": "i8",
    "bbox_y0": "i8",
    "bbox_x1": "i8",
    "bbox_y1": "i8",
    "area_um2": "f4",
    "score": "f4",
}


def detections_table(detections: list[Detection]) -> pd.DataFrame:
    rows = {
        "id": np.arange(len(detections), dtype=np.int64),
        "x": [d.x for d in detections],
        "y": [d.y for d in detections],
        "bbox_x0": [d.bbox.x0 for d in detections],
        "bbox_y0": [d.bbox.y0 for d in detections],
        "bbox_x1": [d.bbox.x1 for d in detections],
        "bbox_y1": [d.bbox.y1 for d in detections],
        "area_um2": [d.area_um2 for d in detections],
        "score": [d.score for d in detections],
    }
    return pd.DataFrame({k: np.asarray(v, dtype=CELL_COLUMNS[k]) for k, v in rows.items()})


def create_store(
    path: Path, table: pd.DataFrame, patches: PatchConfig, attrs: dict, model_input_px: int = 0, cells_per_writer: int = 1
) -> None:
    """Write the cell table and an empty patch array sized for it; patches are filled by
    `write_patches`, possibly from many workers at once. With `model_input_px`, also an empty
    `model_input` array chunked by `cells_per_writer` cells, so that writers of aligned runs of
    that many cells never share a chunk."""
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs.update(attrs)
    cells = root.create_group("cells")
    for name in table.columns:
        values = table[name].to_numpy()
        arr = cells.create_array(
            name, shape=values.shape, dtype=values.dtype, chunks=(max(1, min(len(values), 65536)),), chunk_key_encoding=SLASH_KEYS
        )
        if len(values):
            arr[:] = values
    root.create_array(
        "patches",
        shape=(len(table), patches.size_px, patches.size_px, 3),
        chunks=(1, patches.size_px, patches.size_px, 3),
        dtype="u1",
        compressors=Jpeg(level=90),
        fill_value=0,
        chunk_key_encoding=SLASH_KEYS,
        attributes={"field_um": patches.field_um, "mpp": patches.mpp, "axes": ["cell", "y", "x", "c"]},
    )
    if model_input_px:
        add_model_input(path, model_input_px, cells_per_writer)


def add_model_input(path: Path, px: int, cells_per_writer: int = 1) -> None:
    """An empty `model_input` array (N×px×px×3 uint8, lossless) beside the patches."""
    root = zarr.open_group(str(path), mode="r+")
    patches = root["patches"]
    root.create_array(
        MODEL_INPUT,
        shape=(patches.shape[0], px, px, 3),
        chunks=(cells_per_writer, px, px, 3),
        dtype="u1",
        compressors=Blosc(cname="lz4", clevel=1, shuffle=Blosc.NOSHUFFLE),  # lossless, 31 kB and 0.05 ms a cell to read
        fill_value=0,
        chunk_key_encoding=SLASH_KEYS,
        attributes={"field_um": patches.attrs["field_um"], "axes": ["cell", "y", "x", "c"]},
    )


def write_model_input(path: Path, start: int, inputs: np.ndarray) -> None:
    _writable(Path(path) / MODEL_INPUT)[start : start + len(inputs)] = inputs


def open_model_input(path: Path) -> zarr.Array:
    """The classifier inputs (N×px×px×3 uint8), opened once for many batch reads."""
    try:
        return zarr.open_array(str(Path(path) / MODEL_INPUT), mode="r")
    except FileNotFoundError:
        raise StoreError("no model_input array: only `screen` writes one, before classifying", Path(path)) from None


def drop_model_input(path: Path) -> None:
    group = zarr.open_group(str(path), mode="r+")
    if MODEL_INPUT in group:
        del group[MODEL_INPUT]


def write_patches(path: Path, start: int, patches: np.ndarray) -> None:
    _writable(Path(path) / "patches")[start : start + len(patches)] = patches


def _writable(array: Path) -> zarr.Array:
    """An image array opened for writing whole chunks as they come: zarr's default first compares
    every chunk with the fill value to skip empty ones, which no cell image is; that test cost
    more than the JPEG encoding (4.4–6.7 vs 1.8–2.8 ms a 400 px patch)."""
    return zarr.open_array(str(array), mode="r+").with_config({"write_empty_chunks": True})


def write_columns(path: Path, columns: dict[str, np.ndarray], attrs: dict | None = None) -> None:
    """Add (or replace) per-cell columns, e.g. class probabilities after classification."""
    cells = zarr.open_group(str(Path(path) / "cells"), mode="r+")
    for name, values in columns.items():
        values = np.asarray(values)
        chunks = (max(1, min(len(values), 65536)),) + values.shape[1:]
        cells.create_array(name, shape=values.shape, dtype=values.dtype, chunks=chunks, overwrite=True, chunk_key_encoding=SLASH_KEYS)
        if len(values):
            cells[name][...] = values
    if attrs:
        zarr.open_group(str(path), mode="r+").attrs.update(attrs)


def write_calls(path: Path, calls: Probabilities, review: np.ndarray, classifier_sha256: str) -> None:
    """The classifier's per-cell columns: probabilities (CLASS_CODES order), P(blast), P(atypical),
    the predicted code and its probability, P(reject), whether that rejects the object (not
    counted: `records.is_rejected`) and the needs-review mark."""
    write_columns(
        path,
        {
            "probabilities": calls.probs.astype(np.float32).reshape(-1, len(CLASS_CODES)),
            "p_blast": calls.p_blast.astype(np.float32),
            "p_atypical": calls.p_atypical.astype(np.float32),
            "predicted": calls.predicted.astype("U3"),
            "confidence": calls.confidence.astype(np.float32),
            "p_reject": calls.p_reject.astype(np.float32),
            "rejected": calls.rejected,
            "needs_review": np.asarray(review, bool),
        },
        {"class_codes": list(CLASS_CODES), "classifier_sha256": classifier_sha256},
    )


def write_aoi(path: Path, aoi: AoiMask, slide_mpp: float, levels: int = 3) -> None:
    """The AOI mask as an NGFF 0.4 multiscale image (uint8, 255 inside) under `aoi/`.

    Physical frame: µm from the slide's top-left corner, a pixel's coordinate being its centre.
    Level k is the 2^k × 2^k block mean of level 0 (the fraction of the block inside the AOI,
    zero-padded at odd edges), so its pixel j is centred on its block: translation = half its
    own pixel size at every level, and no level is shifted against another."""
    group = zarr.open_group(str(path), mode="r+").create_group("aoi")
    level0 = aoi.mask.astype(np.float64)
    datasets = []
    for level in range(levels):
        factor = 2**level
        data = np.rint(255 * _block_mean(level0, factor)).astype(np.uint8)
        chunks = (min(1024, max(1, data.shape[0])), min(1024, max(1, data.shape[1])))
        group.create_array(str(level), shape=data.shape, dtype="u1", chunks=chunks, chunk_key_encoding=SLASH_KEYS)[...] = data
        scale = aoi.downsample * slide_mpp * factor
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [scale, scale]},
                    {"type": "translation", "translation": [scale / 2, scale / 2]},
                ],
            }
        )
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": "aoi",
            "axes": [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}],
            "datasets": datasets,
            "type": "local_mean",
            "metadata": {"method": aoi.method, "level0_px_per_mask_px": aoi.downsample},
        }
    ]


def _block_mean(mask: np.ndarray, factor: int) -> np.ndarray:
    h, w = -(-mask.shape[0] // factor), -(-mask.shape[1] // factor)
    padded = np.zeros((h * factor, w * factor))
    padded[: mask.shape[0], : mask.shape[1]] = mask
    return padded.reshape(h, factor, w, factor).mean(axis=(1, 3))


def read_table(path: Path) -> pd.DataFrame:
    cells = zarr.open_group(str(Path(path) / "cells"), mode="r")
    columns = {}
    for name, arr in cells.arrays():
        values = arr[...]
        if values.ndim == 1:
            columns[name] = values
    return pd.DataFrame(columns)


def open_patches(path: Path) -> zarr.Array:
    return zarr.open_array(str(Path(path) / "patches"), mode="r")
