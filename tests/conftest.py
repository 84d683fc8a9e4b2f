"""Shared fixtures: the read-only ../shared/data (skipped with a reason when absent) and small
synthetic slides written by wsi_screen.synth (drawn cells, so they never need shared data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wsi_screen.synth import make_slide

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WSI_SCREEN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test naming what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (set WSI_SCREEN_SHARED_DATA or place ../shared beside the repo)")
    return path


def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared("slides").parent


@pytest.fixture(scope="session")
def drawn_slide(tmp_path_factory):
    """4000×3000 px at 0.2 µm/px, 30 drawn leukocytes; the session's workhorse fixture."""
    return make_slide(tmp_path_factory.mktemp("synth") / "drawn.tiff", seed=7)
