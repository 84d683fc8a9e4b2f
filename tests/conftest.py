"""Shared fixtures: the read-only ../shared/data (or $WSI_SCREEN_SHARED_DATA; skipped with a reason
when absent), small synthetic slides written by wsi_screen.synth (drawn cells, so they never need
shared data) and tiny generated cell datasets in the published layouts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsi_screen.classes import CLASS_CODES
from wsi_screen.synth import make_slide

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WSI_SCREEN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test naming what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (set WSI_SCREEN_SHARED_DATA or place ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared("slides").parent


@pytest.fixture(scope="session")
def drawn_slide(tmp_path_factory):
    """4000×3000 px at 0.2 µm/px, 30 drawn leukocytes; the session's workhorse fixture."""
    return make_slide(tmp_path_factory.mktemp("synth") / "drawn.tiff", seed=7)


@pytest.fixture(scope="session")
def shared_cells() -> Path:
    return shared("cells", "manifest.csv")


@pytest.fixture(scope="session")
def annotations_dat() -> Path:
    return shared("aml_cytomorphology_lmu", "annotations.dat")


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


@pytest.fixture(scope="session")
def demo_screened(tmp_path_factory) -> Path:
    """OUT/demo_smear of `wsi-screen screen --specimen-id SPEC-42` on the shipped demo slide, once
    per session (the screen and review tests share it); tests that change it work on a copy."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo_screen")
    demo = REPO / "wsi_screen" / "demo" / "demo_smear.tiff"
    run = subprocess.run(
        [sys.executable, "-m", "wsi_screen.cli", "screen", str(demo), "-o", str(out), "--specimen-id", "SPEC-42", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1].endswith("report.html")
    return out / "demo_smear"
