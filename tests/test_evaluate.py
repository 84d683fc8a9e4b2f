"""The evaluation report on hand-built predictions."""

import json

import numpy as np
import pandas as pd
import pytest

from wsi_screen.classes import CLASS_CODES
from wsi_screen.evaluate import evaluate, patient_effects


def preds_file(path, truth, predicted):
    probs = np.full((len(truth), 15), 0.01)
    for i, c in enumerate(predicted):
        probs[i, CLASS_CODES.index(c)] = 0.86
    frame = pd.DataFrame(probs, columns=list(CLASS_CODES))
    frame.insert(0, "file", [str(path.parent / f"f{i}") for i in range(len(truth))])  # absolute; labels relative
    frame.to_csv(path, index=False)
    return path


def test_two_folds_mean_and_sd(tmp_path):
    truth = ["MYO", "MYO", "NGS", "NGS", "LYT", "PLT"]
    labels = pd.DataFrame({"file": [f"f{i}" for i in range(6)], "class": truth, "source": ["deepapl"] * 3 + ["pbc"] * 3})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    a = preds_file(tmp_path / "a.csv", truth, ["MYO", "MYO", "NGS", "NGS", "LYT", "NGS"])
    b = preds_file(tmp_path / "b.csv", truth, ["MYO", "NGS", "NGS", "MYO", "LYT", "NGS"])
    r = evaluate([a, b], tmp_path / "labels.csv", tmp_path / "rep")
    t = pd.read_csv(tmp_path / "rep" / "table1.csv", index_col="class")
    assert t.loc["MYO", "n"] == 4  # PLT is not a leukocyte class: excluded
    assert t.loc["MYO", "sensitivity"] == pytest.approx(0.75) and t.loc["MYO", "sensitivity_sd"] == pytest.approx(np.std([1, 0.5], ddof=1))
    assert t.loc["NGS", "precision"] == pytest.approx(0.75)
    assert r["balanced_accuracy"]["mean"] == pytest.approx((1 + 2 / 3) / 2)
    assert r["blast_test"]["auc"]["mean"] == pytest.approx((1 + 3.5 / 6) / 2)  # run b: ties count ½
    pbc = r["runs"][1]["per_source"]["pbc"]
    assert pbc["false_blast_rate"] == pytest.approx(0.5)  # f3 (NGS, pbc) called MYO in run b
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert saved["runs"][0]["per_class"]["EOS"]["sensitivity"] is None  # NaN → null
    assert (tmp_path / "rep" / "roc.png").is_file() and (tmp_path / "rep" / "confusion.png").is_file()


def test_blast_call_rates_per_patient(tmp_path):
    """Patient A: 1 of 3 non-blasts called a blast, 1 of 2 blasts found; B: none of 2; PBC rows
    (no patient id) are left out."""
    truth = ["NGS", "LYT", "MON", "MYO", "MOB", "NGS", "LYT", "NGS"]
    called = ["NGS", "MYO", "MON", "MOB", "LYT", "NGS", "LYT", "MYO"]
    patients = ["A", "A", "A", "A", "A", "B", "B", ""]
    labels = pd.DataFrame({"file": [f"f{i}" for i in range(8)], "class": truth, "patient": patients})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    r = evaluate([preds_file(tmp_path / "p.csv", truth, called)], tmp_path / "labels.csv", tmp_path / "rep")
    per = json.loads((tmp_path / "rep" / "report.json").read_text())["runs"][0]["per_patient"]
    assert set(per) == {"A", "B"} and per["A"] == r["runs"][0]["per_patient"]["A"]
    assert per["A"] == {
        "non_blasts": 3,
        "false_blast_calls": 1,
        "false_blast_rate": pytest.approx(1 / 3),
        "blasts": 2,
        "blast_calls": 1,
        "blast_sensitivity": 0.5,
    }
    assert per["B"]["false_blast_calls"] == 0 and per["B"]["blasts"] == 0 and per["B"]["blast_sensitivity"] is None


def test_patient_effect_against_each_patients_classes():
    """40 patients of 30 neutrophils (never called blasts) and 30 monocytes, whose blast-call rate
    is 20 % times a Gamma(2, ½) factor of the patient's: the expected calls come from the pooled
    monocyte rate, diluted by 50 PBC monocytes (no patient, never called) that the fit leaves out:
    mean 1250 / 1200 and a shape near 2. A blast call is an atypical call too: the same fit."""
    rng = np.random.default_rng(0)
    truth, called, patients = [], [], []
    for p in range(40):
        monocyte_rate = 0.2 * rng.gamma(2.0, 0.5)
        truth += ["NGS"] * 30 + ["MON"] * 30
        called += ["NGS"] * 30 + ["MYO" if rng.random() < monocyte_rate else "MON" for _ in range(30)]
        patients += [f"P{p}"] * 60
    truth, called, patients = truth + ["MON"] * 50, called + ["MON"] * 50, patients + [""] * 50
    probs = np.full((len(truth), 15), 0.01)
    probs[np.arange(len(truth)), [CLASS_CODES.index(c) for c in called]] = 0.86
    frame = pd.DataFrame(probs, columns=list(CLASS_CODES)).assign(**{"class": truth, "patient": patients})
    fit = patient_effects(frame)
    assert fit["blast"]["patients"] == 40 and fit["blast"]["mean"] == pytest.approx(1250 / 1200, rel=0.02)
    assert 1.0 < fit["blast"]["shape"] < 4.0 and fit["atypical"] == fit["blast"]


