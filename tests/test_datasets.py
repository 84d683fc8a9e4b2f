"""Dataset layouts, lenient decoding and the physical field."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from wsi_screen.cell_images import CROP_MPP, LMU_MPP, load_canvas, load_table, read_manifest, to_canvas
from wsi_screen.classes import CLASS_CODES
from wsi_screen.errors import DatasetError


def test_lmu_layout(lmu_tree):
    t = load_table(lmu_tree)
    assert len(t) == 45 and set(t["label"]) == set(CLASS_CODES)
    assert str(lmu_tree / "BAS/BAS_0001.tiff") in set(t["file"]) and t["mpp"].eq(LMU_MPP).all() and LMU_MPP == 29 / 400
    assert load_canvas(t["file"].iloc[0], LMU_MPP, 29 / 400, 400, 29.0).shape == (400, 400, 3)


def test_lmu_absent_images_are_dropped(lmu_tree, tmp_path):
    (tmp_path / "BAS").mkdir()
    Image.open(lmu_tree / "BAS/BAS_0001.tiff").save(tmp_path / "BAS/BAS_0001.tiff")
    (tmp_path / "annotations.dat").write_text("BAS/BAS_0001.tiff BAS nan nan\nBAS/BAS_0002.tiff BAS nan nan\n")
    assert load_table(tmp_path)["file"].tolist() == [str(tmp_path / "BAS/BAS_0001.tiff")]


def test_folder_tree_and_unknown_class(folder_tree, tmp_path):
    t = load_table(folder_tree)
    assert len(t) == 64 and "PLT" in set(t["label"]) and t["mpp"].isna().all()
    (tmp_path / "XYZ").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "XYZ" / "a.png")
    with pytest.raises(DatasetError, match="XYZ"):
        load_table(tmp_path)


def test_truncated_jpeg_is_decoded_leniently(tmp_path, caplog):
    path = tmp_path / "t.jpg"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:-10])
    img = load_canvas(path, float("nan"), 29 / 64, 64, 29.0)
    assert img.shape == (64, 64, 3) and "truncated" in caplog.text and "t.jpg" in caplog.text
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="bad.jpg"):
        load_canvas(tmp_path / "bad.jpg", float("nan"), 29 / 64, 64, 29.0)


def test_canvas_keeps_physical_size():
    """A 10 µm disk in a 0.1 µm/px crop is 44 px wide at 29/128 µm/px; a 400 px Matek image
    (29 µm) fills exactly 128 px."""
    size = 360
    yy, xx = np.mgrid[:size, :size]
    img = np.where(((yy - 180) ** 2 + (xx - 180) ** 2 < 50**2)[..., None], 0, 255).astype(np.uint8).repeat(3, 2)
    canvas = to_canvas(img, CROP_MPP, 29 / 128, 128, 29.0)
    diameter = (canvas[64, :, 0] < 128).sum()
    assert canvas.shape == (128, 128, 3) and abs(diameter - 100 * 0.1 / (29 / 128)) <= 2
    matek = np.zeros((400, 400, 3), np.uint8)
    matek[:, :200] = 255
    c = to_canvas(matek, LMU_MPP, 29 / 128, 160, 29.0)  # padded by reflection to the canvas
    assert c.shape == (160, 160, 3) and abs(int((c[80, 16:144, 0] > 128).sum()) - 64) <= 1


@pytest.mark.parametrize("src_mpp", [CROP_MPP, float("nan")])
def test_reduced_jpeg_decode_gives_the_same_canvas(tmp_path, src_mpp):
    """load_canvas decodes a 360 px JPEG at 1/2 scale for a 128 px canvas: same field, same cell."""
    yy, xx = np.mgrid[:360, :360]
    img = np.stack([120 + yy // 6, 200 - xx // 5, np.where((yy - 180) ** 2 + (xx - 170) ** 2 < 60**2, 60, 230)], -1).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "c.jpg", quality=95)
    full = to_canvas(np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB")), src_mpp, 29 / 128, 128, 29.0)
    fast = load_canvas(tmp_path / "c.jpg", src_mpp, 29 / 128, 128, 29.0)
    assert fast.shape == full.shape == (128, 128, 3)
    assert np.abs(fast.astype(int) - full).mean() < 2 and ((fast[..., 2] < 128).sum() - (full[..., 2] < 128).sum()) ** 2 < 40**2


def test_shared_manifest(shared_cells):
    t = read_manifest(shared_cells)
    assert len(t) > 9000 and t["mpp"].eq(CROP_MPP).all()
    assert set(t["label"]) - set(CLASS_CODES) == {"PLT"}
    assert (t.loc[t["source"] == "pbc", "patient"] == "").all()
    assert t.loc[t["source"] == "deepapl", "patient"].str.startswith("Patient_").all()
    sample = t.groupby("label").head(1)
    for f, mpp in zip(sample["file"], sample["mpp"]):
        assert load_canvas(f, mpp, 29 / 128, 160, 29.0).shape == (160, 160, 3)


def test_missing_manifest(tmp_path):
    with pytest.raises(DatasetError, match="manifest"):
        read_manifest(tmp_path / "manifest.csv")
    pd.DataFrame({"file": ["a.jpg"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DatasetError, match="class"):
        read_manifest(tmp_path / "m.csv")
