"""QC warnings fire on a blurred and on a colour-shifted slide, and stay quiet on a good one."""

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFilter

from wsi_screen.config import DetectConfig, QcConfig
from wsi_screen.detect import detector_mpp
from wsi_screen.qc import summarize_qc, tile_qc
from wsi_screen.records import Box
from wsi_screen.slide import open_slide
from wsi_screen.synth import write_pyramid


@pytest.fixture(scope="module")
def field(drawn_slide):
    """A monolayer field of the drawn slide at the shipped detector's µm/px (what its tiles look
    like, and what the focus level is set for)."""
    with open_slide(drawn_slide.path) as slide:
        return slide.read(Box(1000, 200, 2800, 2800), detector_mpp(DetectConfig()))


def _summary(rgb):
    tiles = [tile_qc(rgb[y : y + 256, x : x + 256]) for y in range(0, rgb.shape[0] - 255, 256) for x in range(0, rgb.shape[1] - 255, 256)]
    return summarize_qc(tiles, n_cells=10, aoi_area_mm2=1.0, cfg=QcConfig())


def test_good_field_has_no_warnings(field):
    qc = _summary(field)
    assert qc.warnings == () and qc.focus > QcConfig().min_focus and qc.stain_angle_deg < 15


def test_blurred_field_is_out_of_focus(field):
    blurred = np.asarray(Image.fromarray(field).filter(ImageFilter.GaussianBlur(2.0)))
    qc = _summary(blurred)
    assert qc.focus < _summary(field).focus / 2
    assert any(w.startswith("out of focus") for w in qc.warnings)


def test_colour_shifted_field_warns_about_stain(field):
    shifted = field[..., [2, 1, 0]]  # a blue-cast scan: red and blue swapped
    qc = _summary(shifted)
    assert any(w.startswith("unusual stain colour") for w in qc.warnings)
    assert qc.stain_angle_deg > 15


def test_tinted_plasma_is_not_counted_as_cells(field):
    """A yellowish plasma (PBC's camera, a scanner's white balance) darkens every pixel by an OD
    of about 0.3: against white it would all count as cells (coverage ~100 %, a false warning)."""
    tinted = (field * np.float32([1.0, 0.9, 0.8])).astype(np.uint8)
    plain, warm = _summary(field), _summary(tinted)
    assert abs(warm.coverage - plain.coverage) < 0.05 and 0.2 < warm.coverage < 0.9
    assert not any(w.startswith("red-cell coverage") for w in warm.warnings)


def test_empty_glass_warns(tmp_path):
    qc = _summary(np.full((512, 512, 3), 240, np.uint8))
    assert qc.focus is None and "no stained cells" in qc.warnings[0]


def test_blurred_slide_warns_end_to_end(tmp_path, drawn_slide):
    from distributed import Client, LocalCluster

    from wsi_screen.config import Config
    from wsi_screen.find_cells import find_cells, prepare

    rgb = tifffile.imread(drawn_slide.path, level=0)
    path = tmp_path / "blurred.tiff"
    write_pyramid(path, np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(6))), mpp=drawn_slide.mpp)
    config = Config()
    info, mask = prepare(path, config, None, str(drawn_slide.geojson))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        cells = find_cells(client, path, info, mask, config, None, progress=False)
    assert any(w.startswith("out of focus") for w in cells.qc.warnings)


def test_channel_sums_are_numpys_to_the_last_bit(field):
    """The QC's fast channel sum and grey level give numpy's own float32 values (a tile's QC
    figures must not move when the arithmetic is made faster), on a real field and on its
    optical densities."""
    from wsi_screen.qc import OD_OF_LEVEL, channel_sum, grey_level

    od = OD_OF_LEVEL[field]
    assert np.array_equal(channel_sum(od), od.sum(-1))
    assert np.array_equal(grey_level(field), field.astype(np.float32).mean(-1))
    assert grey_level(field).dtype == np.float32 and 0 < grey_level(field).min() < grey_level(field).max() <= 255
