"""Leave-one-source-out end to end on a tiny generated two-source dataset (1 epoch): the left-out
source never trains or picks the threshold, is tested on all its fields, a rerun resumes, and a
retest keeps the trained model."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from wsi_screen.config import load_dataclass
from wsi_screen.errors import ConfigError
from wsi_screen.registry import DetectorCard, default_input_px, load_card
from wsi_screen.train.detector import DetectorTrainConfig
from wsi_screen.train.fields import load_fields, source_of
from wsi_screen.train.loso import LosoConfig, run_one, summarize_loso

from .test_train_detector import _field

REPO = Path(__file__).resolve().parents[1]


def test_loso_config_file_is_the_shipped_recipe_on_both_cores():
    cfg = load_dataclass(LosoConfig, REPO / "configs" / "detector_loso.yaml")
    shipped = load_card("default", "detector").provenance["train_config"]
    assert cfg.train.epochs == shipped["epochs"] == 20 and cfg.train.threads == 2 and cfg.fields_per_source == 0
    assert (cfg.train.negative_weight, list(cfg.train.gamma)) == (shipped["negative_weight"], shipped["gamma"])
    assert cfg.train.crop_px == 0 and default_input_px(load_card("default", "detector").arch) == 128  # the shipped U-Net's crop


def test_loso_config_rejects_unknown_keys(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="train.epoch"):
        load_dataclass(LosoConfig, tmp_path / "c.yaml")


def test_leave_one_source_out_on_tiny_data(tmp_path):
    rng = np.random.default_rng(3)
    data = tmp_path / "data"
    for split in ("train", "val"):
        for i in range(3):
            _field(data, split, f"p{split}{i}", rng, shape=(363, 360))  # PBC's field size
            _field(data, split, f"b{split}{i}", rng, shape=(416, 416))  # BCD's
    card = DetectorCard(arch="unet_mobilenetv2_050", mpp=0.5)
    cfg = LosoConfig(train=DetectorTrainConfig(crop_px=64, epochs=1, batch_size=2), thresholds=(0.4, 0.5), fields_per_source=2)
    result = run_one(data, "pbc", tmp_path / "pbc", card, cfg)
    assert (result["train_fields"], result["val_fields"], result["test_fields"]) == (2, 2, 4)
    trained_on = load_fields(tmp_path / "pbc" / "data", "train") + load_fields(tmp_path / "pbc" / "data", "val")
    assert {source_of(f) for f in trained_on} == {"bcd"}  # the left-out source never trains or picks the threshold
    assert result["threshold"] in (0.4, 0.5) and set(result["val_f1_by_threshold"]) == {"0.4", "0.5"}
    assert result["test_mpp"] == {"pbc": pytest.approx(0.5, rel=0.05)}  # one µm/px for the source
    assert result["figures"]["tp"] + result["figures"]["fn"] == 8  # 2 leukocytes in each of 4 test fields
    weights = tmp_path / "pbc" / "model" / "unet-loso-pbc.pt"
    stamp = weights.stat().st_mtime_ns
    assert run_one(data, "pbc", tmp_path / "pbc", card, cfg) == json.loads((tmp_path / "pbc" / "result.json").read_text())
    assert weights.stat().st_mtime_ns == stamp  # resumed: not retrained
    stale = tmp_path / "pbc" / "gallery" / "false_positives_09.png"
    stale.write_bytes(b"")
    retested = run_one(data, "pbc", tmp_path / "pbc", card, replace(cfg, thresholds=(0.6,)), retest=True)
    assert weights.stat().st_mtime_ns == stamp and not stale.exists()  # tested again, not retrained; old sheets gone
    assert retested["threshold"] == 0.6 and retested["best_epoch"] == result["best_epoch"]
    assert json.loads((tmp_path / "pbc" / "result.json").read_text())["threshold"] == 0.6
    summary = summarize_loso([result])
    assert summary["min_recall"] == result["figures"]["recall"] and set(summary["per_source"]) == {"pbc"}
