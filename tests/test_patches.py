"""Fixed-scale patches: the same field at any scan resolution, PIL's filter at torch's speed."""

import numpy as np
import pytest
from PIL import Image

from wsi_screen.config import PatchConfig
from wsi_screen.patches import extract_patches, patch_box
from wsi_screen.slide import open_slide
from wsi_screen.synth import write_pyramid


def _cell_field(mpp: float, size_um: float = 60.0) -> np.ndarray:
    """Pink plasma with a dark disc of 4 µm radius at the centre, drawn at `mpp` µm/px."""
    n = int(round(size_um / mpp))
    yy, xx = (np.mgrid[:n, :n] + 0.5) * mpp - size_um / 2
    rgb = np.full((n, n, 3), (235, 200, 210), np.uint8)
    rgb[np.hypot(xx, yy) <= 4.0] = (90, 40, 140)
    return rgb


@pytest.mark.parametrize("mpp", [0.1, 0.25])
def test_a_patch_shows_the_same_field_at_any_scan_resolution(tmp_path, mpp):
    """A 4 µm disc fills the same share of the 29 µm patch from a 100x and a 40x scan."""
    path = tmp_path / f"field_{mpp}.tiff"
    write_pyramid(path, _cell_field(mpp), mpp=mpp, tile=128, quality=95)
    cfg = PatchConfig()
    with open_slide(path) as slide:
        centre = slide.info.width / 2
        patch = extract_patches(slide, [(centre, centre)], cfg)[0]
    assert patch.shape == (cfg.size_px, cfg.size_px, 3)
    dark = (patch.astype(int).sum(-1) < 400).sum()
    expected = np.pi * (4.0 / cfg.mpp) ** 2  # px of the disc at the patch's µm/px
    assert dark == pytest.approx(expected, rel=0.05)


def test_patches_are_resized_as_pil_does_it(tmp_path):
    """Batched torch resizing gives PIL's bilinear resize of the same level-0 field, to a grey level."""
    path = tmp_path / "field.tiff"
    write_pyramid(path, _cell_field(0.1), mpp=0.1, tile=128, quality=95)
    cfg = PatchConfig()
    with open_slide(path) as slide:
        centres = [(300.0, 300.0), (280.4, 310.7), (40.0, 30.0)]  # the last one partly off the slide
        patches = extract_patches(slide, centres, cfg)
        for patch, (x, y) in zip(patches, centres):
            field = slide.read(patch_box(x, y, slide.info.mpp, cfg), slide.info.mpp)
            pil = np.asarray(Image.fromarray(field).resize((cfg.size_px, cfg.size_px), Image.Resampling.BILINEAR))
            assert np.abs(patch.astype(int) - pil).max() <= 1
        assert extract_patches(slide, [], cfg).shape == (0, cfg.size_px, cfg.size_px, 3)
