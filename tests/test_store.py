import numpy as np
import zarr

from wsi_screen.config import PatchConfig
import pytest

from wsi_screen.errors import StoreError
from wsi_screen.export.store import (
    create_store, detections_table, drop_model_input, open_patches, open_model_input, read_table, write_aoi, write_columns, write_model_input,
    write_patches,
)  # fmt: skip
from wsi_screen.records import AoiMask, Box, Detection


def _dets(n):
    return [Detection(10.0 * i, 5.0 * i, Box(i, i, i + 4, i + 4), 50.0 + i, 0.9, ((0, 0), (1, 0), (1, 1), (0, 0))) for i in range(n)]


def test_table_patches_and_aoi_roundtrip(tmp_path):
    store = tmp_path / "cells.zarr"
    cfg = PatchConfig(size_px=64)
    create_store(store, detections_table(_dets(5)), cfg, {"slide": "s.tiff"})
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = np.stack([np.stack([100 + yy + 10 * i, 150 + xx // 2, 200 - yy // 2], -1) for i in range(5)]).astype(np.uint8)
    write_patches(store, 1, smooth[1:4])
    patches = open_patches(store)
    assert patches.shape == (5, 64, 64, 3) and patches.chunks == (1, 64, 64, 3)
    assert np.abs(patches[1:4].astype(int) - smooth[1:4]).mean() < 2  # JPEG q90
    assert patches[0].max() == 0  # not written yet
    table = read_table(store)
    assert list(table["id"]) == [0, 1, 2, 3, 4] and table["x"].iloc[3] == 30.0 and table["area_um2"].iloc[4] == 54.0

    write_columns(store, {"p_blast": np.linspace(0, 1, 5, dtype=np.float32)}, {"classified": True})
    assert read_table(store)["p_blast"].iloc[-1] == 1.0
    assert zarr.open_group(str(store)).attrs["classified"] is True

    mask = np.zeros((40, 60), bool)
    mask[10:30, 5:50] = True
    write_aoi(store, AoiMask(mask, downsample=32.0), slide_mpp=0.25)
    aoi = zarr.open_group(str(store / "aoi"))
    ms = aoi.attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [8.0, 8.0]
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [16.0, 16.0]
    assert (aoi["0"][:] == mask * 255).all() and aoi["1"].shape == (20, 30)


def test_empty_store_is_valid(tmp_path):
    store = tmp_path / "cells.zarr"
    create_store(store, detections_table([]), PatchConfig(), {})
    assert open_patches(store).shape == (0, 400, 400, 3)
    assert len(read_table(store)) == 0


def test_model_input_is_lossless_and_dropped_after_use(tmp_path):
    store = tmp_path / "cells.zarr"
    create_store(store, detections_table(_dets(5)), PatchConfig(size_px=64), {}, model_input_px=32, cells_per_writer=2)
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)  # noise: any lossy codec would show
    write_model_input(store, 0, inputs[:2])
    write_model_input(store, 2, inputs[2:])  # writers of aligned runs of 2 cells share no chunk
    assert zarr.open_array(str(store / "model_input")).chunks == (2, 32, 32, 3)
    assert np.array_equal(open_model_input(store)[1:5], inputs[1:])
    drop_model_input(store)
    assert not (store / "model_input").exists() and len(read_table(store)) == 5
    with pytest.raises(StoreError, match="model_input"):
        open_model_input(store)
