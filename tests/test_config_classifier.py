"""The classify/train config sections: YAML mirrors the dataclass defaults; bad values are errors."""

from pathlib import Path

import pytest

from wsi_screen.config import ClassifyConfig, Config, TrainConfig, load_config
from wsi_screen.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_default_yaml_mirrors_dataclasses():
    assert load_config(CONFIGS / "default.yaml") == Config()


def test_training_configs_load():
    cpu, gpu = (load_config(CONFIGS / f"train_{k}.yaml").train for k in ("cpu", "gpu"))
    assert (cpu.arch, cpu.input_px, cpu.threads) == ("resnext_compact", 128, 1)
    assert (gpu.arch, gpu.input_px, gpu.per_class_per_epoch) == ("resnext50_32x4d", 400, 10000)  # the paper's balancing


def test_every_shipped_config_loads():
    """Product and classifier-training configs load as the main config, the detector pipelines'
    as theirs: unknown keys or out-of-range values raise ConfigError naming the file."""
    from wsi_screen.config import load_dataclass
    from wsi_screen.train.loso import LosoConfig

    paths = sorted([*CONFIGS.glob("*.yaml"), *CONFIGS.glob("recipes/*.yaml")])
    assert len(paths) >= 8
    for path in paths:
        load_dataclass(LosoConfig, path) if path.name.startswith("detector_") else load_config(path)


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (TrainConfig, {"input_px": 16}, "input_px"),
        (TrainConfig, {"scale_jitter": 0.6}, "scale_jitter"),
        (TrainConfig, {"holdout_frac": 0.0}, "holdout_frac"),
        (TrainConfig, {"brightness": 1.5}, "brightness"),
        (ClassifyConfig, {"device": "tpu"}, "device"),
        (ClassifyConfig, {"input_mpp": -0.1}, "input_mpp"),
    ],
)
def test_out_of_range(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs)


def test_unknown_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="train.epoch"):
        load_config(path)
