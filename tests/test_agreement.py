"""The inter-observer figures of Matek et al. 2019 from the real annotations.dat."""

import json

from wsi_screen.agreement import human_agreement
from wsi_screen.cli import main


def test_reproduces_the_paper(annotations_dat):
    r = human_agreement(annotations_dat)
    first, second = r["reann1"], r["reann2"]
    assert round(first["kappa"], 2) == 0.84 and round(second["kappa"], 2) == 0.87
    assert round(100 * first["blast_test"]["sensitivity"], 1) == 95.7
    assert round(100 * second["blast_test"]["sensitivity"], 1) == 90.7
    assert round(100 * first["blast_test"]["specificity"], 1) == 91.1
    assert round(100 * second["blast_test"]["specificity"], 1) == 95.2
    assert round(100 * first["atypical_test"]["sensitivity"], 1) == 95.9
    assert round(100 * second["atypical_test"]["sensitivity"], 1) == 91.7
    assert round(100 * first["atypical_test"]["specificity"], 1) == 91.0
    assert round(100 * second["atypical_test"]["specificity"], 1) == 95.3
    assert (first["n_images"], first["n_unc_excluded"]) == (1842, 63)
    assert (second["n_images"], second["n_unc_excluded"]) == (1697, 208)


def test_blast_calls_by_class_add_up_to_the_blast_tests_false_positives(annotations_dat):
    for r in human_agreement(annotations_dat).values():
        test, by_class = r["blast_test"], r["blast_calls_by_class"]
        assert not {"MYO", "MOB"} & set(by_class) and sum(v["n"] for v in by_class.values()) == test["n_negative"]
        false_calls = sum(v["called_blast"] for v in by_class.values())
        assert false_calls == round(test["n_negative"] * (1 - test["specificity"])) and false_calls > 0


def test_figures_move_when_the_file_changes(annotations_dat, tmp_path):
    lines = annotations_dat.read_text().splitlines()
    # the first re-annotator now calls every re-annotated myeloblast a segmented neutrophil
    changed = []
    for line in lines:
        f, orig, r1, r2 = line.split()
        if orig == "MYO" and r1 not in ("nan", "UNC"):
            r1 = "NGS"
        changed.append(" ".join((f, orig, r1, r2)))
    path = tmp_path / "annotations.dat"
    path.write_text("\n".join(changed) + "\n")
    before, after = human_agreement(annotations_dat), human_agreement(path)
    assert after["reann1"]["kappa"] < before["reann1"]["kappa"] - 0.2
    assert after["reann1"]["blast_test"]["sensitivity"] < 0.1
    assert after["reann2"] == before["reann2"]


def test_cli_json(annotations_dat, capsys):
    assert main(["human-agreement", str(annotations_dat), "--json"]) == 0
    assert round(json.loads(capsys.readouterr().out)["reann2"]["kappa"], 2) == 0.87


def test_tiny_file(tmp_path):
    path = tmp_path / "a.dat"
    path.write_text(
        "MYO/MYO_0001.tiff MYO MYO MOB\nMYO/MYO_0002.tiff MYO NGS UNC\nNGS/NGS_0001.tiff NGS NGS NGS\nLYT/LYT_0001.tiff LYT nan nan\n"
    )
    r = human_agreement(path)
    assert r["reann1"]["n_images"] == 3 and r["reann1"]["blast_test"]["sensitivity"] == 0.5
    assert r["reann2"]["n_images"] == 2 and r["reann2"]["n_unc_excluded"] == 1
    assert r["reann2"]["blast_test"]["sensitivity"] == 1.0 and r["reann2"]["kappa"] < 1
    assert r["reann1"]["blast_calls_by_class"] == {"NGS": {"n": 1, "called_blast": 0}}
    path.write_text("MON/MON_0001.tiff MON MOB MON\nMON/MON_0002.tiff MON MON MON\nPMO/PMO_0001.tiff PMO MYO MYO\n")
    by_class = human_agreement(path)["reann1"]["blast_calls_by_class"]
    assert by_class == {"MON": {"n": 2, "called_blast": 1}, "PMO": {"n": 1, "called_blast": 1}}
