from pathlib import Path

import pytest
import yaml

from wsi_screen.config import Config, load_config
from wsi_screen.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_default_yaml_mirrors_shipped_defaults():
    assert yaml.safe_load((REPO / "configs" / "default.yaml").read_text()) == Config().to_dict()
    assert load_config(REPO / "configs" / "default.yaml") == Config()


def test_partial_file_overrides_one_value(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detect:\n  threshold: 0.7\n")
    cfg = load_config(path)
    assert cfg.detect.threshold == 0.7
    assert cfg.sha256() != Config().sha256()
    assert cfg.tiling == Config().tiling


def test_hash_ignores_the_cluster_and_training_but_not_results(tmp_path):
    base = Config()
    assert base.replace("dask", workers=7, threads_per_worker=2).sha256() == base.sha256()
    assert base.replace("train", epochs=3).sha256() == base.sha256()
    assert base.replace("train", epochs=3).sha256(sections=None) != base.sha256(sections=None)  # training provenance keeps it
    assert base.replace("aggregate", blast_min_cells=3).sha256() != base.sha256()
    for dead in ("detect:\n  batch_size: 8\n", "patches:\n  compression_level: 5\n"):  # keys nothing read: removed
        (tmp_path / "old.yaml").write_text(dead)
        with pytest.raises(ConfigError, match="unknown key"):
            load_config(tmp_path / "old.yaml")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("detect:\n  treshold: 0.7\n", "detect.treshold"),
        ("colour: 1\n", "colour"),
        ("detect:\n  threshold: 1.5\n", "detect.threshold"),
        ("detect:\n  threshold: high\n", "detect.threshold"),
        ("tiling:\n  halo_um: 10\n", "halo_um"),
        ("detect:\n  mpp: 0.5\n", "detect.mpp"),  # the detector's µm/px is its card's
        ("detect: [1, 2]\n", "must be a mapping"),
        ("train:\n  drawn_twice: [PMO, blast]\n", "train.drawn_twice"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
