"""How pipelines/slide_agreement.py lays the locked cells on slides: one specimen a slide."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from wsi_screen.classes import CLASS_CODES
from wsi_screen.errors import ModelError
from wsi_screen.registry import ModelCard, create_model, load_card, load_model, save_weights
from wsi_screen.summarize import rates_from_card

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


def test_a_final_runs_model_borrows_held_out_rates(monkeypatch, tmp_path):
    """A final run's model has no held-out rates, so screen cannot correct its prevalence; the
    pipeline screens a copy carrying another card's rates and the model's own weights, unchanged."""
    monkeypatch.syspath_prepend(str(PIPELINES))
    from slide_agreement import with_rates

    torch.manual_seed(0)
    model = create_model("resnext_compact").eval()
    final = save_weights(model, ModelCard("resnext_compact", 64, metrics={"val_loss": 0.5}), tmp_path / "final.pt", half=False)
    confusion = np.eye(len(CLASS_CODES), dtype=int) * 10
    confusion[0, CLASS_CODES.index("MYO")] = 3  # three of 13 NGS called blasts
    donor_metrics = {"test": {"confusion": confusion.tolist()}, "confident_negatives": {}, "patient_effect": {}}
    donor = save_weights(model, ModelCard("resnext_compact", 64, metrics=donor_metrics), tmp_path / "donor.pt")
    with pytest.raises(ModelError, match="no held-out confusion"):
        rates_from_card(load_card(final))

    screened = with_rates(*load_model(final), donor, tmp_path)
    rates = rates_from_card(load_card(screened))
    assert rates["blast"].specificity == pytest.approx(1 - 3 / 133)  # 13 non-blast rows of 10, NGS 3 more
    assert load_card(screened).metrics["val_loss"] == 0.5  # its own metrics kept
    borrowed, _ = load_model(screened)
    for (name, a), b in zip(model.state_dict().items(), borrowed.state_dict().values()):
        assert torch.equal(a, b), name
