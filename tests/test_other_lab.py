"""Another lab's leukocytes: the wbc_seg table names every labelled crop with its class, and the
figures count a band as a right neutrophil, a blast call as wrong, a rejected cell as rejected."""

from pathlib import Path

import numpy as np
import pandas as pd

from wsi_screen.classes import CLASS_CODES
from wsi_screen.records import Probabilities
from wsi_screen.train.other_lab import WBC_SEG_CLASSES, other_lab_figures, wbc_seg_table

from .conftest import shared


def _calls(codes: list[str], p_reject: list[float]) -> Probabilities:
    probs = np.full((len(codes), len(CLASS_CODES)), 0.01)
    for row, code in enumerate(codes):
        probs[row, CLASS_CODES.index(code)] = 1.0
    return Probabilities(probs / probs.sum(1, keepdims=True), np.asarray(p_reject))


def test_figures_of_known_calls():
    cells = pd.Series(["neutrophil", "neutrophil", "lymphocyte", "monocyte", "eosinophil"])
    calls = _calls(["NGB", "NGS", "MYO", "MON", "EBO"], [0.0, 0.0, 0.0, 0.9, 0.0])
    f = other_lab_figures(cells, calls)
    assert f["n"] == 5
    assert f["accuracy"] == 3 / 5  # a band is a right neutrophil; the blast and erythroblast are wrong
    assert f["per_class"]["neutrophil"] == {"n": 2, "sensitivity": 1.0, "called": {"NGB": 1, "NGS": 1}}
    assert f["per_class"]["lymphocyte"]["sensitivity"] == 0.0
    assert f["mean_sensitivity"] == (1 + 0 + 1 + 0) / 4  # basophil absent: not averaged
    assert f["blast_calls"] == 1 / 5
    assert f["atypical_calls"] == 2 / 5  # MYO and EBO
    assert f["rejected"] == 1 / 5


def test_wbc_seg_table_names_every_labelled_crop():
    root = shared("segmentation", "wbc_seg", "Dataset1")
    table = wbc_seg_table(root)
    labels = pd.read_csv(root / "labels.csv")
    assert len(table) == len(labels)
    assert all(Path(f).is_file() and Path(f).parent == root / "images" for f in table["file"])
    assert table["cell"].value_counts().to_dict() == labels.iloc[:, 1].map(WBC_SEG_CLASSES).value_counts().to_dict()
    assert set(table["cell"]) <= set(WBC_SEG_CLASSES.values())


def test_field_leukocyte_colours_tell_the_labs_apart():
    """TXL-PBC's PBC fields come from the PBC crops' camera and stain: their leukocytes' mean colours
    lie near the crops', BCCD's (another lab) far from both."""
    from wsi_screen.cell_images import read_manifest
    from wsi_screen.registry import load_card
    from wsi_screen.train.fields import load_fields, source_of
    from wsi_screen.train.other_lab import field_leukocyte_colours
    from wsi_screen.train.shifts import lab_colours

    card = load_card(None)
    fields = load_fields(shared("detection", "txl_pbc"), "val")
    picked = [f for s in ("pbc", "bccd") for f in [f for f in fields if source_of(f) == s][:12]]
    colours = field_leukocyte_colours(picked, card)
    assert set(colours) == {"pbc", "bccd"}
    crops = read_manifest(shared("cells", "manifest.csv"))
    crops = crops[crops["source"].eq("pbc") & crops["label"].isin(["NGS", "LYT", "MON"])].sample(40, random_state=0)
    pbc = lab_colours(crops["file"].tolist(), crops["mpp"].tolist(), card)
    near, far = (np.abs(colours[s] - pbc).max() for s in ("pbc", "bccd"))
    assert near < 5 < far  # CIELAB units


def test_a_lab_stain_transfer_moves_the_lab_and_keeps_its_cells_apart():
    """PBC's stain rendered as DeepAPL's: one move for every cell, so the cells' mean colours reach
    DeepAPL's while each keeps its place among them, and PBC rendered as itself changes nothing."""
    import torch

    from wsi_screen.cell_images import load_canvas, read_manifest
    from wsi_screen.colour_range import colour_moments
    from wsi_screen.preprocess import EvalTransform
    from wsi_screen.registry import load_card
    from wsi_screen.train.shifts import StainTransfer, lab_colours, matched_lab_colours

    card = load_card(None)
    cells = read_manifest(shared("cells", "manifest.csv")).rename(columns={"label": "class"})
    cells = cells[cells["class"].isin(["NGS", "LYT", "MON", "EOS"])].groupby(["source", "class"]).sample(8, random_state=1)
    colours = matched_lab_colours(cells, card, per_class=8)
    assert np.abs(colours["pbc"] - colours["deepapl"]).max() > 2  # CIELAB units: the labs' stains differ
    pbc = cells[cells["source"] == "pbc"]
    assert np.abs(lab_colours(pbc["file"].tolist(), pbc["mpp"].tolist(), card) - colours["pbc"]).max() < 1e-6
    canvases = [load_canvas(f, m, card.mpp, card.input_px, card.field_um) for f, m in zip(pbc["file"], pbc["mpp"])]

    def rendered(transform) -> np.ndarray:  # network inputs back to uint8 images
        x = torch.stack([transform(c) for c in canvases]) * torch.tensor(card.std)[:, None, None] + torch.tensor(card.mean)[:, None, None]
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    plain = rendered(EvalTransform.for_card(card))
    assert np.abs(rendered(StainTransfer(card, colours["pbc"], colours["pbc"])).astype(int) - plain).max() <= 1
    before, after = colour_moments(plain), colour_moments(rendered(StainTransfer(card, colours["pbc"], colours["deepapl"])))
    assert np.abs(after.mean(0) - colours["deepapl"]).max() < 1.0
    assert np.abs(after.mean(0) - colours["pbc"]).max() > 2
    assert np.corrcoef(before[:, 2], after[:, 2])[0, 1] > 0.99  # each cell's b* stays in its place: one move, not one per cell


def test_labs_without_a_class_in_common_give_no_stain_check():
    """A training set where PBC and DeepAPL share no leukocyte class (one lab's cells only): no lab
    colours, and the stain check reports NaN instead of moving cells by NaN."""
    from wsi_screen.registry import load_card
    from wsi_screen.train.shifts import matched_lab_colours, stain_transfer_change

    card = load_card(None)
    rows = pd.DataFrame({"file": ["a.jpg", "b.jpg"], "class": ["NGS", "LYT"], "source": "pbc", "mpp": np.nan})
    colours = matched_lab_colours(rows, card)
    assert set(colours) == {"pbc", "deepapl"} and all(np.isnan(c).all() and c.shape == (6,) for c in colours.values())
    check = stain_transfer_change(None, card, rows, colours["pbc"], colours["deepapl"])
    assert check["n_cells"] == 2 and np.isnan(check["class_changed"]) and np.isnan(check["became_blast"])