def test_human_operating_points_from_annotations(tmp_path):
    """Re-annotator 1 misses 1 of 4 blasts and calls 1 of 4 others a blast; re-annotator 2 is perfect."""
    truth = ["MYO", "MYO", "NGS", "LYT"]
    pd.DataFrame({"file": [f"f{i}" for i in range(4)], "class": truth}).to_csv(tmp_path / "labels.csv", index=False)
    preds = preds_file(tmp_path / "p.csv", truth, truth)
    rows = [("MYO", "MYO"), ("MYO", "MYO"), ("MOB", "MOB"), ("MYO", "NGS"), ("NGS", "NGS"), ("LYT", "MYO"), ("EOS", "EOS"), ("NGS", "NGS")]
    lines = [f"{o}/{o}_{i:04d}.tiff {o} {r1} {o}" for i, (o, r1) in enumerate(rows)] + ["NGS/NGS_0099.tiff NGS UNC nan"]
    (tmp_path / "annotations.dat").write_text("\n".join(lines) + "\n")
    r = evaluate([preds], tmp_path / "labels.csv", tmp_path / "rep", annotations=tmp_path / "annotations.dat")
    human = json.loads((tmp_path / "rep" / "report.json").read_text())["human_operating_points"]
    assert human == r["human_operating_points"]
    assert human["reann1"]["blast_test"] == {"sensitivity": 0.75, "specificity": 0.75}
    assert human["reann2"]["blast_test"] == {"sensitivity": 1.0, "specificity": 1.0}
    assert "human_operating_points" not in evaluate([preds], tmp_path / "labels.csv", tmp_path / "rep2")


def test_blast_rivals_count_the_misranked_pairs_each_class_makes():
    """Blasts at 0.9 and 0.8; a promyelocyte at 0.85 outranks one of them, one at 0.1 none; a
    monocyte at 0.8 ties one (half a pair): each class's AUC against the blasts is 0.75, and the
    promyelocytes make two thirds of the misranked pairs."""
    from pipelines.blast_rivals import rivals

    truth = np.array(["MYO", "MOB", "PMO", "PMO", "MON"])
    table = rivals(truth, np.array([0.9, 0.8, 0.85, 0.1, 0.8]), np.array([True, True, True, False, False]))
    assert table.loc["PMO", "misranked"] == 1 and table.loc["MON", "misranked"] == 0.5
    assert table["auc_against"].tolist() == pytest.approx([0.75, 0.75])
    assert table.loc["PMO", "share_of_misranked"] == pytest.approx(2 / 3)
    assert table["called_blast"].tolist() == [1, 0]


def test_false_positive_rate_at_a_readers_sensitivity():
    """Blasts at 0.9, 0.7, 0.5, 0.3: keeping 3 of 4 (75 %) puts the threshold at 0.5, above which
    2 of the 4 non-blasts score; keeping all 4 puts it at 0.3 (3 of 4)."""
    from wsi_screen.metrics import false_positive_rate_at

    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    score = np.array([0.9, 0.7, 0.5, 0.3, 0.8, 0.5, 0.4, 0.1])
    assert false_positive_rate_at(truth, score, 0.75) == 0.5
    assert false_positive_rate_at(truth, score, 0.74) == 0.5  # 2.96 blasts: the third still counts
    assert false_positive_rate_at(truth, score, 1.0) == 0.75
    assert false_positive_rate_at(truth, score, 0.25) == 0.0
    assert np.isnan(false_positive_rate_at(truth[:4], score[:4], 0.9))


def test_a_re_annotators_rates_on_another_mix_of_cells():
    """Rates MON 1 of 4, PMO 1 of 2 (too few to use at 3), LYT 0 of 10: on 40 monocytes and 60
    lymphocytes (and 10 promyelocytes left out) the re-annotator would call 10 of 100 blasts."""
    from wsi_screen.agreement import expected_blast_calls

    by_class = {"MON": {"n": 4, "called_blast": 1}, "PMO": {"n": 2, "called_blast": 1}, "LYT": {"n": 10, "called_blast": 0}}
    rate, classes = expected_blast_calls(by_class, {"MON": 40, "LYT": 60, "PMO": 10})
    assert rate == pytest.approx(0.1) and classes == ["LYT", "MON"]
    assert expected_blast_calls(by_class, {"PMO": 10, "KSC": 5})[1] == []


def test_fold_comparison_pairs_the_same_patients_in_each_draw():
    """Recipe A ranks every blast above every non-blast (AUC 1), B ranks one patient's blast below
    its non-blasts: B's AUC is lower, and each patient-bootstrap draw's difference is ≥ 0; A
    compared with itself differs by exactly 0 in every draw."""
    from pipelines.compare_folds import figures, patient_bootstrap

    patients = np.repeat(["p1", "p2", "p3", "p4"], 4)
    blast = np.tile([True, False, False, False], 4)
    a = pd.DataFrame({"patient": patients, "blast": blast, "p_blast": np.where(blast, 0.9, 0.1), "called": blast})
    b = a.assign(p_blast=np.where(blast & (patients == "p1"), 0.05, a["p_blast"]))
    assert figures(a) == (1.0, 0.0)
    assert figures(b)[0] == pytest.approx(1 - 12 / (4 * 12))  # p1's blast under all 12 non-blasts
    diffs = patient_bootstrap(a, b, 200)
    assert len(diffs) == 200 and (diffs[:, 0] >= 0).all() and (diffs[:, 0] > 0).any()
    assert (patient_bootstrap(a, a, 50) == 0).all()
