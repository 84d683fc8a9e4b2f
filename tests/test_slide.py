import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from wsi_screen.errors import CannotReadSpacing, ResolutionTooCoarse, SlideError
from wsi_screen.records import Box
from wsi_screen.slide import check_slide, open_slide
from wsi_screen.synth import write_pyramid


def _smooth_rgb(h: int, w: int) -> np.ndarray:
    """A gradient with blobs: smooth enough that reads at different levels must agree."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    r = 128 + 100 * np.sin(xx / 90.0)
    g = 128 + 100 * np.cos(yy / 70.0)
    b = 128 + 100 * np.sin((xx + yy) / 150.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    path = tmp_path_factory.mktemp("pyr") / "smooth.tiff"
    rgb = _smooth_rgb(1500, 2000)
    assert write_pyramid(path, rgb, mpp=0.2, tile=128, quality=95) == 4
    return path, rgb


@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_pyramid_opens_with_both_backends_and_mpp(pyramid, backend):
    path, rgb = pyramid
    with open_slide(path, backend=backend) as slide:
        info = slide.info
        assert (info.backend, info.width, info.height) == (backend, 2000, 1500)
        assert info.mpp == pytest.approx(0.2, rel=1e-6)
        assert info.mpp_source == ("openslide" if backend == "openslide" else "tiff-resolution")
        assert info.level_dimensions == ((2000, 1500), (1000, 750), (500, 375), (250, 188))  # PIL reduce rounds up
        region = slide.read(Box(300, 200, 556, 456), 0.2)
        assert region.shape == (256, 256, 3) and region.dtype == np.uint8
        assert np.abs(region.astype(int) - rgb[200:456, 300:556]).mean() < 3  # JPEG q95


@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_same_bounds_agree_at_every_level(pyramid, backend):
    path, _ = pyramid
    box = Box(411, 333, 1611, 1233)  # not aligned to tiles or levels
    with open_slide(path, backend=backend) as slide:
        reads = {mpp: slide.read(box, mpp) for mpp in (0.2, 0.4, 0.8, 1.6)}
        assert {slide.best_level(m / 0.2) for m in reads} == {0, 1, 2, 3}
        reference = np.asarray(Image.fromarray(reads[1.6]).resize((150, 112), Image.Resampling.BILINEAR)).astype(int)
        for mpp, pixels in reads.items():
            assert pixels.shape == (round(900 * 0.2 / mpp), round(1200 * 0.2 / mpp), 3)
            small = np.asarray(Image.fromarray(pixels).resize((150, 112), Image.Resampling.BILINEAR)).astype(int)
            assert np.abs(small - reference).mean() < 3, mpp


def test_read_pads_outside_with_white(pyramid):
    path, rgb = pyramid
    with open_slide(path) as slide:
        region = slide.read(Box(-100, -50, 100, 150), 0.2)
        assert region.shape == (200, 200, 3)
        assert (region[:50] == 255).all() and (region[:, :100] == 255).all()
        assert np.abs(region[50:, 100:].astype(int) - rgb[:150, :100]).mean() < 3
        assert (slide.read(Box(5000, 5000, 5100, 5100), 0.4) == 255).all()


def test_openslide_reader_flattens_what_lies_outside_the_scan(pyramid):
    """OpenSlide returns RGBA, transparent where it has no scan: the reader drops alpha in PIL when
    every pixel is opaque (nearly every read) and blends onto white glass otherwise."""
    from wsi_screen.readers import OpenSlideReader

    path, rgb = pyramid
    reader = OpenSlideReader(path)
    inside = reader.read(0, 300, 200, 256, 256)
    assert inside.shape == (256, 256, 3) and inside.dtype == np.uint8 and inside.flags.c_contiguous
    assert np.abs(inside.astype(int) - rgb[200:456, 300:556]).mean() < 3
    across = reader.read(0, 1900, 1400, 200, 200)  # the slide ends at 2000 x 1500
    assert (across[100:] == 255).all() and (across[:, 100:] == 255).all()
    assert np.array_equal(across[:100, :100], reader.read(0, 1900, 1400, 100, 100))
    reader.close()


def test_thumbnail_size_and_pickle_reopens_lazily(pyramid):
    path, _ = pyramid
    slide = open_slide(path)
    thumb = slide.thumbnail(8.0)
    assert thumb.shape == (38, 50, 3)
    clone = pickle.loads(pickle.dumps(slide))
    assert clone._reader is None and clone.info == slide.info
    assert np.array_equal(clone.thumbnail(8.0), thumb)
    slide.close()
    clone.close()


def test_resolution_limit_and_override(pyramid):
    path, _ = pyramid
    with pytest.raises(ResolutionTooCoarse, match="0.2 µm/px.*coarser than the 0.1 µm/px"):
        open_slide(path, max_mpp=0.1)
    with open_slide(path, mpp=0.25) as slide:  # --mpp always wins; 0.25 itself is allowed
        assert (slide.info.mpp, slide.info.mpp_source) == (0.25, "override")
    with pytest.raises(ResolutionTooCoarse):
        open_slide(path, mpp=0.26)


def test_ome_tiff_physical_size(tmp_path):
    path = tmp_path / "field.ome.tif"
    rgb = _smooth_rgb(600, 800)
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(rgb, tile=(128, 128), subifds=1, metadata={"axes": "YXS", "PhysicalSizeX": 0.125, "PhysicalSizeY": 0.125})
        tif.write(rgb[::2, ::2], tile=(128, 128), subfiletype=1)
    with open_slide(path) as slide:
        assert (slide.info.backend, slide.info.mpp, slide.info.mpp_source) == ("tifffile", 0.125, "ome-xml")
        assert slide.info.level_dimensions == ((800, 600), (400, 300))
        assert np.abs(slide.read(Box(0, 0, 800, 600), 0.25).astype(int) - rgb[::2, ::2]).mean() < 2


def test_plain_images_need_mpp(tmp_path):
    rgba = np.dstack([_smooth_rgb(100, 120), np.full((100, 120), 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    path = tmp_path / "field.png"
    Image.fromarray(rgba).save(path, dpi=(300, 300))  # a print resolution, not a scan one
    with pytest.raises(CannotReadSpacing, match="field.png.*pass --mpp"):
        open_slide(path)
    with open_slide(path, mpp=0.1) as slide:
        assert (slide.info.backend, slide.info.width, slide.info.height) == ("image", 120, 100)
        pixels = slide.read(Box(0, 0, 120, 100), 0.1)
        assert (pixels[:10, :10] == 255).all()  # transparent flattened on white
        assert np.array_equal(pixels[50:, 50:], rgba[50:, 50:, :3])


def test_corrupt_tile_fails_only_its_region(tmp_path):
    path = tmp_path / "corrupt.tiff"
    write_pyramid(path, _smooth_rgb(512, 512), mpp=0.2, tile=128)
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[5], tif.pages[0].databytecounts[5]  # tile row 1, col 1
    with open(path, "r+b") as f:
        f.seek(offset + count // 3)
        f.write(bytes(count // 3))
    for backend in ("openslide", "tifffile"):
        with open_slide(path, backend=backend) as slide:
            with pytest.raises(SlideError, match="corrupt.tiff: cannot read"):
                slide.read(Box(140, 140, 240, 240), 0.2)
            assert slide.read(Box(300, 300, 400, 400), 0.2).shape == (100, 100, 3)  # handle still usable


def test_a_tiff_cut_short_is_one_clear_error(tmp_path, capsys):
    """A copy that stopped early still parses (tifffile logs each broken tag); it must fail when
    opened, in one line, not later with a decoder's KeyError for a missing tile."""
    whole = tmp_path / "whole.tiff"
    write_pyramid(whole, _smooth_rgb(512, 512), mpp=0.2, tile=128)
    cut = tmp_path / "cut.tiff"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(SlideError, match="cut.tiff: truncated or corrupt TIFF") as exc:
        open_slide(cut, backend="tifffile")
    assert "\n" not in str(exc.value) and "tifffile" not in capsys.readouterr().err
    with open_slide(whole, backend="tifffile") as slide:
        assert slide.read(Box(0, 0, 512, 512), 0.2).shape == (512, 512, 3)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.svs", None, "file not found"),
        ("fake.svs", b"this is a text file\n" * 20, "not a readable .svs slide"),
        ("notes.txt", b"hello", "unsupported file type '.txt'"),
        ("broken.tiff", b"II*\x00" + bytes(40), "not a readable TIFF"),
        ("broken.png", b"\x89PNG\r\n\x1a\n" + bytes(30), "not a readable image"),
    ],
)
def test_bad_inputs_are_one_line_slide_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SlideError, match=message) as exc:
        open_slide(path, mpp=0.1)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(SlideError, match="is a directory"):
        open_slide(tmp_path)


