"""The evaluation that predicts other labs: matching, Wilson intervals, far false positives per
red cell, swallowed red cells and the error gallery, on a hand-built field and on real fields."""

from unittest import mock

import numpy as np
import pytest
from PIL import Image

from wsi_screen.config import DetectConfig
from wsi_screen.detect import make_segmenter
from wsi_screen.train.detection_metrics import assign, match, merge_duplicates, wilson
from wsi_screen.train.detector_eval import evaluate_field, evaluate_sources, summarize
from wsi_screen.train.error_gallery import write_gallery
from wsi_screen.train.fields import load_fields, source_mpp, source_of

from .conftest import shared
from .test_detect import _disc


def test_wilson_matches_published_values():
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_duplicate_boxes_merge_before_one_to_one_matching():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [8, 8, 20, 20]], float)  # IoU 0.82, then 0.03
    merged = merge_duplicates(boxes)
    assert merged.tolist() == [[0.5, 0, 10.5, 10], [8, 8, 20, 20]]
    assert match(np.array([[5, 5]]), boxes).fn == 2 and match(np.array([[5, 5]]), merged).fn == 1
    # one centroid inside both boxes, one inside only the first: both boxes get a match
    assert sorted(assign(np.array([[9, 9], [2, 2]]), np.array([[0, 0, 10, 10], [8, 8, 20, 20]]))) == [(0, 1), (1, 0)]


class _Painted:
    """A stand-in segmenter whose maps are the discs it is given (at 0.5 µm/px)."""

    mpp, checksum = 0.5, "painted"

    def __init__(self, discs):
        self.discs = discs

    def __call__(self, rgb):
        cell = np.zeros(rgb.shape[:2], bool)
        core = np.zeros(rgb.shape[:2], bool)
        for cx, cy, r in self.discs:
            cell |= _disc(cell.shape, cx, cy, r)
            core |= _disc(cell.shape, cx, cy, r / 2)
        return np.stack([cell, core]).astype(np.float32)


def _write_field(root, rows, shape=(120, 200)):
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    Image.fromarray(np.full(shape + (3,), 230, np.uint8)).save(root / "images" / "val" / "f.jpg")
    h, w = shape
    lines = [f"{c} {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}" for c, x0, y0, x1, y1 in rows]
    (root / "labels" / "val" / "f.txt").write_text("\n".join(lines))
    return load_fields(root, "val")


@pytest.fixture
def one_field_eval(tmp_path):
    """WBC A found; WBC B missed; an instance on red cell R (far from any WBC); a second instance
    overlapping A's box (a red-cell neighbour beside a true cell); 4 red cells in all."""
    rows = [
        (0, 20, 20, 52, 52),
        (0, 150, 70, 180, 100),
        (1, 90, 10, 106, 26),
        (1, 60, 80, 76, 96),
        (1, 120, 10, 136, 26),
        (1, 5, 95, 21, 111),
    ]
    (field,) = _write_field(tmp_path, rows)
    segmenter = _Painted([(36, 36, 14), (98, 18, 9), (56, 40, 8)])
    return evaluate_field(field, 0.5, segmenter, DetectConfig(min_nucleus_fraction=0))


def test_field_errors_are_counted_by_kind(one_field_eval):
    e = one_field_eval
    assert (e.score.tp, e.score.fp, e.score.fn) == (1, 2, 1)
    assert e.far_fp == 1 and e.n_rbc == 4
    assert e.swallowing == 1 and e.swallowing_tp == 0  # the instance on the red cell covers all of its box
    pooled = summarize([e])["pooled"]
    assert pooled["far_fp_per_1000_rbc"] == 250.0
    assert pooled["swallowing_rbc_fraction"] == pytest.approx(1 / 3)
    assert pooled["precision_ci95"] == pytest.approx(wilson(1, 3))


def test_swallowing_beyond_its_own_box_counts_only_outlines_running_past_the_leukocyte(tmp_path):
    """A: a red-cell box overlapping A's own box and covered by A's outline there (label geometry:
    swallowing, not beyond, and by A's labels alone). B: a tightly boxed cell whose outline runs
    past its box onto a red cell (swallowing beyond its own box)."""
    rows = [(0, 20, 20, 52, 52), (1, 40, 40, 56, 56), (0, 125, 65, 145, 85), (1, 143, 70, 153, 80)]
    (field,) = _write_field(tmp_path, rows)
    e = evaluate_field(field, 0.5, _Painted([(36, 36, 14), (135, 75, 14)]), DetectConfig(min_nucleus_fraction=0))
    assert (e.score.tp, e.score.fp, e.swallowing) == (2, 0, 2)
    assert [e.outlines[i].centroid.x for i in e.swallowing_beyond_box] == [pytest.approx(135, abs=1)]  # B's
    assert summarize([e])["pooled"]["swallowing_beyond_own_box_fraction"] == 0.5
    # the labels alone: A's inscribed ellipse covers 35 % of its red cell's box, B's 16 %
    assert e.label_floor == 1 and summarize([e])["pooled"]["swallowing_label_floor_fraction"] == 0.5


