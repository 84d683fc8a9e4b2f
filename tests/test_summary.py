"""Aggregation of one slide into its SlideSummary, and report.json written and read back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsi_screen.classes import CLASS_CODES
from wsi_screen.config import Config
from wsi_screen.find_cells import SlideCells
from wsi_screen.records import AoiMask, Box, Detection, OperatingRates, Probabilities, Provenance, SlideInfo, SlideQc, SlideSummary
from wsi_screen.summarize import summarize_slide

RATES = {
    "blast": OperatingRates(0.9, 0.995, 150, 2000, "test", ((0.9, 4),), patient_effect=(1.85, 2.3)),
    "atypical": OperatingRates(0.8, 0.95, 400, 1800, "test"),
}


def _cells(n: int) -> SlideCells:
    info = SlideInfo(Path("s.tiff"), "tifffile", 4000, 2000, 0.25, "tiff tags", ((4000, 2000),), (1.0,))
    aoi = AoiMask(np.ones((20, 40), bool), 100.0)  # the whole slide: 4000 × 2000 px at 0.25 µm/px = 0.5 mm²
    dets = tuple(Detection(10.0 * i, 5.0, Box(0, 0, 4, 4), 50.0, 0.9, ((0, 0), (4, 0), (4, 4))) for i in range(n))
    return SlideCells(Path("/data/s.tiff"), None, info, aoi, dets, ("tile 3: bad JPEG",), SlideQc(0.5, 4.0, 0.6, 2 * n))


def _calls(codes: list[str], confidence: float = 0.97) -> Probabilities:
    p = np.full((len(codes), len(CLASS_CODES)), (1 - confidence) / (len(CLASS_CODES) - 1))
    for i, c in enumerate(codes):
        p[i, CLASS_CODES.index(c)] = confidence
    return Probabilities(p, np.zeros(len(codes)))


def _summary(codes, confidence=0.97, **cfg) -> SlideSummary:
    return _summarize(_calls(codes, confidence), **cfg)


def _summarize(calls: Probabilities, outside_colours: np.ndarray | None = None, **cfg) -> SlideSummary:
    config = Config().replace("export", gallery_size=3).replace("aggregate", bootstrap_samples=500, **cfg)
    provenance = Provenance({"classifier": {"sha256": "ab" * 32}}, "cd" * 32, {"wsi_screen": "0.1.0"}, 12.5)
    return summarize_slide(_cells(len(calls.probs)), calls, RATES, config, None, provenance, outside_colours)


LEUKOCYTES = ["NGS"] * 150 + ["EOS"] * 20 + ["LYT"] * 20 + ["MYO"] * 8 + ["EBO"] * 2


def _with_rejected() -> Probabilities:
    """The 200 LEUKOCYTES after 20 rejected objects (10 confident MYO, 10 unsure EOS, P(reject) 0.9)
    and before 20 more (unsure EOS, P(reject) 0.51); cell 25 sits at P(reject) 0.5, still a leukocyte."""
    parts = [_calls(["MYO"] * 10, 0.99), _calls(["EOS"] * 10, 0.4), _calls(LEUKOCYTES), _calls(["EOS"] * 20, 0.4)]
    p_reject = np.r_[np.full(20, 0.9), np.zeros(200), np.full(20, 0.51)]
    p_reject[25] = 0.5
    return Probabilities(np.vstack([p.probs for p in parts]), p_reject)


def test_summary_holds_the_counts_flags_and_gallery_cells():
    codes = ["NGS"] * 150 + ["EOS"] * 20 + ["LYT"] * 20 + ["MYO"] * 8 + ["EBO"] * 2
    s = _summary(codes)
    assert s.slide == "s.tiff" and s.specimen_id == "s" and s.n_leukocytes == 200 and s.aoi_area_mm2 == pytest.approx(0.5)
    assert s.differential.counts["MYO"] == 8 and s.differential.denominator == 198
    assert s.differential.percent["EOS"] == pytest.approx(100 * 20 / 198)
    assert s.differential.nrbc_per_100_wbc == pytest.approx(100 * 2 / 198)
    assert s.blast.count == 8 and s.blast.raw_prevalence == 0.04 and s.blast.flag and s.blast.high_p == 0.9
    assert s.lab_flags == ("eosinophilia: 10.1% eosinophils (> 7%)",)
    assert s.flags[0].startswith("blasts: ") and s.flags[-1] == s.lab_flags[0] and len(s.flags) == 3  # the 8 MYO also flag atypical
    assert s.blast_candidates == (190, 191, 192)  # highest P(blast), ties in cell order
    assert s.needs_review == 0 and s.review_cells == ()
    assert s.warnings == ("corrupt tile skipped: tile 3: bad JPEG",)


def test_rejected_objects_are_counted_apart_and_nowhere_else():
    s, alone = _summarize(_with_rejected()), _summary(LEUKOCYTES)
    assert s.n_leukocytes == 200 and s.n_rejected == 40 and alone.n_rejected == 0
    assert s.differential == alone.differential and s.differential.counts["EOS"] == 20 and s.differential.counts["MYO"] == 8
    assert s.blast == alone.blast and s.blast.count == 8 and s.blast.raw_prevalence == 0.04 and s.atypical == alone.atypical
    assert s.flags == alone.flags and s.lab_flags == ("eosinophilia: 10.1% eosinophils (> 7%)",)  # 50 of 240 EOS had they counted
    assert s.needs_review == 0 and s.review_cells == ()  # the 40 unsure objects are rejected, not leukocytes to review
    assert s.blast_candidates == (210, 211, 212)  # the leukocyte MYO (alone: 190-192), never the rejected P(blast) 0.99 objects
    assert s.qc.leukocytes_per_mm2 == pytest.approx(200 / 0.5)


def test_leukocytes_outside_the_training_colours_are_measured_and_warned_of():
    """The share counts leukocytes only: the 40 rejected objects of `_with_rejected` lie outside
    too, and would take the share from 50 of 200 to 90 of 240 had they counted."""
    outside = np.r_[np.ones(20, bool), np.arange(200) < 50, np.ones(20, bool)]
    s = _summarize(_with_rejected(), outside)
    assert s.qc.outside_training_colours == 0.25 and len(s.warnings) == 1  # at the limit (25 %): no warning
    outside[20:71] = True  # 51 of 200
    s = _summarize(_with_rejected(), outside)
    assert s.qc.outside_training_colours == 0.255
    assert s.warnings[-1].startswith("26% of the leukocytes are stained outside the colours the classifier was trained on (limit 25%)")
    assert _summarize(_with_rejected()).qc.outside_training_colours is None  # a card without a colour range


def test_few_or_unsure_cells_are_said_so():
    s = _summary(["NGS"] * 30 + ["LYT"] * 10, confidence=0.4)
    assert s.warnings[0] == "only 40 leukocytes classified (< 200): the differential is unreliable"
    assert s.needs_review == 40 and s.review_cells == (0, 1, 2) and not s.flags


def test_report_json_round_trip_keeps_the_keys_batch_and_labs_read():
    s = _summary(["NGS"] * 150 + ["MYO"] * 8)
    text = s.to_json()
    r = json.loads(text)
    read_by_batch_and_labs = {
        "slide",
        "specimen_id",
        "n_leukocytes",
        "counts",
        "differential",
        "differential_denominator",
        "nrbc_per_100_wbc",
        "smudge_cells",
        "needs_review",
        "flags",
        "lab_flags",
        "warnings",
        "qc",
        "error_rates",
        "model",
        "config_sha256",
        "software",
        "runtime_s",
        "n_rejected",
    }
    assert read_by_batch_and_labs <= set(r)
    assert r["n_rejected"] == 0
    assert r["blast"]["specificity_on_this_slide"] == s.blast.specificity and r["blast"]["ci95"] == list(s.blast.ci95)
    assert r["flags"] == list(s.flags) and r["qc"]["warnings"] == [] and r["runtime_s"] == 12.5
    assert SlideSummary.from_json(text) == s
    rejected = _summarize(_with_rejected())
    assert json.loads(rejected.to_json())["n_rejected"] == 40 and SlideSummary.from_json(rejected.to_json()) == rejected


def test_report_json_without_the_newer_keys_still_loads():
    r = json.loads(_summary(["NGS"] * 10).to_json())
    for key in ("blast_candidates", "review_cells", "n_rejected"):
        del r[key]
    for test in ("blast", "atypical"):
        del r[test]["high_p"]
        del r["error_rates"][test]["patient_effect"]
    old = SlideSummary.from_json(json.dumps(r))
    assert old.blast_candidates == () and old.blast.high_p is None and old.n_leukocytes == 10 and old.n_rejected == 0
    assert old.error_rates["blast"].patient_effect == ()


def test_report_page_escapes_what_a_user_or_slide_supplies():
    from dataclasses import replace

    from wsi_screen.export.report import Charts, gallery, render_html

    s = replace(_summary(["NGS"] * 150 + ["MYO"] * 8), specimen_id="<script>alert(1)</script>")
    cells = gallery("Top <b>", np.zeros((2, 8, 8, 3), np.uint8), ["cell 0 & co", "cell 1"], np.ones((2, 8, 8)))
    page = render_html(s, Charts("data:image/png;base64,AA==", "data:image/png;base64,AB==", "data:image/png;base64,AC=="), [cells])
    assert "<script>" not in page and "Specimen &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<h2>Top &lt;b&gt;</h2>" in page and "cell 0 &amp; co" in page and page.count('alt="saliency"') == 2
    assert "BLASTS SUSPECTED: more calls than the model&#39;s held-out error rates explain (95% lower bound" in page
    assert '<img src="data:image/png;base64,AB==" alt="differential chart">' in page
    assert "158 leukocytes classified" in page and "0 further objects rejected as no leukocyte: counted nowhere" in page
    page = render_html(_summarize(_with_rejected()), Charts("data:,", "data:,", "data:,"), [])
    assert "200 leukocytes classified" in page and "40 further objects rejected as no leukocyte: counted nowhere" in page