def test_check_slide_does_not_import_torch(pyramid):
    path, _ = pyramid
    code = (
        "import sys; from wsi_screen.slide import check_slide; "
        f"info = check_slide({str(path)!r}); assert info.mpp == 0.2; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr


# real scanner files from ../shared/data/slides (tissue at ~0.5 µm/px)


def test_real_aperio_svs(data_dir):
    path = data_dir / "slides" / "aperio-cmu-1-small-region.svs"
    with pytest.raises(ResolutionTooCoarse, match="0.499 µm/px"):
        check_slide(path)
    with open_slide(path, max_mpp=1.0) as slide:
        assert (slide.info.width, slide.info.height, slide.info.mpp, slide.info.mpp_source) == (2220, 2967, 0.499, "openslide")
        region = slide.read(Box(1000, 1000, 1200, 1200), 0.998)
        assert region.shape == (100, 100, 3) and region.std() > 5  # tissue, not blank


def test_real_jpeg2000_svs_has_no_spacing(data_dir):
    path = data_dir / "slides" / "aperio-tcga-2level.svs"
    with pytest.raises(CannotReadSpacing, match="aperio-tcga-2level.svs.*pass --mpp"):
        open_slide(path)
    with open_slide(path, mpp=0.25) as slide:
        assert slide.info.level_dimensions == ((4443, 3567), (2221, 1783))
        assert slide.best_level(2.0) == 1
        fine = slide.read(Box(2000, 1500, 2400, 1900), 0.5)
        coarse = slide.read(Box(2000, 1500, 2400, 1900), 1.0)
        small = np.asarray(Image.fromarray(fine).resize((100, 100), Image.Resampling.BILINEAR)).astype(int)
        assert np.abs(small - np.asarray(Image.fromarray(coarse).resize((100, 100))).astype(int)).mean() < 6


def test_real_tiny_svs_pads_border(data_dir):
    with open_slide(data_dir / "slides" / "aperio-small-16px.svs", max_mpp=1.0) as slide:
        region = slide.read(Box(-8, -8, 24, 24), 0.499)
        assert region.shape == (32, 32, 3)
        assert (region[:8] == 255).all() and region[8:24, 8:24].std() > 0


def test_real_generic_tiff_72dpi(data_dir):
    path = data_dir / "slides" / "generic-tiled-boxes.tiff"
    with pytest.raises(ResolutionTooCoarse, match="353 µm/px"):  # 72 dpi in its tags
        open_slide(path)
    for backend in ("openslide", "tifffile"):
        with open_slide(path, max_mpp=1000, backend=backend) as slide:
            assert slide.info.level_dimensions[:2] == ((300, 250), (150, 125))
            assert slide.info.mpp == pytest.approx(352.78, rel=1e-4)
