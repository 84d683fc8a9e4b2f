from pathlib import Path

import yaml

from wsi_screen.config import Config, load_config

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def test_default_yaml_mirrors_the_dataclass_defaults():
    assert yaml.safe_load(DEFAULT.read_text()) == Config().to_dict()
    assert load_config(DEFAULT) == Config()
