"""How pipelines/slide_agreement.py lays the locked cells on slides: one specimen a slide."""

from pathlib import Path

import pandas as pd

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def test_each_slide_holds_one_specimen(monkeypatch):
    """A DeepAPL patient's cells share a slide only with that patient's; PBC's donors (no ids) are
    one specimen; a specimen larger than a slide fills several, in file order."""
    monkeypatch.syspath_prepend(str(PIPELINES))  # the pipeline imports its sibling doc_tables as a script does
    from slide_agreement import specimen_slides

    locked = pd.DataFrame(
        {
            "file": ["a1", "p1", "a2", "b1", "p2", "a3", "p3"],
            "class": ["MYO", "NGS", "MON", "LYT", "EOS", "MYO", "BAS"],
            "source": ["deepapl", "pbc", "deepapl", "deepapl", "pbc", "deepapl", "pbc"],
            "patient": ["Patient_1:AML", None, "Patient_1:AML", "Patient_2:APL", None, "Patient_1:AML", None],
        }
    )
    slides = specimen_slides(locked, per_slide=2)
    assert slides == [
        [("a1", "MYO"), ("a2", "MON")],
        [("a3", "MYO")],
        [("b1", "LYT")],
        [("p1", "NGS"), ("p2", "EOS")],
        [("p3", "BAS")],
    ]
