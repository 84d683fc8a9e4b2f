import subprocess
import sys

import numpy as np
import pytest
import zarr

from wsi_screen.config import PatchConfig
from wsi_screen.errors import StoreError
from wsi_screen.export.store import (
    create_store,
    detections_table,
    drop_model_input,
    open_model_input,
    open_patches,
    read_table,
    write_aoi,
    write_calls,
    write_columns,
    write_model_input,
    write_patches,
)
from wsi_screen.records import AoiMask, Box, Detection, Probabilities


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


def _aoi_store(tmp_path, mask):
    store = tmp_path / "cells.zarr"
    create_store(store, detections_table(_dets(3)), PatchConfig(size_px=32), {})
    write_aoi(store, AoiMask(mask, downsample=32.0), slide_mpp=0.25)
    return store


def test_aoi_reads_back_through_ome_zarr_py_with_valid_ngff_metadata(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader
    from ome_zarr_models.v04.image import Image

    mask = np.zeros((41, 63), bool)  # odd sides: the lower levels are padded, not cropped
    mask[10:30, 5:50] = True
    mask[33, 61] = True
    store = _aoi_store(tmp_path, mask)
    assert (store / "aoi" / "0" / "0" / "0").is_file() and not (store / "aoi" / "0" / "0.0").exists()
    node = next(n for n in Reader(parse_url(str(store / "aoi")))() if n.load(Multiscales))
    levels = [np.asarray(d) for d in node.data]
    assert np.array_equal(levels[0], mask.astype(np.uint8) * 255)  # `.` keys would read as zeros here
    assert levels[1].shape == (21, 32) and levels[2].shape == (11, 16)
    assert levels[1][5, 3] == 255 and levels[1][5, 2] == 128  # block (10-11, 4-5): half inside
    assert levels[1][16, 30] == 64 and levels[2][8, 15] == 16  # one pixel of a 2x2 / 4x4 block
    image = Image.from_zarr(zarr.open_group(str(store / "aoi"), mode="r"))  # validates NGFF 0.4
    transforms = [d.coordinateTransformations for d in image.ome_attributes.multiscales[0].datasets]
    for k, (scale, shift) in enumerate(transforms):
        assert scale.scale == [8.0 * 2**k] * 2 and shift.translation == [4.0 * 2**k] * 2


def test_every_array_reads_in_a_process_that_imports_only_zarr_and_imagecodecs(tmp_path):
    store = tmp_path / "cells.zarr"
    create_store(store, detections_table(_dets(3)), PatchConfig(size_px=32), {})
    write_patches(store, 0, np.full((3, 32, 32, 3), 120, np.uint8))
    write_columns(store, {"predicted": np.array(["BLA", "LYT", "NGS"]), "probabilities": np.eye(3, dtype=np.float32)})
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    write_aoi(store, AoiMask(mask, downsample=32.0), slide_mpp=0.25)
    script = (
        "import sys, zarr, imagecodecs.numcodecs; imagecodecs.numcodecs.register_codecs()\n"
        "root = zarr.open_group(sys.argv[1], mode='r')\n"
        "names = []\n"
        "def walk(g, prefix):\n"
        "    for name, a in g.arrays(): a[...]; names.append(prefix + name)\n"
        "    for name, sub in g.groups(): walk(sub, prefix + name + '/')\n"
        "walk(root, '')\n"
        "assert root['patches'][2].mean() > 100 and list(root['cells/predicted'][:]) == ['BLA', 'LYT', 'NGS']\n"
        "assert 'wsi_screen' not in sys.modules\n"
        "print(' '.join(sorted(names)))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(store)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    read = run.stdout.split()
    assert {"patches", "aoi/0", "aoi/1", "aoi/2", "cells/x", "cells/predicted", "cells/probabilities"} <= set(read)
    assert all(zarr.open_array(str(store / name), mode="r").metadata.dimension_separator == "/" for name in read)


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


def test_calls_keep_rejected_objects_marked_beside_the_leukocytes(tmp_path):
    store = tmp_path / "cells.zarr"
    create_store(store, detections_table(_dets(4)), PatchConfig(size_px=32), {})
    probs = np.full((4, 15), 0.02)
    probs[:, 7] = 0.72  # MYO everywhere: the classes say nothing about rejection
    calls = Probabilities(probs, np.array([0.1, 0.5, 0.51, 0.97]))
    write_calls(store, calls, calls.needs_review(0.5), "ab" * 32)
    table = read_table(store)
    assert list(table["rejected"]) == [False, False, True, True] and table["rejected"].dtype == bool
    assert list(table["predicted"]) == ["MYO"] * 4 and list(table["needs_review"]) == [False, False, True, True]
    assert table["p_reject"].to_numpy() == pytest.approx([0.1, 0.5, 0.51, 0.97])