def test_a_second_look_drops_detections_before_matching(tmp_path):
    """What the second look rejects is neither found nor false: here it drops the instance on the
    red cell (index 1 in detection order), leaving one found, one false beside A, B missed."""
    rows = [(0, 20, 20, 52, 52), (0, 150, 70, 180, 100), (1, 90, 10, 106, 26), (1, 60, 80, 76, 96)]
    (field,) = _write_field(tmp_path, rows)
    segmenter = _Painted([(36, 36, 14), (98, 18, 9), (56, 40, 8)])
    seen = []

    def look(f, mpp, detections):
        seen.append(len(detections))
        return np.array([abs(d.x - 98) > 3 for d in detections])

    e = evaluate_field(field, 0.5, segmenter, DetectConfig(min_nucleus_fraction=0), look)
    assert seen == [3] and e.rejected == 1
    assert (e.score.tp, e.score.fp, e.score.fn, e.far_fp) == (1, 1, 1, 0)
    assert summarize([e])["pooled"]["rejected"] == 1


def test_gallery_has_one_crop_per_error(one_field_eval, tmp_path):
    """The instance on red cell R is a false positive and swallows R beyond any leukocyte's box."""
    counts = write_gallery([one_field_eval], tmp_path / "g")
    assert counts == {"false_positives": 2, "false_negatives": 1, "swallowing_beyond_box": 1}
    sheet = Image.open(tmp_path / "g" / "false_positives_01.png")
    assert sheet.size == (8 * 160, 160)
    assert (tmp_path / "g" / "false_negatives_01.png").exists()
    swallowed = np.asarray(Image.open(tmp_path / "g" / "swallowing_beyond_box_01.png").convert("RGB")).astype(int)
    assert (np.abs(swallowed - [230, 200, 0]).sum(-1) < 30).any()  # the red-cell boxes are drawn


def test_shipped_detector_on_a_sample_of_real_fields_per_source():
    """Eight val fields per source, each source at its median µm/px: the shipped U-Net finds the
    sample's leukocytes with few false detections (val figures in docs/detector.md). Eight, not
    three: one frame-cut sliver showing almost no nucleus (not counted since the frame-cut level
    is 0.75) was one of three fields' 14 boxes."""
    fields = load_fields(shared("detection", "txl_pbc"), "val")
    mpps = source_mpp(fields)
    sample = [f for s in ("raabin", "pbc", "bccd", "bcd") for f in [g for g in fields if source_of(g) == s][:8]]
    cfg = DetectConfig()
    figures = summarize(evaluate_sources(sample, mpps, make_segmenter(cfg), cfg))
    assert set(figures) == {"raabin", "pbc", "bccd", "bcd", "pooled"}
    assert figures["pooled"]["tp"] + figures["pooled"]["fn"] >= 32
    assert figures["pooled"]["recall"] >= 0.9 and figures["pooled"]["precision"] >= 0.8
    assert figures["pooled"]["far_fp_per_1000_rbc"] < 5


def test_bf16_detections_agree_with_float32_on_real_fields():
    """bfloat16 autocast (on CPUs that compute it natively) runs the U-Net about 2.8x faster; on
    real fields of every source it must find the same leukocytes as float32, at the same centres."""
    from wsi_screen.registry import native_bf16
    from wsi_screen.train.detector_eval import detect_field

    if not native_bf16():
        pytest.skip("this CPU has no native bfloat16: the U-Net runs float32 here")
    fields = load_fields(shared("detection", "txl_pbc"), "val")
    mpps = source_mpp(fields)
    sample = [f for s in ("raabin", "pbc", "bccd", "bcd") for f in [g for g in fields if source_of(g) == s][:8]]
    cfg = DetectConfig()
    segmenter = make_segmenter(cfg)
    found = {True: [detect_field(segmenter, f, mpps[source_of(f)], cfg) for f in sample]}
    with mock.patch("wsi_screen.registry.native_bf16", return_value=False):
        found[False] = [detect_field(segmenter, f, mpps[source_of(f)], cfg) for f in sample]
    assert sum(map(len, found[False])) >= 30
    for a, b in zip(found[True], found[False]):
        assert len(a) == len(b)
        assert all(np.hypot(p.x - q.x, p.y - q.y) < 1.0 and abs(p.area_um2 / q.area_um2 - 1) < 0.03 for p, q in zip(a, b))
