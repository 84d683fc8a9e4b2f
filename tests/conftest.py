"""Shared fixtures: the read-only ../shared/data (skipped with a reason when absent) and small
synthetic slides written by wsi_screen.synth (drawn cells, so they never need shared data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wsi_screen.synth import make_slide


def shared_data() -> Path:
    return Path(os.environ.get("WSI_SCREEN_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data()
    if not (path / "slides").is_dir():
        pytest.skip(f"shared data not found at {path} (set WSI_SCREEN_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def drawn_slide(tmp_path_factory):
    """4000×3000 px at 0.2 µm/px, 30 drawn leukocytes; the session's workhorse fixture."""
    return make_slide(tmp_path_factory.mktemp("synth") / "drawn.tiff", seed=7)
