"""End to end on tiny generated data (and a few real crops): the train CLI, resume, per-fold runs, then classify and evaluate."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from wsi_screen.classes import CLASS_CODES
from wsi_screen.cli import main
from wsi_screen.registry import load_model
from wsi_screen.train.export import export

from .conftest import shared

TINY = {
    "train": {
        "epochs": 1,
        "per_class_per_epoch": 4,
        "batch_size": 16,
        "num_workers": 0,
        "input_px": 32,
        "holdout_frac": 0.25,
        "val_frac": 0.34,
    }
}


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_train_resume_classify_evaluate(folder_tree, tiny_config, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(folder_tree), "-o", str(run), "--config", str(tiny_config)]) == 0
    for name in (
        "split.csv",
        "config.yaml",
        "last.pt",
        "best.pt",
        "model.pt",
        "model.json",
        "history.csv",
        "preds_val.csv",
        "preds_test.csv",
    ):
        assert (run / name).is_file(), name
    card = json.loads((run / "model.json").read_text())
    assert card["input_px"] == 32 and card["field_um"] == 29.0 and card["reject_codes"] == ["NLK"] and card["temperature"] > 0
    # resume: a longer schedule continues from epoch 1
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump({"train": {**TINY["train"], "epochs": 2}}))
    assert main(["train", str(folder_tree), "-o", str(run), "--config", str(longer)]) == 0
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2]

    preds = tmp_path / "preds.csv"
    assert main(["classify", str(folder_tree), "-o", str(preds), "--model", str(run / "model.pt")]) == 0
    p = pd.read_csv(preds)
    assert list(p.columns) == ["file", *CLASS_CODES, "p_blast", "p_atypical", "predicted", "p_reject", "needs_review"]
    assert len(p) == 64 and p[list(CLASS_CODES)].sum(axis=1).round(6).eq(1).all()
    assert main(["evaluate", str(run / "preds_test.csv"), str(run / "split.csv"), "-o", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {"table1", "blast_test", "atypical_test", "macro_f1", "balanced_accuracy"} <= set(report)
    assert (tmp_path / "report" / "confusion.png").stat().st_size > 1000


@pytest.mark.slow
def test_export_card_from_cross_validation_and_final_run(folder_tree, tiny_config, tmp_path):
    """A manifest of two sources (PBC without patients, DeepAPL with), a locked list never trained
    on, 2-fold CV and the final run: the card's out-of-fold and locked figures are those of the
    predictions, every target is stated on both, and the lab checks are filled in."""
    import hashlib

    import numpy as np

    from wsi_screen.evaluate import full_summary
    from wsi_screen.train.export import locked_rows, out_of_fold

    files = sorted(f.relative_to(folder_tree).as_posix() for f in folder_tree.rglob("*.png"))
    rows = [(f, f.split("/")[0], "deepapl" if i % 2 else "pbc", f"Patient_{i % 8}:AML" if i % 2 else "") for i, f in enumerate(files)]
    manifest = pd.DataFrame(rows, columns=["file", "class", "source", "patient"]).assign(source_label="x")
    manifest.to_csv(folder_tree / "manifest.csv", index=False)
    locked = manifest[(manifest["patient"] == "Patient_1:AML") | (manifest.index % 8 == 0)][["file", "class", "source", "patient"]]
    lock = tmp_path / "locked.csv"
    locked.to_csv(lock, index=False)
    (tmp_path / "locked.csv.sha256").write_text(hashlib.sha256(lock.read_bytes()).hexdigest() + "  locked.csv\n")
    common = ["--config", str(tiny_config), "--exclude", str(lock)]
    for k in range(2):
        assert main(["train", str(folder_tree), "-o", str(tmp_path / "cv"), "--folds", "2", "--fold", str(k), *common]) == 0
    assert main(["train", str(folder_tree), "-o", str(tmp_path / "final"), "--final", *common]) == 0
    # a fold model carries its own held-out error rates, so `screen` can correct a slide's prevalence with it
    from wsi_screen.evaluate import joined, read_labels
    from wsi_screen.summarize import rates_from_card

    fold = tmp_path / "cv" / "fold_0"
    split = pd.read_csv(fold / "split.csv", dtype={"patient": str})
    split[split["split"] == "test"].to_csv(tmp_path / "fold_0_test.csv", index=False)
    held_out = joined(fold / "preds_test.csv", read_labels(tmp_path / "fold_0_test.csv"))
    fold_card = load_model(fold / "model.pt")[1]
    assert fold_card.metrics["test"]["confusion"] == full_summary(held_out)["confusion"]
    assert fold_card.metrics["test"]["n_images"] == len(held_out) > 0
    assert rates_from_card(fold_card)["blast"].n_negative == (~held_out["class"].isin(["MYO", "MOB"])).sum()
    assert not load_model(tmp_path / "final" / "model.pt")[1].metrics  # no held-out cells: the export gives its rates
    final_split = pd.read_csv(tmp_path / "final" / "split.csv")
    # every unlocked cell trains the model to ship (none held back), the locked ones never
    assert set(final_split["split"]) == {"train"} and not set(final_split["file"]) & {str(folder_tree / f) for f in locked["file"]}
    assert len(final_split) == (~manifest.index.isin(locked.index)).sum()

    shipped = export(tmp_path / "final", tmp_path / "cv", 2, folder_tree, tmp_path / "w" / "classifier.pt", locked=lock)
    card = json.loads(shipped.with_suffix(".json").read_text())
    assert load_model(shipped)[1].metrics["headline"]  # loads with weights_only (plain types only)
    fold_temperatures = [load_model(tmp_path / "cv" / f"fold_{k}" / "model.pt")[1].temperature for k in range(2)]
    assert load_model(tmp_path / "final" / "model.pt")[1].temperature == 1.0  # until the export
    assert card["temperature"] == pytest.approx(np.mean(fold_temperatures))  # calibrated as its folds were
    m = card["metrics"]
    oof = out_of_fold(tmp_path / "cv", 2)
    unlocked_leukocytes = (~manifest.index.isin(locked.index) & manifest["class"].ne("PLT")).sum()
    assert len(oof) == m["data"]["out_of_fold"]["images"] == unlocked_leukocytes
    assert m["headline"]["out_of_fold"]["blast_auc"] == pytest.approx(full_summary(oof)["blast_test"]["auc"])
    assert m["test"]["confusion"] == full_summary(oof)["confusion"]  # the operating rates come from out of fold
    from wsi_screen.evaluate import patient_effects

    assert m["patient_effect"] == patient_effects(oof)  # how far one patient strays, out of fold too
    assert m["locked"]["n_images"] == len(locked_rows(folder_tree, lock)) == (~locked["class"].eq("PLT")).sum()
    assert set(m["targets"]) == {
        "blast_auc",
        "blast_auc_deepapl",
        "atypical_auc",
        "mean_sensitivity",
        "false_blast_rate_pbc",
        "false_blast_rate_deepapl",
        "stain_transfer_class_change_pbc",
        "blast_flag_rate_0.005_locked",
        "blast_flag_rate_0.0_locked",
        "reject_rate_locked",
    }
    rejects = m["reject_rates_locked"]
    assert sum(c["n"] for c in rejects["per_class"].values()) == m["locked"]["n_images"]
    assert m["targets"]["reject_rate_locked"]["locked"] == rejects["max_share"] == max(c["share"] for c in rejects["per_class"].values())
    assert m["targets"]["blast_auc"]["target"] == ">= 0.985" and {"out_of_fold", "locked", "met"} <= set(m["targets"]["blast_auc"])
    rows = locked_rows(folder_tree, lock)
    assert 0 < m["stain_transfer_to_deepapl"]["n_cells"] == (rows["source"].eq("pbc") & ~rows["class"].isin(["MYO", "MOB"])).sum()
    assert np.isfinite(m["stain_transfer_to_deepapl"]["class_changed"])
    assert len(m["shift_robustness"]) == 8 and "RESEARCH USE ONLY" in card["provenance"]["data"]["deepapl"]
    # the card records its training leukocytes' colours; its own training cells lie inside them
    from wsi_screen.cell_images import load_canvas
    from wsi_screen.classes import CLASS_CODES
    from wsi_screen.colour_range import colour_moments, outside_colour_range

    trained = final_split[final_split["split"].eq("train") & final_split["class"].isin(CLASS_CODES)]
    assert card["colour_range"]["cells"] == len(trained) > 0 and card["colour_range"]["quantile"] == 0.99
    c = load_model(shipped)[1]
    fields = np.stack([load_canvas(f, mpp, c.mpp, c.input_px, c.field_um) for f, mpp in zip(trained["file"], trained["mpp"])])
    assert outside_colour_range(colour_moments(fields), c.colour_range).sum() <= 1  # beyond the 99th percentile of themselves
    # the smear flag rate reproduces from the shipped card's own rates and the model's outputs
    from wsi_screen.classify import classify_files
    from wsi_screen.summarize import rates_from_card
    from wsi_screen.train.smears import flag_rates

    model, loaded = load_model(shipped)
    probs = classify_files(model, loaded, rows["file"].tolist(), rows["mpp"].tolist(), device="cpu").probs
    from wsi_screen.evaluate import json_safe

    assert m["blast_flag_rates"]["locked"] == json_safe(
        flag_rates(probs, rows["class"].to_numpy(), np.ones(len(rows), bool), rates_from_card(loaded))
    )
    assert set(m["blast_flag_rates"]["by_fold"]) == {"0", "1"} and m["targets"]["blast_flag_rate_0.005_locked"]["target"] == ">= 0.8"
    assert any("PMB" in s for s in card["provenance"]["limitations"]) and any("lymphoblast" in s for s in card["provenance"]["limitations"])
    (folder_tree / "manifest.csv").unlink()  # the tree is shared with other tests as a plain folder tree


def test_one_fold_of_cv(lmu_tree, tiny_config, tmp_path):
    run = tmp_path / "cv"
    assert main(["train", str(lmu_tree), "-o", str(run), "--config", str(tiny_config), "--folds", "3", "--fold", "1"]) == 0
    split = pd.read_csv(run / "fold_1" / "split.csv")
    assert (split["split"] == "test").sum() == 15 and (run / "fold_1" / "model.pt").is_file()
    assert not (run / "fold_0").exists()


@pytest.mark.slow
def test_cross_validation_pipeline(lmu_tree, tiny_config, tmp_path):
    """Every fold trained, each image held out exactly once, Table 1 and the AUCs as mean ± SD."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    run = tmp_path / "cv"
    data = os.path.relpath(lmu_tree, repo)  # relative to where it runs: labels and predictions must still meet
    cmd = [sys.executable, "pipelines/cross_validate.py", data, "-o", str(run), "--folds", "3", "--config", str(tiny_config)]
    done = subprocess.run(cmd, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3-fold CV: blast AUC" in done.stdout
    labels = pd.read_csv(run / "labels.csv")
    assert len(labels) == 45 and labels["file"].is_unique and sorted(labels["fold"].unique()) == [0, 1, 2]
    report = json.loads((run / "report" / "report.json").read_text())
    aucs = [r["blast_test"]["auc"] for r in report["runs"]]
    assert len(aucs) == 3 and report["blast_test"]["auc"]["sd"] == pytest.approx(float(np.std(aucs, ddof=1)))
    table = pd.read_csv(run / "report" / "table1.csv", index_col="class")
    assert table.loc["MYO", "n"] == 3 and {"sensitivity", "sensitivity_sd"} <= set(table.columns)


def test_bad_fold_is_one_line(lmu_tree, tmp_path, capsys):
    assert main(["train", str(lmu_tree), "-o", str(tmp_path / "x"), "--folds", "3", "--fold", "3"]) == 2
    assert "--fold" in capsys.readouterr().err


def test_warm_start_from_a_weights_file(folder_tree, tmp_path, capsys):
    import torch

    from wsi_screen.registry import ModelCard, create_model, save_weights

    torch.manual_seed(3)
    init = save_weights(create_model("resnext_compact", 16), ModelCard("resnext_compact", 32, reject_codes=("NLK",)), tmp_path / "init.pt")
    cfg = tmp_path / "warm.yaml"
    cfg.write_text(yaml.safe_dump({"train": {**TINY["train"], "lr": 1e-9, "init_weights": str(init)}}))
    assert main(["train", str(folder_tree), "-o", str(tmp_path / "run"), "--config", str(cfg)]) == 0
    start = torch.load(init, weights_only=True)["state_dict"]
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    conv = next(k for k in start if k.endswith("conv1.weight"))
    assert torch.allclose(best[conv], start[conv].float(), atol=1e-3)  # lr≈0: still the initial weights
    # a later stage of a multi-stage recipe: the same start from the command line, recorded in the run's config
    cfg.write_text(yaml.safe_dump({"train": {**TINY["train"], "lr": 1e-9}}))
    assert main(["train", str(folder_tree), "-o", str(tmp_path / "stage2"), "--config", str(cfg), "--init-weights", str(init)]) == 0
    stage2 = torch.load(tmp_path / "stage2" / "best.pt", weights_only=True)
    assert torch.allclose(stage2[conv], start[conv].float(), atol=1e-3)
    assert yaml.safe_load((tmp_path / "stage2" / "config.yaml").read_text())["train"]["init_weights"] == str(init.resolve())
    cfg.write_text(yaml.safe_dump({"train": {**TINY["train"], "init_weights": str(tmp_path / "nope.pt")}}))
    assert main(["train", str(folder_tree), "-o", str(tmp_path / "run2"), "--config", str(cfg)]) == 2
    assert "nope.pt: train.init_weights: no such file" in capsys.readouterr().err


def _shaped_cell(code: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A drawn cell whose class is its nuclear shape, not its colour: one colour range for all four
    classes, random size, position, orientation and noise; only the shape tells the class."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    cy, cx = size / 2 + rng.uniform(-4, 4, 2)
    r = size * rng.uniform(0.28, 0.34)
    turn = rng.uniform(0, 2 * np.pi)
    dy, dx = yy - cy, xx - cx
    u, v = dx * np.cos(turn) + dy * np.sin(turn), -dx * np.sin(turn) + dy * np.cos(turn)
    cell = np.hypot(u, v) <= r
    if code == "LYT":  # one round nucleus filling the cell
        nucleus = np.hypot(u, v) <= 0.8 * r
    elif code == "NGS":  # three separate lobes
        nucleus = np.zeros_like(cell)
        for k in range(3):
            a = 2 * np.pi * k / 3
            nucleus |= np.hypot(u - 0.5 * r * np.cos(a), v - 0.5 * r * np.sin(a)) <= 0.25 * r
    elif code == "MON":  # a horseshoe
        ring = (np.hypot(u, v) <= 0.7 * r) & (np.hypot(u, v) >= 0.35 * r)
        nucleus = ring & (u < 0.3 * r)
    else:  # EOS: a small eccentric nucleus in a cytoplasm full of coarse granules
        nucleus = np.hypot(u - 0.45 * r, v) <= 0.3 * r
        nucleus |= cell & (rng.random(cell.shape) < 0.12)
    base = rng.uniform(200, 245)
    img = np.full((size, size, 3), base)
    img[cell] = rng.uniform(170, 200, 3)
    img[nucleus] = rng.uniform(70, 110, 3)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def test_training_learns_four_generated_classes(tmp_path):
    """The training loop itself learns: 4 classes told apart only by nuclear shape, 60 images each,
    a tiny ResNeXt at 48 px for 10 × 192 samples (about a minute on two quiet cores); the held-out
    quarter is classified at least 80 % right (chance: 25 %)."""
    from PIL import Image

    rng = np.random.default_rng(11)
    tree = tmp_path / "tree"
    for code in ("LYT", "NGS", "MON", "EOS"):
        (tree / code).mkdir(parents=True)
        for i in range(60):
            Image.fromarray(_shaped_cell(code, 96, rng)).save(tree / code / f"{code}_{i}.png")
    cfg = tmp_path / "learn.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "train": {
                    "arch": "resnext_compact",
                    "input_px": 48,
                    "epochs": 10,
                    "per_class_per_epoch": 48,
                    "batch_size": 16,
                    "num_workers": 0,
                    "holdout_frac": 0.25,
                    "val_frac": 0.2,
                    "lr": 0.003,
                    "label_smoothing": 0.0,
                    "jpeg_prob": 0.0,
                }
            }
        )
    )
    run = tmp_path / "run"
    assert main(["train", str(tree), "-o", str(run), "--config", str(cfg), "--threads", "2"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["threads"] == 2  # --threads overrides the config
    preds = pd.read_csv(run / "preds_test.csv")
    split = pd.read_csv(run / "split.csv")
    truth = preds["file"].map(dict(zip(split["file"], split["class"])))
    assert len(preds) >= 50 and truth.notna().all()
    assert (preds["predicted"] == truth).mean() >= 0.8


def test_sampling_weights_balance_classes_and_optionally_their_sources():
    """DeepAPL's 800 segmented neutrophils to 106 bands against PBC's 450 of each: by class alone
    the sampled neutrophils' source tells their class; balanced by source it does not."""
    from wsi_screen.train.loop import sampling_weights

    targets = np.array([0] * 800 + [0] * 450 + [1] * 106 + [1] * 450 + [2] * 30)
    sources = np.array(["deepapl"] * 800 + ["pbc"] * 450 + ["deepapl"] * 106 + ["pbc"] * 450 + ["deepapl"] * 30)

    def shares(balance_sources: bool) -> dict:
        w = sampling_weights(targets, sources, balance_sources)
        return {(t, s): w[(targets == t) & (sources == s)].sum() / w.sum() for t in (0, 1, 2) for s in ("deepapl", "pbc")}

    by_class = shares(False)
    assert [by_class[t, "deepapl"] + by_class[t, "pbc"] for t in (0, 1, 2)] == pytest.approx([1 / 3] * 3)
    assert by_class[0, "deepapl"] / (1 / 3) == pytest.approx(800 / 1250)  # sources in their data's proportion
    assert by_class[1, "deepapl"] / (1 / 3) == pytest.approx(106 / 556)
    by_source = shares(True)
    assert [by_source[t, s] for t in (0, 1) for s in ("deepapl", "pbc")] == pytest.approx([1 / 6] * 4)
    assert by_source[2, "deepapl"] == pytest.approx(1 / 3)


def test_sampling_weights_draw_the_named_targets_twice():
    """Promyelocytes (target 1) drawn twice: their share doubles against each other class's, and
    within the class the sources keep their proportion."""
    from wsi_screen.train.loop import sampling_weights

    targets = np.array([0] * 100 + [1] * 300 + [1] * 100 + [2] * 40)
    sources = np.array(["pbc"] * 100 + ["pbc"] * 300 + ["deepapl"] * 100 + ["deepapl"] * 40)
    w = sampling_weights(targets, sources, False, None, [1])
    share = [w[targets == t].sum() / w.sum() for t in (0, 1, 2)]
    assert share == pytest.approx([0.25, 0.5, 0.25])
    assert w[400:500].sum() / w[targets == 1].sum() == pytest.approx(0.25)


def test_sampling_weights_damp_a_patient_who_holds_most_of_a_class():
    """One APL patient with 144 promyelocytes, four with 4 each, 16 PBC images without a patient:
    by patient, each patient's share of its class (and source) follows the root of its cells; images
    without an id count as their own patients, so PBC is sampled as without the option."""
    from wsi_screen.train.loop import sampling_weights

    targets = np.array([0] * (144 + 16 + 16) + [1] * 30)
    sources = np.array(["deepapl"] * 160 + ["pbc"] * 16 + ["pbc"] * 30)
    patients = np.array(["P1"] * 144 + [p for p in ("P2", "P3", "P4", "P5") for _ in range(4)] + [""] * 16 + [np.nan] * 30, object)
    w = sampling_weights(targets, sources, True, patients)
    share = {p: w[patients == p].sum() / w.sum() for p in ("P1", "P2")}
    assert share["P1"] == pytest.approx(0.25 * 12 / (12 + 4 * 2))  # class 0: half; DeepAPL: half of it; sqrt 144 : 4 x sqrt 4
    assert share["P2"] == pytest.approx(0.25 * 2 / (12 + 4 * 2))
    assert w[160:176].sum() / w.sum() == pytest.approx(0.25)
    assert np.allclose(w[targets == 1], w[-1])  # no ids: every image alike
    assert np.allclose(sampling_weights(targets, sources, True, np.full(len(targets), "")), sampling_weights(targets, sources, True))
    untouched = sampling_weights(targets, sources, True)
    assert untouched[:144].sum() / untouched.sum() == pytest.approx(0.25 * 144 / 160)  # in proportion without the option


@pytest.mark.slow
def test_training_with_context_and_source_balance_on_real_crops(tmp_path):
    """`train` with train.context_prob, train.balance_sources, train.balance_patients,
    train.stain_mix, train.drawn_twice, train.standardise_colours and train.slide_colours on 36 real
    PBC crops labelled as two sources and three patients: it cuts the cells once into the alpha
    cache, trains, and its card keeps the colour standard and the slide colour target (the training
    cells' mean CIELAB statistics, each measured its own way)."""
    cells = shared("cells")
    manifest = pd.read_csv(cells / "manifest.csv")
    picked = pd.concat([manifest[(manifest["class"] == c) & (manifest["source"] == "pbc")].head(12) for c in ("NGS", "LYT", "EOS")])
    picked = picked.assign(source=["lab_a", "lab_b"] * (len(picked) // 2), patient=["P1", "P2", "P3"] * (len(picked) // 3))
    data = tmp_path / "cells"
    data.mkdir()
    for code in ("NGS", "LYT", "EOS"):
        (data / code).symlink_to(cells / code)
    picked.to_csv(data / "manifest.csv", index=False)
    cfg = tmp_path / "context.yaml"
    options = {
        "context_prob": 1.0,
        "balance_sources": True,
        "balance_patients": True,
        "stain_mix": 0.5,
        "drawn_twice": ["EOS"],
        "standardise_colours": True,
        "slide_colours": True,
    }
    cfg.write_text(yaml.safe_dump({"train": {**TINY["train"], **options}}))
    run = tmp_path / "run"
    assert main(["train", str(data / "manifest.csv"), "-o", str(run), "--config", str(cfg)]) == 0
    (alpha_file,) = run.glob("alpha_*.npy")
    alphas = np.load(alpha_file)
    assert alphas.shape[0] == len(picked) and (alphas.reshape(len(picked), -1).max(1) == 255).mean() >= 0.8
    _, card = load_model(run / "model.pt")
    reference = np.array(card.colour_reference)
    assert reference.shape == (6,) and 50 < reference[0] < 95 and (reference[3:] > 1).all()  # a smear's lightness, real spreads
    target = np.array(card.slide_colour_target)
    assert target.shape == (6,) and np.abs(target - reference).max() < 3  # every other pixel of the same fields
