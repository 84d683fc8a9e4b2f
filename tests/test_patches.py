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


def test_the_classifier_input_is_one_resampling_of_the_slide(tmp_path):
    """At 0.25 µm/px a 29 µm field is 116 px: the stored classifier input is resized from those
    pixels once (as training resamples each crop file once), not from the 400 px patch made of them."""
    from wsi_screen.export.store import create_store, detections_table, open_model_input, open_patches
    from wsi_screen.parallel import patch_task
    from wsi_screen.patches import read_fields, resize_patches

    from .test_store import _dets

    path = tmp_path / "field.tiff"
    write_pyramid(path, _cell_field(0.25), mpp=0.25, tile=128, quality=95)
    cfg, px = PatchConfig(), 112
    store = tmp_path / "cells.zarr"
    create_store(store, detections_table(_dets(2)), cfg, {}, px, 2)
    centres = [(120.0, 120.0), (118.3, 121.6)]
    outline = lambda x, y: ((x - 16, y - 16), (x + 16, y - 16), (x + 16, y + 16), (x - 16, y + 16))  # noqa: E731 - the 4 µm disc
    patch_task((0, tuple((x, y, outline(x, y)) for x, y in centres)), str(path), None, 1.0, str(store), cfg, px)
    with open_slide(path) as slide:
        fields = read_fields(slide, centres, cfg)
    assert fields.shape == (2, 116, 116, 3)
    inputs = np.asarray(open_model_input(store))
    assert np.array_equal(inputs, resize_patches(fields, px))
    stored = np.asarray(open_patches(store)).astype(int)  # the review copy, JPEG-compressed
    assert np.abs(stored - resize_patches(fields, cfg.size_px)).mean() < 2
    twice = resize_patches(resize_patches(fields, cfg.size_px), px)
    assert np.abs(inputs.astype(int) - twice).max() > 3  # the double resampling blurs the disc's rim
