"""Context augmentation: real crops' leukocytes laid in another source's surroundings keep their
own cell and rim, and nothing of their own crop lies beyond 2 µm of the cell."""

import numpy as np
import pandas as pd
import pytest

from wsi_screen.cell_images import CROP_MPP, CellDataset, load_canvas, read_image
from wsi_screen.synth_cells import MARGIN_UM, crop_alpha, lay_on
from wsi_screen.train.context import OnOtherBackgrounds, alpha_cache

from .conftest import shared

CANVAS_MPP, CANVAS_PX, FIELD_UM = 0.3, 120, 29.0


@pytest.fixture(scope="module")
def crops():
    cells = shared("cells")
    manifest = pd.read_csv(cells / "manifest.csv")
    picked = pd.concat([manifest[manifest["class"] == c].head(2) for c in ("NGS", "LYT", "MYO")])
    return [cells / f for f in picked["file"]], picked["class"].tolist()


def test_lay_on_keeps_the_cell_inside_and_the_background_outside(crops):
    rgb = read_image(crops[0][0])
    alpha = crop_alpha(rgb)
    assert alpha is not None and 40 <= (alpha == 1).sum() * CROP_MPP**2 <= 500  # a leukocyte's area, µm²
    background = np.full_like(rgb, (230, 200, 190))
    out = lay_on(rgb, alpha, background)
    outside = alpha == 0
    assert np.abs(out[outside].astype(int) - background[outside]).max() <= 1
    inside = alpha == 1  # the cell in its own optical density, shown on the background's glass
    ratio = out[inside].astype(float).mean(0) / rgb[inside].astype(float).mean(0)
    assert ratio == pytest.approx(background[0, 0] / np.median(rgb[rgb[..., 1] >= np.percentile(rgb[..., 1], 95)], 0), rel=0.05)


def test_relaid_cells_bring_nothing_of_their_crop_past_2_um(crops, tmp_path):
    """Each cell on another source's crop: beyond 2 µm of the cell every pixel is that crop's,
    whose own cell is erased to glass (brighter, never darker)."""
    from scipy import ndimage as ndi

    files, labels = crops
    n = len(files)
    table = pd.DataFrame({"file": [str(f) for f in files], "label": labels, "mpp": CROP_MPP})
    raw = CellDataset(table, ("NGS", "LYT", "MYO"), None, CANVAS_MPP, CANVAS_PX, FIELD_UM)
    alphas = alpha_cache(raw, np.arange(n), tmp_path / "alpha.npy")
    cut = np.flatnonzero(alphas.reshape(n, -1).max(1) == 255)
    assert len(cut) >= n - 1  # the cut fails on at most one crop
    assert (np.asarray(alpha_cache(raw, np.arange(n), tmp_path / "alpha.npy")) == alphas).all()  # read back, same

    canvases = np.stack([load_canvas(f, CROP_MPP, CANVAS_MPP, CANVAS_PX, FIELD_UM) for f in files])
    data = CellDataset(table, ("NGS", "LYT", "MYO"), lambda canvas: canvas, CANVAS_MPP, CANVAS_PX, FIELD_UM, cache=canvases)
    sources = np.array(["lab_a", "lab_b"] * (n // 2))
    relaid = OnOtherBackgrounds(data, alphas, cut, sources, prob=1.0)
    for i in cut:
        out, label = relaid[i]
        assert label == data.targets[i]
        far = ndi.distance_transform_edt(alphas[i] < 255) * CANVAS_MPP > MARGIN_UM + 0.5
        lent = []
        for j in cut[sources[cut] != sources[i]]:
            own = far & (alphas[j] == 0)
            # the same up to rounding and the OD blend's clip of channels brighter than the glass
            if np.percentile(np.abs(out[own].astype(int) - canvases[j][own]).max(-1), 99) <= 6:
                erased = far & (alphas[j] == 255)
                darker = (canvases[j][erased].astype(int) - out[erased]).max(-1)
                lent.append(not erased.any() or np.percentile(darker, 99) <= 6)  # its cell erased: never darker
        assert lent == [True]  # exactly one crop of the other source lent the surroundings
        assert np.abs(out.astype(int) - canvases[i].astype(int)).max(-1)[alphas[i] == 255].mean() < 40  # the cell stays
    never = OnOtherBackgrounds(data, alphas, cut, sources, prob=0.0)
    assert all((never[i][0] == canvases[i]).all() for i in range(n))


def test_context_needs_a_cache_and_cells_to_lend_surroundings():
    table = pd.DataFrame({"file": ["a", "b"], "label": ["NGS", "NGS"], "mpp": CROP_MPP})
    alphas = np.zeros((2, CANVAS_PX, CANVAS_PX), np.uint8)
    uncached = CellDataset(table, ("NGS",), None, CANVAS_MPP, CANVAS_PX, FIELD_UM)
    with pytest.raises(ValueError, match="cached"):
        OnOtherBackgrounds(uncached, alphas, np.array([0, 1]), np.array(["x", "y"]), 0.5)
    cached = CellDataset(table, ("NGS",), None, CANVAS_MPP, CANVAS_PX, FIELD_UM, cache=np.zeros((2, CANVAS_PX, CANVAS_PX, 3), np.uint8))
    with pytest.raises(ValueError, match="two cells"):
        OnOtherBackgrounds(cached, alphas, np.array([0]), np.array(["x", "y"]), 0.5)
