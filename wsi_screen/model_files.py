"""Which weights file a model name means, and its checksum: torch-free, so input checks,
provenance and a batch with nothing left to do never import torch (seconds per process)."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODELS = {"classifier": "classifier", "detector": "unet-wbc"}  # shipped weights per task
DEFAULT_WEIGHTS = WEIGHTS_DIR / f"{DEFAULT_MODELS['classifier']}.pt"


def resolve_model(name_or_path: str | Path | None, task: str) -> Path:
    """The weights file of "default" (or None: the shipped model of `task`), of a shipped name
    (wsi_screen/weights/<name>.pt) or of a path; a ModelError naming the file when there is none."""
    spec = DEFAULT_MODELS[task] if name_or_path is None or str(name_or_path) == "default" else str(name_or_path)
    path = Path(spec)
    if path.suffix != ".pt" and path.parent == Path("."):
        path = WEIGHTS_DIR / f"{spec}.pt"
    if not path.is_file():
        raise ModelError("model file not found", path)
    return path
