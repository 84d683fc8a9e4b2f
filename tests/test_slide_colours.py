"""One colour move per slide: a slide's cast is removed, its cells' differences kept; training
groups a patient's cells (a lab's where patients carry no ids) within each split."""

import dataclasses

import numpy as np
import pandas as pd
import torch

from wsi_screen.classes import CLASS_CODES
from wsi_screen.classify import classify_inputs
from wsi_screen.colour_range import colour_moments
from wsi_screen.export.store import open_model_input
from wsi_screen.slide_colours import group_colours, move_colours
from wsi_screen.train.group_colours import moved_canvases, patient_colours

from .conftest import cell_image
from .test_classify import _store, tiny_model  # noqa: F401  (a fixture)

TARGET = (74.0, 13.8, 1.8, 19.4, 11.7, 17.6)  # the shipped card's training leukocytes' mean


def _yellow(images: np.ndarray) -> np.ndarray:
    """Another lab's cast on a whole slide: less blue light through every pixel."""
    return (images * np.array([1.0, 0.93, 0.7])).round().astype(np.uint8)


def _slide(n: int = 6, px: int = 96) -> np.ndarray:
    return np.stack([cell_image(CLASS_CODES[k], px, k) for k in range(n)])


def test_a_slides_mean_colours_move_to_the_target_and_its_cells_keep_their_differences():
    cells = _slide()
    before = colour_moments(cells, step=1)
    x = torch.from_numpy(cells).permute(0, 3, 1, 2).float() / 255
    moved = (move_colours(x, group_colours(before), TARGET) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    after = colour_moments(moved, step=1)
    assert np.abs(group_colours(before) - TARGET).max() > 10  # far from the target at first
    assert np.abs(group_colours(after)[:3] - TARGET[:3]).max() < 1.5  # the slide's mean colour is the target's
    scale = np.array(TARGET[3:]) / group_colours(before)[3:]
    spread_before, spread_after = before[:, :3] - before[:, :3].mean(0), after[:, :3] - after[:, :3].mean(0)
    expected = spread_before * scale  # every cell moved alike, scaled by the spreads (gamut clipping aside)
    assert np.corrcoef(spread_after.ravel(), expected.ravel())[0, 1] > 0.98
    assert 0.8 < np.linalg.norm(spread_after) / np.linalg.norm(expected) < 1.1
    assert np.abs(spread_after).max() > 3  # the cells still differ


def test_a_slide_colour_model_does_not_see_the_slides_cast(tiny_model, tmp_path):  # noqa: F811
    """The same six cells, on a slide as scanned and under a yellow cast: a card with a slide colour
    target classifies both alike (the cast removed before the network); without it they differ."""
    model, card, _ = tiny_model
    plain, cast = _slide(px=400), _yellow(_slide(px=400))
    assert np.abs(group_colours(colour_moments(cast)) - group_colours(colour_moments(plain)))[:3].max() > 8  # a real cast
    moving = dataclasses.replace(card, slide_colour_target=TARGET)
    probs = {}
    for name, c in (("as read", card), ("moved", moving)):
        a = classify_inputs(model, c, open_model_input(_store(tmp_path, plain, c.input_px, f"{name}_a.zarr")), device="cpu").probs
        b = classify_inputs(model, c, open_model_input(_store(tmp_path, cast, c.input_px, f"{name}_b.zarr")), device="cpu").probs
        probs[name] = np.abs(a - b).max()
    assert probs["moved"] < 0.3 * probs["as read"]


def test_training_groups_are_patients_or_labs_within_each_split():
    """Rows of patient P1 (train), P2 (test), PBC (no ids: train and val apart) and a PBC platelet
    crop: each row carries its group's mean leukocyte colours; the platelet counts for none."""
    grey = {"P1": 90, "P2": 150, "pbc_train": 200, "pbc_val": 220, "plt": 30}
    rows = [("P1", "deepapl", "MYO", "train", "P1"), ("P1", "deepapl", "LYT", "train", "P1"), ("P2", "deepapl", "MON", "test", "P2")]
    rows += [("", "pbc", "NGS", "train", "pbc_train"), ("", "pbc", "EOS", "train", "pbc_train"), ("", "pbc", "NLK", "train", "plt")]
    rows += [("", "pbc", "LYT", "val", "pbc_val")]
    table = pd.DataFrame(rows, columns=["patient", "source", "label", "split", "shade"])
    cache = np.stack([np.full((40, 40, 3), grey[s], np.uint8) for s in table["shade"]])
    cache[:, 10:30, 10:30] -= 20  # a darker cell: each field has a spread
    groups, target = patient_colours(table, table["split"].to_numpy(), cache, 32)
    moments = colour_moments(cache[:, 4:36, 4:36])
    expected = {
        "P1": moments[[0, 1]].mean(0),
        "P2": moments[2],
        "pbc_train": moments[[3, 4]].mean(0),  # the platelet crop (row 5) is not a leukocyte
        "pbc_val": moments[6],
    }
    for i, shade in enumerate(table["shade"]):
        np.testing.assert_allclose(groups[i], expected["pbc_train" if shade == "plt" else shade], atol=1e-6)
    np.testing.assert_allclose(target, moments[[0, 1, 3, 4]].mean(0), atol=1e-6)  # training leukocytes only
    moved = moved_canvases(cache, groups, target, batch=3)  # batches that cut across groups
    for i in (0, 2, 5):
        one = move_colours(torch.from_numpy(cache[i]).permute(2, 0, 1).float() / 255, groups[i], target)
        assert np.abs(moved[i].astype(int) - (one * 255).round().permute(1, 2, 0).numpy()).max() <= 1
    assert np.abs(group_colours(colour_moments(moved[[0, 1], 4:36, 4:36]))[:3] - target[:3]).max() < 1  # P1 at the target


def test_cells_of_two_smears_are_each_moved_by_their_own(tiny_model, tmp_path):  # noqa: F811
    """Scoring the cells of two patients at once (the locked set, the shift checks) gives each
    cell what classifying its own smear's files alone gives."""
    from PIL import Image

    from wsi_screen.classify import classify_files
    from wsi_screen.train.group_colours import smear_colours

    model, card, _ = tiny_model
    card = dataclasses.replace(card, slide_colour_target=TARGET)
    files = []
    for name, cells in (("P1", _slide(4, 200)), ("P2", _yellow(_slide(4, 200)))):
        for i, cell in enumerate(cells):
            files.append(tmp_path / f"{name}_{i}.png")
            Image.fromarray(cell).save(files[-1])
    rows = pd.DataFrame({"file": [str(f) for f in files], "mpp": np.nan, "source": "deepapl", "patient": ["P1"] * 4 + ["P2"] * 4})
    smears = smear_colours(card, rows)
    assert np.allclose(smears[:4], smears[0]) and np.allclose(smears[4:], smears[4]) and np.abs(smears[0] - smears[4]).max() > 5
    together = classify_files(model, card, rows["file"].tolist(), device="cpu", slide_colours=smears).probs
    alone = np.concatenate([classify_files(model, card, rows["file"].tolist()[s], device="cpu").probs for s in (slice(0, 4), slice(4, 8))])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.abs(classify_files(model, card, rows["file"].tolist(), device="cpu").probs - alone).max() > 1e-4  # one smear: 10× apart


def test_screen_measures_the_slides_colours_once_for_both_checks():
    """`screen`'s colour stage: the cells outside the training colours, and the slide's colours its
    cells are moved by, from one measurement; a card that records neither gets neither."""
    from wsi_screen.colour_range import fit_colour_range
    from wsi_screen.registry import ModelCard
    from wsi_screen.screen import slide_colour_checks

    cells = _slide(8, 64)
    card = ModelCard("resnext_compact", 64)
    assert slide_colour_checks(cells, card) == (None, None)
    trained = dataclasses.replace(card, colour_range=fit_colour_range(colour_moments(np.concatenate([cells] * 4))))
    outside, group = slide_colour_checks(_yellow(cells), dataclasses.replace(trained, slide_colour_target=TARGET))
    assert outside.all() and np.allclose(group, group_colours(colour_moments(_yellow(cells))))
    outside, group = slide_colour_checks(cells, trained)
    assert not outside.any() and group is None


def test_a_slide_colour_model_sees_another_labs_stain_as_its_own_slide(tiny_model, tmp_path):  # noqa: F811
    """The stain check on a slide-colour model: a lab's cells rendered in a yellow lab's stain reach
    the network as the same slide moved to the target, so their calls stay; a plain card's move."""
    from PIL import Image

    from wsi_screen.train.shifts import stain_transfer_probs

    model, card, _ = tiny_model
    files = []
    for i, cell in enumerate(_slide(6, 200)):
        files.append(str(tmp_path / f"cell_{i}.png"))
        Image.fromarray(cell).save(files[-1])
    rows = pd.DataFrame({"file": files, "mpp": np.nan})
    source = group_colours(colour_moments(_slide(6, 200)))
    yellow = group_colours(colour_moments(_yellow(_slide(6, 200))))
    moved = {}
    for name, c in (("as read", card), ("moved", dataclasses.replace(card, slide_colour_target=TARGET))):
        plain, transferred = stain_transfer_probs(model, c, rows, source, yellow)
        moved[name] = np.abs(plain - transferred).max()
    assert moved["moved"] < 0.1 * moved["as read"]
