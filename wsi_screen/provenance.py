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


def model_checksums(config: Config) -> dict:
    """run.json's "models": the configured classifier's and detector's weights checksums (None: the
    classical detector has none)."""
    from .checksum import sha256
    from .model_files import resolve_model

    detector = sha256(resolve_model(config.detect.model, "detector")) if config.detect.method == "unet" else None
    return {"classifier": sha256(resolve_model(config.classify.model, "classifier")), "detector": detector}


def model_provenance(config: Config, classifier_path: Path, card, detector_precision: str | None, classifier_precision: str) -> dict:
    """report.json's "model": the detector and the classifier that made the result, by name and
    checksum, and the arithmetic each ran in (a call can differ between bfloat16 and float32)."""
    from .checksum import sha256
    from .model_files import resolve_model

    detector = {"name": "classical", "method": "classical", "sha256": None, "precision": None}
    if config.detect.method == "unet":
        path = resolve_model(config.detect.model, "detector")
        detector = {"name": path.stem, "method": "unet", "sha256": sha256(path), "precision": detector_precision}
    classifier = {
        "path": classifier_path.name,
        "arch": card.arch,
        "sha256": sha256(classifier_path),
        "temperature": card.temperature,
        "precision": classifier_precision,
    }
    return {"detector": detector, "classifier": classifier}
