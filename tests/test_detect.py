import numpy as np
import pytest

from wsi_screen.config import DetectConfig
from wsi_screen.detect import detect_image, instances, to_detections
from wsi_screen.registry import create_model, fold_batchnorm
from wsi_screen.segmenters import (
    NUCLEUS_BLUE_GREEN,
    NUCLEUS_PIXEL,
    PIECE_NUCLEUS_PIXEL,
    ClassicalSegmenter,
    nucleus_hue,
    nucleus_stain,
    white_balanced,
    white_gain,
)


def _disc(shape, cx, cy, r):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def test_touching_cells_are_split_by_their_cores():
    shape = (80, 120)
    cell = _disc(shape, 40, 40, 15) | _disc(shape, 66, 40, 15)
    core = _disc(shape, 40, 40, 6) | _disc(shape, 66, 40, 6)
    labels, score = instances(np.stack([cell, core]).astype(np.float32), DetectConfig(), mpp=0.5)
    assert labels.max() == 2
    areas = sorted(np.bincount(labels.ravel())[1:] * 0.25)
    assert areas == pytest.approx([cell.sum() * 0.25 / 2] * 2, rel=0.1)
    assert score[1:].min() == 1.0


def test_flooding_region_by_region_is_the_whole_tile_watershed():
    """`instances` floods only the regions holding two or more seeds, each in its own box; on a
    field of lone, touching and triple cells with noisy maps its labels equal skimage's watershed
    over the whole image, pixel for pixel."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    from wsi_screen.detect import _flood, _relabel

    rng = np.random.default_rng(0)
    shape = (300, 300)
    centres = [(40, 40), (66, 40), (150, 60), (240, 50), (262, 62), (251, 80), (80, 200), (200, 220)]
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    cell = np.zeros(shape, bool)
    core = np.zeros(shape)
    for cx, cy in centres:
        cell |= _disc(shape, cx, cy, 15)
        core = np.maximum(core, 1 - np.hypot(xx - cx, yy - cy) / 15)  # 1 at each centre, 0 at its rim
    core = (core + rng.normal(0, 0.05, shape)).astype(np.float32)
    regions, n_regions = ndi.label(cell)
    seeds = _relabel(ndi.label((core > 0.5) & cell)[0])
    assert n_regions == 5 and seeds.max() >= len(centres)  # the noise splits some cores
    flooded = _flood(seeds, regions, n_regions, core)
    assert np.array_equal(flooded, watershed(-core, seeds, mask=cell))
    assert len(np.unique(flooded)) == seeds.max() + 1
    skip = np.zeros(n_regions + 1, bool)
    skip[[regions[40, 40], regions[60, 251]]] = True  # a touching pair and the triple
    skipped = np.isin(regions, np.flatnonzero(skip))
    assert np.array_equal(_flood(seeds, regions, n_regions, core, skip), np.where(skipped, 0, flooded))


def test_cells_without_a_core_seed_still_count_once_and_size_filters_apply():
    shape = (100, 100)
    big = _disc(shape, 30, 30, 14)  # 154 µm² at 0.5 µm/px: a leukocyte
    speck = _disc(shape, 80, 80, 3)  # 7 µm²: a platelet-sized speck, below min_area
    labels, _ = instances(np.stack([big | speck, np.zeros(shape)]).astype(np.float32), DetectConfig(), mpp=0.5)
    assert labels.max() >= 1 and len(np.unique(labels[labels > 0])) == 1
    assert labels[30, 30] > 0 and labels[80, 80] == 0


def test_a_cell_cut_by_the_image_edge_keeps_a_smaller_minimum_area():
    shape = (60, 60)
    strip = _disc(shape, -8, 30, 11)  # 3 px visible at the left edge: ≈ 12 µm² at 0.5 µm/px
    same_inside = _disc(shape, 40, 30, 4)  # an interior speck of about the same area
    cfg = DetectConfig(edge_min_area_um2=4.0)
    labels, _ = instances(np.stack([strip | same_inside, np.zeros(shape)]).astype(np.float32), cfg, mpp=0.5)
    assert abs(strip.sum() - same_inside.sum()) < 0.3 * strip.sum()
    assert labels[30, 0] > 0 and labels[30, 40] == 0
    labels, _ = instances(np.stack([strip, np.zeros(shape)]).astype(np.float32), DetectConfig(edge_min_area_um2=20.0), mpp=0.5)
    assert labels.max() == 0


def test_no_instance_is_seeded_on_a_red_cell():
    """The network's cell map runs over a red cell touching a leukocyte and seeds it a core. The
    red cell's basin takes in about a fifth of its area of the leukocyte's nucleus, enough for the
    per-instance nucleated check, so only the seed rule removes it: one cell, the red cell background."""
    shape = (80, 110)
    wbc, rbc, nucleus = _disc(shape, 40, 40, 16), _disc(shape, 66, 40, 12), _disc(shape, 46, 40, 14)
    rgb = np.full((*shape, 3), 235, np.uint8)
    rgb[wbc], rgb[rbc], rgb[nucleus] = (200, 185, 215), (215, 120, 120), (110, 60, 150)
    maps = np.stack([wbc | rbc, _disc(shape, 40, 40, 5) | _disc(shape, 66, 40, 5)]).astype(np.float32)
    labels, _ = instances(maps, DetectConfig(), mpp=0.5)
    assert labels.max() == 2  # without the image: two instances, as the network proposed
    red_basin = labels == labels[40, 66]
    assert (nucleus & red_basin).sum() / red_basin.sum() > DetectConfig().min_nucleus_fraction
    labels, _ = instances(maps, DetectConfig(), mpp=0.5, rgb=rgb)
    assert len(np.unique(labels[labels > 0])) == 1 and labels[40, 40] > 0 and labels[40, 72] == 0


def test_folding_batchnorm_keeps_the_unet_output():
    import torch

    torch.manual_seed(0)
    model = create_model("unet_mobilenetv2_050", 2)
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            model(torch.rand(2, 3, 64, 64) * 3)
    model.eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.inference_mode():
        expected = model(x)
        folded = fold_batchnorm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded(x), expected, atol=1e-4)


def test_detections_are_mapped_to_level0_pixels():
    shape = (60, 60)
    cell = _disc(shape, 20, 30, 10)
    labels, score = instances(np.stack([cell, _disc(shape, 20, 30, 4)]).astype(np.float32), DetectConfig(), mpp=0.5)
    (d,) = to_detections(labels, score, origin=(1000.0, 2000.0), scale=5.0, mpp=0.5)
    assert d.x == pytest.approx(1000 + 20.5 * 5, abs=0.5) and d.y == pytest.approx(2000 + 30.5 * 5, abs=0.5)
    assert d.area_um2 == pytest.approx(cell.sum() * 0.25)
    xs, ys = zip(*d.polygon)
    assert min(xs) >= d.bbox.x0 and max(xs) <= d.bbox.x1 and d.bbox.width == pytest.approx(21 * 5, abs=6)
    assert d.polygon[0] == d.polygon[-1]


def test_a_swallowed_neighbour_does_not_move_the_centre():
    """The patch is cut at the core's centre: an outline that takes in a touching red cell (cell
    map high, core map low) moves the plain centroid, not the centre."""
    shape = (80, 120)
    leukocyte, red_cell = _disc(shape, 40, 40, 12), _disc(shape, 60, 40, 9)
    maps = np.stack([leukocyte | red_cell, _disc(shape, 40, 40, 8) * 0.9]).astype(np.float32)
    labels, score = instances(maps, DetectConfig(), mpp=0.5)
    (plain,) = to_detections(labels, score, origin=(0.0, 0.0), scale=1.0, mpp=0.5)
    (centred,) = to_detections(labels, score, origin=(0.0, 0.0), scale=1.0, mpp=0.5, core=maps[1])
    assert plain.x > 45  # pulled towards the red cell by 5 px (2.5 µm) or more
    assert centred.x == pytest.approx(40.5, abs=0.1) and centred.y == pytest.approx(40.5, abs=0.1)
    assert centred.polygon == plain.polygon and centred.area_um2 == plain.area_um2


def _smear(shape, nuclei, rng):
    """Pink plasma, pale red cells, and leukocytes with purple nuclei and a grey-pink rim."""
    img = np.full(shape + (3,), (235, 215, 215), np.float32)
    for _ in range(40):
        m = _disc(shape, rng.uniform(0, shape[1]), rng.uniform(0, shape[0]), 7)
        img[m] = (215, 150, 160)
    for cx, cy in nuclei:
        img[_disc(shape, cx, cy, 12)] = (200, 180, 200)
        img[_disc(shape, cx, cy, 7)] = (95, 45, 150)
    return img.astype(np.uint8)


def test_classical_baseline_finds_drawn_leukocytes():
    nuclei = [(30, 30), (100, 40), (60, 110), (150, 130)]
    img = _smear((180, 200), nuclei, np.random.default_rng(1))
    dets = detect_image(img, ClassicalSegmenter(nucleus_threshold=0.7), DetectConfig(method="classical"))
    found = sorted((round(d.x), round(d.y)) for d in dets)
    assert len(found) == 4
    for (x, y), (cx, cy) in zip(found, sorted(nuclei)):
        assert abs(x - cx - 0.5) <= 2 and abs(y - cy - 0.5) <= 2


def test_an_instance_must_be_nucleated_and_a_small_core_seeds_no_cell():
    shape = (80, 160)
    rgb = np.full(shape + (3,), (235, 215, 215), np.uint8)
    red_cell, leukocyte = _disc(shape, 40, 40, 12), _disc(shape, 110, 40, 14)
    rgb[red_cell] = (215, 150, 160)
    rgb[leukocyte] = (200, 180, 200)
    rgb[_disc(shape, 110, 40, 6)] = (95, 45, 150)
    cell = red_cell | leukocyte
    core = _disc(shape, 40, 40, 5) | _disc(shape, 106, 40, 5) | _disc(shape, 119, 40, 2)  # + a 13-px lobe core
    maps = np.stack([cell, core]).astype(np.float32)
    labels, _ = instances(maps, DetectConfig(), mpp=0.5, rgb=rgb)
    assert labels[40, 40] == 0 and labels[40, 110] > 0  # the red cell has no nucleus
    assert len(np.unique(labels[leukocyte])) == 1  # the lobe's 3 µm² core seeds no second cell
    labels, _ = instances(maps, DetectConfig(min_core_um2=1.0), mpp=0.5)
    assert labels[40, 40] > 0 and len(np.unique(labels[leukocyte])) == 2  # without either check


def test_a_pile_of_red_cells_is_not_nucleated_however_dark():
    """A smear's thick end stacks red cells until their stain reads like a nucleus's (the benchmark
    slide's piles: median RGB 94/52/82, 1,544 objects over the whole slide); their blue/green
    optical density ratio stays a red cell's, a nucleus's (median 85/39/135) is far lower."""
    pile, nucleus = np.array([[[94, 52, 82]]], np.uint8), np.array([[[85, 39, 135]]], np.uint8)
    od = lambda rgb: -np.log(rgb[0, 0].astype(float) / 255)  # noqa: E731
    assert od(pile)[2] / od(pile)[1] > NUCLEUS_BLUE_GREEN > od(nucleus)[2] / od(nucleus)[1]
    assert nucleus_stain(pile)[0, 0] > NUCLEUS_PIXEL and not nucleus_hue(pile)[0, 0] and nucleus_hue(nucleus)[0, 0]
    shape = (80, 160)
    rgb = np.full(shape + (3,), (250, 248, 245), np.uint8)
    piled = _disc(shape, 40, 40, 12) | _disc(shape, 62, 40, 12)  # two touching piles: one region, two seeds
    leukocyte = _disc(shape, 110, 40, 14)
    rgb[piled] = pile[0, 0]
    rgb[leukocyte] = (200, 180, 200)
    rgb[_disc(shape, 110, 40, 7)] = nucleus[0, 0]
    core = _disc(shape, 40, 40, 5) | _disc(shape, 62, 40, 5) | _disc(shape, 110, 40, 5)
    maps = np.stack([piled | leukocyte, core]).astype(np.float32)
    labels, _ = instances(maps, DetectConfig(), mpp=0.5, rgb=rgb)
    assert not labels[piled].any() and labels[40, 110] > 0
    # nucleus_hue is the optical density ratio, also at the boundary (blue just above it)
    green = np.arange(1, 255)
    blue = 255 * (green / 255) ** NUCLEUS_BLUE_GREEN
    edge = np.stack([np.full_like(green, 40), green, np.clip(np.ceil(blue), 0, 255)], -1).astype(np.uint8)
    below = -np.log(edge[:, 2] / 255) < NUCLEUS_BLUE_GREEN * -np.log(edge[:, 1] / 255)
    assert 50 < below.sum() and np.array_equal(nucleus_hue(edge), below)


def test_a_purplish_red_cell_touching_a_leukocyte_is_no_second_cell():
    """DeepAPL's and Raabin's red cells read as nucleus-stained under white light (about 0.55, the
    hue of a nucleus): touching a leukocyte, with a core of its own, such a red cell became a
    second instance in the leukocyte's cell region, the leukocyte counted twice. In a shared region
    the instance with the most chromatin is the cell, however little it shows (a neutrophil's thin
    lobes in wide cytoplasm), and any other must show chromatin; the same red cell alone is judged
    as before."""
    purplish = np.array([[[190, 140, 190]]], np.uint8)
    assert NUCLEUS_PIXEL < nucleus_stain(purplish)[0, 0] < PIECE_NUCLEUS_PIXEL and nucleus_hue(purplish)[0, 0]
    shape = (80, 200)
    rgb = np.full(shape + (3,), (250, 248, 245), np.uint8)
    red_cell, leukocyte, lone = _disc(shape, 40, 40, 10), _disc(shape, 62, 40, 13), _disc(shape, 160, 40, 10)
    rgb[red_cell | lone] = purplish[0, 0]
    rgb[leukocyte] = (200, 180, 200)
    rgb[_disc(shape, 64, 40, 7)] = (85, 39, 135)
    core = _disc(shape, 40, 40, 5) | _disc(shape, 64, 40, 5) | _disc(shape, 160, 40, 5)
    maps = np.stack([red_cell | leukocyte | lone, core]).astype(np.float32)
    labels, _ = instances(maps, DetectConfig(), mpp=0.5, rgb=rgb)
    assert labels[40, 38] == 0 and labels[40, 64] > 0 and labels[40, 160] > 0
    assert len(np.unique(labels[leukocyte])) == 2  # the leukocyte and the background: one cell
    rgb[_disc(shape, 64, 40, 7)] = purplish[0, 0]  # a pale nucleus ...
    rgb[_disc(shape, 64, 40, 4)] = (85, 39, 135)  # ... with a small dark lobe: 9 % of the cell shows chromatin
    assert (nucleus_stain(rgb[leukocyte]) >= PIECE_NUCLEUS_PIXEL).mean() < DetectConfig().min_nucleus_fraction
    labels, _ = instances(maps, DetectConfig(), mpp=0.5, rgb=rgb)
    assert labels[40, 38] == 0 and labels[40, 64] > 0


def test_a_lamp_cast_does_not_hide_a_nucleus_from_the_nucleated_check():
    """wbc_seg's lab images under a yellow cast: the U-Net found its pale monocytes, but their
    nuclei read below the fixed stain level and the check dropped 26 of 300 cells. Dividing by the
    plasma's colour (the illumination) restores them; the red cell stays un-nucleated."""
    shape = (80, 160)
    rgb = np.full(shape + (3,), (250, 248, 245), np.uint8)
    red_cell, leukocyte = _disc(shape, 40, 40, 12), _disc(shape, 110, 40, 14)
    rgb[red_cell] = (215, 150, 160)
    rgb[leukocyte] = (200, 180, 200)
    rgb[_disc(shape, 110, 40, 6)] = (130, 80, 170)  # a pale nucleus
    cast = (rgb * np.array([1.0, 0.97, 0.6])).astype(np.uint8)
    assert nucleus_stain(cast[40:41, 110:111])[0, 0] < NUCLEUS_PIXEL < nucleus_stain(rgb[40:41, 110:111])[0, 0]
    cell = red_cell | leukocyte
    maps = np.stack([cell, _disc(shape, 40, 40, 5) | _disc(shape, 110, 40, 5)]).astype(np.float32)
    labels, _ = instances(maps, DetectConfig(), mpp=0.5, rgb=cast)
    assert labels[40, 40] == 0 and labels[40, 110] > 0
    balanced = white_balanced(cast, white_gain(cast))
    assert np.abs(balanced[5, 5].astype(int) - (255, 255, 255)).max() <= 2  # plasma back to white
    on_glass = np.where(cell[..., None], rgb, np.uint8(255))
    assert white_balanced(on_glass, white_gain(on_glass)) is on_glass  # white light: nothing to correct


def test_a_piece_cut_by_the_frame_must_show_a_nucleus():
    """Raabin-WBC's red cells stain purplish (nucleus stain ≈ 0.5–0.6, where a nucleus saturates):
    a detector that never saw that lab took hundreds of them, cut by the camera frame, for
    leukocytes. A frame-cut piece counts only with pixels stained like a nucleus; a frame-cut
    leukocyte showing its nucleus still counts."""
    shape = (80, 160)
    rgb = np.full(shape + (3,), (235, 215, 215), np.uint8)
    red_cell, leukocyte = _disc(shape, -4, 40, 12), _disc(shape, 160, 40, 14)
    purplish = np.array((190, 140, 190), np.uint8)
    assert NUCLEUS_PIXEL < nucleus_stain(purplish[None, None])[0, 0] < PIECE_NUCLEUS_PIXEL
    rgb[red_cell] = purplish
    rgb[leukocyte] = (200, 180, 200)
    rgb[_disc(shape, 160, 40, 7)] = (95, 45, 150)
    maps = np.stack([red_cell | leukocyte, _disc(shape, 0, 40, 4) | _disc(shape, 156, 40, 5)]).astype(np.float32)
    labels, _ = instances(maps, DetectConfig(), mpp=0.5, rgb=rgb)
    assert labels[40, 2] == 0 and labels[40, 155] > 0
    labels, _ = instances(maps, DetectConfig(min_nucleus_fraction=0), mpp=0.5, rgb=rgb)
    assert labels[40, 2] > 0  # without the check the red cell's piece counts


@pytest.mark.parametrize("seed", range(4))
def test_longest_contour_is_skimages_point_for_point(seed):
    """Outlines are traced by contourpy but must be skimage's contour, starting at the same point
    (Douglas-Peucker keeps a ring's first point): smoothed noise thresholded into blobs with holes,
    necks and parts touching at a corner."""
    from scipy import ndimage as ndi
    from skimage.measure import find_contours

    from wsi_screen.detect import longest_contour

    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=(90, 120)), 1.0 + 0.5 * seed)
    labels, n = ndi.label(field > 0.2 * field.std(), structure=np.ones((3, 3)))  # corner-touching parts are one
    assert n >= 3
    compared = 0
    for k in range(1, n + 1):
        z = np.pad(labels == k, 1).astype(np.float32)
        contours = find_contours(z, 0.5)
        lengths = sorted(len(c) for c in contours)
        if len(lengths) > 1 and lengths[-1] == lengths[-2]:
            continue  # two longest of equal length: either is the largest part
        assert np.array_equal(longest_contour(z), max(contours, key=len))
        compared += 1
    assert compared >= 3
