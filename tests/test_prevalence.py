"""Screen generated smears of real held-out cells with known blast prevalence (0 %, 0.5 %, 5 %):
DeepAPL blasts among PBC and DeepAPL normal cells, so the model must recognise blasts, not a lab."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsi_screen.classes import BLAST
from wsi_screen.config import Config
from wsi_screen.screen import ScreenOptions, screen_slide
from wsi_screen.synth import NORMAL_MIX, make_slide

from .conftest import shared

N_CELLS = 300


@pytest.fixture(scope="module")
def held_out_split():
    """The shared cells folder, the shipped model and card, and its held-out split's table
    (recomputed: the split is a pure function of the data and the seed; checked against the card),
    so the tests use only cells the model never saw, as its measured error rates assume."""
    from wsi_screen.cell_images import load_table
    from wsi_screen.config import TrainConfig
    from wsi_screen.registry import DEFAULT_WEIGHTS, load_model
    from wsi_screen.train.splits import train_val_test

    cells = shared("cells", "manifest.csv").parent
    model, card = load_model(DEFAULT_WEIGHTS)
    cfg = TrainConfig()
    table = load_table(cells)
    split = train_val_test(table, cfg.holdout_frac, cfg.val_frac, cfg.seed)
    parts = {part: table[split == part].reset_index(drop=True) for part in ("test", "val")}
    for part, rows in parts.items():
        expected = card.metrics["split"][part]
        assert len(rows) == expected["images"] and rows["label"].isin(BLAST).sum() == expected["blasts"]
    return cells, model, card, parts


@pytest.fixture(scope="module")
def held_out(held_out_split):
    """The shared data dir and the manifest files of the held-out split (for make_slide)."""
    cells, _, _, parts = held_out_split
    return cells.parent, {str(Path(f).resolve().relative_to(cells.resolve())) for f in parts["test"]["file"]}


@pytest.mark.parametrize("prevalence, should_flag", [(0.0, False), (0.005, None), (0.05, True)])
def test_known_blast_prevalence(tmp_path, held_out, prevalence, should_flag):
    """Screened end to end: the leukocyte count, the blast count within the classifier's measured
    error, the CI covering the placed prevalence, and the flag. At 0.5 % the slide holds one blast,
    which no rule can tell from one false call (the flags need `blast_min_cells` = 2): whether a
    0.5 % population flags is measured on 2000-cell smears below."""
    data_dir, files = held_out
    mix = {code: share * (1 - prevalence) for code, share in NORMAL_MIX.items()}
    if prevalence:
        mix["MYO"] = prevalence
    synth = make_slide(
        tmp_path / f"blast_{prevalence}.tiff", width=14000, height=4400, mpp=0.25, n_leukocytes=N_CELLS,
        class_mix=mix, sources=("pbc", "deepapl"), data_dir=data_dir, only_files=files, seed=int(prevalence * 1000) + 1,
    )  # fmt: skip
    true_blasts = sum(c.code in BLAST for c in synth.cells)
    assert abs(true_blasts - prevalence * N_CELLS) < 1
    summary = screen_slide(synth.path, tmp_path / "out", Config(), ScreenOptions(aoi=str(synth.geojson), workers=2, progress=False))
    report = json.loads((summary.out_dir / "report.json").read_text())
    n = report["n_leukocytes"]
    assert abs(n - N_CELLS) <= 0.02 * N_CELLS
    b, se = report["blast"], report["error_rates"]["blast"]["sensitivity"]
    sp = b["specificity_on_this_slide"]  # the held-out error rates on this slide's own cell mix
    expected = se * true_blasts + (1 - sp) * (n - true_blasts)
    sd = np.sqrt(true_blasts * se * (1 - se) + (n - true_blasts) * sp * (1 - sp))
    print(
        f"prevalence {prevalence}: n {n}, count {b['count']} (true {true_blasts}, expected {expected:.1f}), specificity {sp:.4f}, "
        f"corrected {b['prevalence']:.4f} CI {b['ci95']}, flag {b['flag']} ({b['rule']})"
    )
    assert abs(b["count"] - expected) <= 3 * sd + 1  # within the classifier's measured error
    assert b["ci95"][0] <= true_blasts / len(synth.cells) <= b["ci95"][1]
    if should_flag is not None:
        assert b["flag"] is should_flag


def _meets_blast_targets(card) -> bool:
    targets = card.metrics["targets"]
    return targets["blast_auc"]["met"] and targets["blast_auc_deepapl"]["met"]


SMEAR_CELLS = 2000
SMEARS = 40


@pytest.fixture(scope="module")
def split_probabilities(held_out_split):
    """The shipped classifier's probabilities for every cell of the held-out (test) and
    validation splits, with each cell's true class and lab."""
    from wsi_screen.classify import classify_files
    from wsi_screen.registry import for_inference

    _, model, card, parts = held_out_split
    model = for_inference(model, "cpu")
    out = {}
    for part, rows in parts.items():
        probs = classify_files(model, card, rows["file"].tolist(), rows["mpp"].tolist(), device="cpu").probs
        out[part] = (probs, rows["label"].to_numpy(), rows["source"].to_numpy())
    return card, out


