"""What every output records about how it was made: software versions and model checksums."""

from __future__ import annotations

import platform
from importlib.metadata import version
from pathlib import Path

from . import __version__
from .config import Config


def software_versions() -> dict:
    packages = ("torch", "torchvision", "segmentation-models-pytorch", "dask", "zarr", "openslide-python")
    return {"wsi_screen": __version__, "python": platform.python_version(), **{name: version(name) for name in packages}}


def detector_sha256(config: Config) -> str | None:
    """Checksum of the configured detector's weights; None for the classical (weightless) detector."""
    from .registry import sha256
    from .segmenters import resolve_weights

    return sha256(resolve_weights(config.detect.model)) if config.detect.method == "unet" else None


def model_provenance(config: Config, classifier_path: Path, card) -> dict:
    """report.json's "model": the detector and the classifier that made the result, by checksum."""
    from .registry import sha256

    return {
        "detector": {"name": config.detect.model, "method": config.detect.method, "sha256": detector_sha256(config)},
        "classifier": {"path": classifier_path.name, "arch": card.arch, "sha256": sha256(classifier_path), "temperature": card.temperature},
    }
