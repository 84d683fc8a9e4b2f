"""The shipped classifier: its card says what it sees and where it comes from, and it runs on real cells."""

import json

import pandas as pd
import pytest

from wsi_screen.classes import CLASS_CODES
from wsi_screen.classify import classify_files
from wsi_screen.model_files import DEFAULT_WEIGHTS
from wsi_screen.registry import default_input_px, load_model


@pytest.fixture(scope="module")
def shipped():
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"no shipped weights at {DEFAULT_WEIGHTS} (produced by pipelines/train_classifier.py)")
    return load_model(DEFAULT_WEIGHTS)


def test_card(shipped):
    _, card = shipped
    assert card.class_codes == CLASS_CODES and card.field_um == 29.0 and card.input_px >= default_input_px(card.arch)
    assert card.reject_codes == ("NLK",) and 0.2 < card.temperature < 5
    assert "RESEARCH USE ONLY" in card.provenance["data"]["deepapl"]
    targets = card.metrics["targets"]
    assert {
        "blast_auc",
        "atypical_auc",
        "blast_auc_deepapl",
        "false_blast_rate_pbc",
        "false_blast_rate_deepapl",
        "mean_sensitivity",
    } <= set(targets)
    assert all({"out_of_fold", "locked", "met"} <= set(targets[k]) for k in ("blast_auc", "blast_auc_deepapl", "mean_sensitivity"))
    assert DEFAULT_WEIGHTS.stat().st_size < 25e6
    assert json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())["arch"] == card.arch


def test_recognises_real_eosinophils(shipped, shared_cells):
    model, card = shipped
    m = pd.read_csv(shared_cells)
    eos = m[(m["class"] == "EOS") & (m["source"] == "pbc")].head(6)
    r = classify_files(model, card, [str(shared_cells.parent / f) for f in eos["file"]], input_mpp=0.1, device="cpu")
    assert (r.probs.argmax(1) == CLASS_CODES.index("EOS")).sum() >= 5
