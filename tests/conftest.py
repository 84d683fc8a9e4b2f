"""Shared fixtures: tiny generated cell datasets in the published layouts, and the real shared data
(`<repo root>/../shared/data`, or $WSI_SCREEN_SHARED_DATA), skipped with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsi_screen.classes import CLASS_CODES

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # tiny models: intra-op threads only add contention on shared 2-core machines


def shared_data() -> Path:
    return Path(os.environ.get("WSI_SCREEN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_cells() -> Path:
    path = shared_data() / "cells" / "manifest.csv"
    if not path.is_file():
        pytest.skip(f"shared cell crops absent ({path}); set WSI_SCREEN_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def annotations_dat() -> Path:
    path = shared_data() / "aml_cytomorphology_lmu" / "annotations.dat"
    if not path.is_file():
        pytest.skip(f"real annotations.dat absent ({path}); set WSI_SCREEN_SHARED_DATA")
    return path


def cell_image(code: str, size: int, seed: int) -> np.ndarray:
    """A pale background with a class-coloured disk: learnable, and the colour tells the class."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 235, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    hue = CLASS_CODES.index(code) / len(CLASS_CODES) if code in CLASS_CODES else 0.99
    img[disk] = (np.array([np.sin(6.28 * hue), np.sin(6.28 * hue + 2), np.sin(6.28 * hue + 4)]) * 100 + 120).astype(np.uint8)
    return np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def lmu_tree(tmp_path_factory) -> Path:
    """AML-Cytomorphology_LMU layout: CLASS/CLASS_NNNN.tiff + annotations.dat, 3 images per class."""
    root = tmp_path_factory.mktemp("lmu")
    lines = []
    for code in CLASS_CODES:
        (root / code).mkdir()
        for i in range(1, 4):
            name = f"{code}/{code}_{i:04d}.tiff"
            Image.fromarray(cell_image(code, 400, i)).save(root / name)
            lines.append(f"{name} {code} nan nan")
    (root / "annotations.dat").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def folder_tree(tmp_path_factory) -> Path:
    """Folder-per-class PNGs (with a PLT reject class), 4 per class, 100 px spanning the field."""
    root = tmp_path_factory.mktemp("tree")
    for code in CLASS_CODES + ("PLT",):
        (root / code).mkdir()
        for i in range(4):
            Image.fromarray(cell_image(code, 100, i)).save(root / code / f"{code}_{i}.png")
    return root