def _smears(probs, labels, normal, prevalence, seed):
    """SMEARS smears of SMEAR_CELLS cells resampled from real model outputs: NORMAL_MIX drawn from
    the `normal` rows, blasts (MYO, MOB) from any lab, at `prevalence`."""
    blasts = probs[np.isin(labels, BLAST)]
    n_blasts = round(prevalence * SMEAR_CELLS)
    counts = {code: round(share * (SMEAR_CELLS - n_blasts)) for code, share in NORMAL_MIX.items()}
    by_class = {code: probs[normal & (labels == code)] for code in counts}
    rng = np.random.default_rng(seed)
    for _ in range(SMEARS):
        cells = [by_class[c][rng.integers(len(by_class[c]), size=k)] for c, k in counts.items()]
        yield np.vstack(cells + [blasts[rng.integers(len(blasts), size=n_blasts)]]), n_blasts / SMEAR_CELLS


def _blast_records(card, smears):
    from wsi_screen.aggregate import blast_and_atypical
    from wsi_screen.config import AggregateConfig
    from wsi_screen.summarize import rates_from_card

    rates, cfg = rates_from_card(card), AggregateConfig(bootstrap_samples=500)
    return [(blast_and_atypical(cells, rates, cfg)["blast"], truth) for cells, truth in smears]


@pytest.mark.parametrize("prevalence", [0.0, 0.005])
def test_flag_rate_on_smears_of_real_held_out_cells(split_probabilities, prevalence):
    """The 0.5 % flag where 0.5 % is a population (see test_known_blast_prevalence):
    40 smears of 2000 cells drawn from the held-out cells' real model outputs
    (normal mix of both labs, DeepAPL blasts), aggregated as `screen` does. 0 % must flag in at
    most 5 % of smears; 0.5 % in at least 80 %."""
    card, parts = split_probabilities
    probs, labels, _ = parts["test"]
    flags = [b.flag for b, _ in _blast_records(card, _smears(probs, labels, np.ones(len(labels), bool), prevalence, 11))]
    rate = float(np.mean(flags))
    print(f"prevalence {prevalence}: {sum(flags)} of {SMEARS} smears of {SMEAR_CELLS} cells flagged ({rate:.0%})")
    if prevalence == 0:
        assert rate <= 0.05
    elif rate < 0.8 and not _meets_blast_targets(card):
        pytest.xfail(
            f"the shipped classifier flags a 0.5 % population in {rate:.0%} of 2000-cell smears: it misses its blast targets (issue 3)"
        )
    else:
        assert rate >= 0.8


@pytest.mark.parametrize("part", ["test", "val"])
def test_interval_on_smears_of_one_lab(split_probabilities, part):
    """Smears whose normal cells all come from one lab, as a real slide's do, not the mix of both
    labs the error rates were measured on. Normal donors' cells (PBC) are almost never called
    blasts, so the measured rates over-correct them: the interval must still cover a rare blast
    population (it did not: 0 % coverage at 0.5 %, the 8 true calls subtracted as false ones),
    stay useful, and 0 % / 5 % must not flag / flag. AML patients' non-blast cells (DeepAPL) are
    printed, not asserted: their blast calls vary between patients beyond what the interval holds
    (see docs/classifier.md)."""
    card, parts = split_probabilities
    probs, labels, sources = parts[part]
    for lab in ("deepapl", "pbc"):
        for prevalence in (0.0, 0.005, 0.05):
            records = _blast_records(card, _smears(probs, labels, sources == lab, prevalence, 3))
            covered = np.mean([b.ci95[0] <= truth <= b.ci95[1] for b, truth in records])
            width = np.mean([b.ci95[1] - b.ci95[0] for b, _ in records])
            flagged = np.mean([b.flag for b, _ in records])
            print(f"{part} {lab} {prevalence:.1%}: coverage {covered:.0%}, mean width {width:.2%}, flagged {flagged:.0%}")
            if lab == "pbc":
                assert covered >= 0.9 and width < 0.04
                if prevalence == 0:
                    assert flagged <= 0.05
                if prevalence == 0.05:
                    assert flagged >= 0.8
