"""The detector training pipeline on a tiny generated TXL-PBC-layout dataset, and its targets."""

import json

import numpy as np
import pytest
from PIL import Image

from wsi_screen.registry import DetectorCard
from wsi_screen.segmenters import UnetSegmenter
from wsi_screen.train.detector import DetectorTrainConfig, train_detector
from wsi_screen.train.fields import estimate_mpp, load_fields, negative_weights, wbc_targets

from .test_detect import _disc


def _field(root, split, name, rng, shape=(120, 160)):
    """Red cells 15 px across (0.5 µm/px) and two leukocytes, one cut by the left border."""
    img = np.full(shape + (3,), (235, 215, 215), np.uint8)
    rows = []
    for _ in range(12):
        cx, cy = rng.uniform(20, shape[1] - 20), rng.uniform(20, shape[0] - 20)
        img[_disc(shape, cx, cy, 7.5)] = (215, 150, 160)
        rows.append((1, cx, cy, 15, 15))
    for cx, cy in ((80, 60), (-6, 40)):
        img[_disc(shape, cx, cy, 12)] = (200, 180, 200)
        img[_disc(shape, cx, cy, 7)] = (95, 45, 150)
        x0, x1 = max(cx - 12, 0), cx + 12
        rows.append((0, (x0 + x1) / 2, cy, x1 - x0, 24))
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(root / "images" / split / f"{name}.jpg", quality=95)
    h, w = shape
    lines = [f"{c} {cx / w:.6f} {cy / h:.6f} {bw / w:.6f} {bh / h:.6f}" for c, cx, cy, bw, bh in rows]
    (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")


def test_a_cell_cut_by_the_field_border_stays_in_the_targets(tmp_path):
    _field(tmp_path, "train", "a", np.random.default_rng(0))
    (field,) = load_fields(tmp_path, "train")
    assert estimate_mpp([field])[0] == pytest.approx(0.5, rel=0.05)
    rgb = np.asarray(Image.open(field.image).convert("RGB"))
    cell, core = wbc_targets(rgb, field.wbc_boxes)
    assert cell[40, 0:5].all() and core[40, 0:3].any()  # the 6 px strip at the left border
    assert cell[60, 80] and core[60, 80] and not cell[5, 150]


def test_train_detector_writes_loadable_weights_with_val_metrics(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(4):
        _field(tmp_path / "data", "train", f"t{i}", rng)
    _field(tmp_path / "data", "val", "v0", rng)
    card = DetectorCard(arch="unet_mobilenetv2_050", mpp=0.5)
    top = train_detector(tmp_path / "data", tmp_path / "out", "unet-test", card, DetectorTrainConfig(crop_px=64, epochs=2, batch_size=2))
    assert set(top) >= {"epoch", "precision", "recall", "f1"} and 1 <= top["epoch"] <= 2
    seg = UnetSegmenter(str(tmp_path / "out" / "unet-test.pt"), "cpu")  # loads into a fresh U-Net
    assert seg.card.provenance["val_metrics"] == top and seg.mpp == 0.5
    assert json.loads((tmp_path / "out" / "unet-test.json").read_text())["task"] == "detector"
    assert not (tmp_path / "out" / "last.pt").exists()
    assert len(json.loads((tmp_path / "out" / "history.json").read_text())["history"]) == 2
    assert seg(np.full((64, 96, 3), 230, np.uint8)).shape == (2, 64, 96)


def test_red_cells_and_platelets_weigh_more_than_plasma_outside_the_leukocyte():
    """A red cell overlapping a leukocyte's box: its pixels outside the leukocyte mask carry the
    negative weight, the leukocyte and the plasma 1, a platelet the negative weight too."""
    shape = (60, 100)
    boxes = np.array([[0, 20, 10, 52, 42], [1, 46, 15, 68, 37], [2, 80, 40, 86, 46]], float)  # WBC, RBC, platelet
    leukocyte = _disc(shape, 36, 26, 16)
    w = negative_weights(shape, boxes, leukocyte, 4.0)
    assert w[26, 60] == 4.0 and w[43, 83] == 4.0  # red cell beside the leukocyte, platelet
    assert w[26, 48] == 1.0 and w[26, 36] == 1.0 and w[5, 5] == 1.0  # red-cell box inside the leukocyte, its centre, plasma
