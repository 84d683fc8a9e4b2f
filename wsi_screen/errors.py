"""Expected failures. The CLI turns each into one line naming the file and the problem;
anything else is a bug and keeps its traceback."""

from __future__ import annotations

from pathlib import Path


class WsiScreenError(Exception):
    """Base of every expected failure."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class SlideError(WsiScreenError):
    """The input is missing, not a slide, corrupt or in a format we cannot read."""


class CannotReadSpacing(SlideError):
    """The slide has no µm/px and none was given with --mpp."""


class ResolutionTooCoarse(SlideError):
    """The finest level is too coarse for leukocyte morphology."""


class AoiError(WsiScreenError):
    """The area of interest is empty or its file is unusable."""


class ConfigError(WsiScreenError):
    """Unknown keys, wrong types or out-of-range values in a config."""


class ModelError(WsiScreenError):
    """A model file is missing, corrupt or does not match its card."""


class DatasetError(WsiScreenError):
    """A training/evaluation dataset is missing or malformed."""


class StoreError(WsiScreenError):
    """A cells.zarr store is incomplete or corrupt."""
