"""Screen generated smears of real cells with known blast prevalence (0 %, 0.5 %, 5 %): DeepAPL
blasts among PBC and DeepAPL normal cells, so the model must recognise blasts, not a lab."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import shared
from wsi_screen.config import Config
from wsi_screen.screen import ScreenOptions, screen_slide
from wsi_screen.synth import NORMAL_MIX, make_slide

N_CELLS = 300


@pytest.fixture(scope="module")
def data_dir():
    from wsi_screen.registry import DEFAULT_WEIGHTS, load_model

    _, card = load_model(DEFAULT_WEIGHTS)
    auc = card.metrics["targets"]["blast_auc"]
    if not auc["met"]:
        pytest.skip(f"the shipped classifier misses its blast target (held-out AUC {auc['measured']:.3f}, target {auc['target']}): prevalence recovery is not expected of it yet")
    return shared("cells", "manifest.csv").parent.parent


@pytest.mark.parametrize("prevalence, should_flag", [(0.0, False), (0.005, True), (0.05, True)])
def test_known_blast_prevalence(tmp_path, data_dir, prevalence, should_flag):
    mix = {code: share * (1 - prevalence) for code, share in NORMAL_MIX.items()}
    if prevalence:
        mix["MYO"] = prevalence
    synth = make_slide(
        tmp_path / f"blast_{prevalence}.tiff", width=14000, height=4400, mpp=0.25, n_leukocytes=N_CELLS,
        class_mix=mix, sources=("pbc", "deepapl"), data_dir=data_dir, seed=int(prevalence * 1000) + 1,
    )  # fmt: skip
    true_blasts = sum(c.code in ("MYO", "MOB") for c in synth.cells)
    assert abs(true_blasts - prevalence * N_CELLS) < 1
    summary = screen_slide(synth.path, tmp_path / "out", Config(), ScreenOptions(aoi=str(synth.geojson), workers=2, progress=False))
    report = json.loads((summary.out_dir / "report.json").read_text())
    n = report["n_leukocytes"]
    assert abs(n - N_CELLS) <= 0.02 * N_CELLS
    b, rates = report["blast"], report["error_rates"]["blast"]
    expected = rates["sensitivity"] * true_blasts + (1 - rates["specificity"]) * (n - true_blasts)
    sd = np.sqrt(true_blasts * rates["sensitivity"] * (1 - rates["sensitivity"]) + (n - true_blasts) * rates["specificity"] * (1 - rates["specificity"]))
    print(f"prevalence {prevalence}: count {b['count']} (true {true_blasts}, expected {expected:.1f}), corrected {b['prevalence']:.4f} CI {b['ci95']}, flag {b['flag']} ({b['rule']})")
    assert abs(b["count"] - expected) <= 3 * sd + 1  # within the classifier's measured error
    assert b["ci95"][0] <= true_blasts / len(synth.cells) <= b["ci95"][1]
    assert b["flag"] is should_flag
