import pytest
from shapely.geometry import Point

from wsi_screen.cell_agreement import blast_agreement, counted_outside, paired_accuracy, slide_calls


def test_missed_and_doubly_found_cells_count_as_wrong():
    """Four placed cells: one found once and right, one found once and wrong, one missed, one
    found twice (both right); a detection outside every cell answers for none."""
    outlines = [Point(x, 0).buffer(10) for x in (0, 100, 200, 300)]
    truth = ["NGS", "LYT", "MON", "EOS"]
    detections = [(1, 2, "NGS"), (99, -3, "MON"), (295, 0, "EOS"), (305, 1, "EOS"), (150, 0, "LYT")]
    calls = slide_calls(outlines, detections)
    assert calls == ["NGS", "MON", None, None]
    assert counted_outside(outlines, detections) == 1 and counted_outside(outlines, []) == 0
    assert counted_outside([], detections) == 5
    r = paired_accuracy(truth, calls, crops=["NGS", "LYT", "MON", "EOS"], n_boot=2000)
    assert r["slide_accuracy"] == 0.25 and r["crop_accuracy"] == 1.0 and r["difference"] == -0.75
    assert r["missed_or_split"] == 2 and (r["only_slide_right"], r["only_crops_right"]) == (0, 3)
    assert r["difference_ci95"][0] == -1.0 and r["difference_ci95"][1] <= -0.25
    assert r["mcnemar_p"] == pytest.approx(0.25)  # 3 discordant, all one way: 2 × 0.5³


def test_blast_test_counts_a_missed_blast_as_not_called():
    """Three placed blasts and three non-blasts: the slide misses one blast (None) and calls a
    monocyte a monoblast; the crops call every blast and one lymphocyte a myeloblast."""
    truth = ["MYO", "MYO", "MOB", "MON", "LYT", "NGS"]
    slide = ["MYO", None, "MOB", "MOB", "LYT", "NGS"]
    crops = ["MYO", "MOB", "MYO", "MON", "MYO", "NGS"]
    p_slide = [0.9, 0.0, 0.8, 0.7, 0.1, 0.05]  # the missed blast scores 0: ranked below every non-blast
    p_crops = [0.9, 0.6, 0.8, 0.2, 0.7, 0.05]
    b = blast_agreement(truth, slide, crops, ("MYO", "MOB"), p_slide, p_crops)
    assert (b["blasts"], b["blasts_called_slide"], b["blasts_called_crops"]) == (3, 2, 3)
    assert (b["non_blasts"], b["false_blasts_slide"], b["false_blasts_crops"]) == (3, 1, 1)
    assert b["auc_slide"] == pytest.approx(6 / 9) and b["auc_crops"] == pytest.approx(8 / 9)  # blast-above-non-blast pairs of 9
    assert blast_agreement(["LYT"], ["LYT"], ["LYT"], ("MYO", "MOB"), [0.1], [0.1])["auc_slide"] is None  # no blast: no ranking
