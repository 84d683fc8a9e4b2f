"""Inference on slide patches and on files: shapes, the field, the CSV contract, errors."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from wsi_screen.classes import CLASS_CODES
from wsi_screen.classify import (
    batch_logits,
    classify_files,
    classify_inputs,
    list_inputs,
    predictions_frame,
    to_probabilities,
)
from wsi_screen.cli import main
from wsi_screen.config import PatchConfig
from wsi_screen.errors import DatasetError
from wsi_screen.export.store import create_store, detections_table, open_model_input, write_model_input, write_patches
from wsi_screen.patches import resize_patches
from wsi_screen.registry import ModelCard, create_model, save_weights

from .conftest import REPO, cell_image
from .test_store import _dets


def _store(tmp_path, patches, input_px, name="cells.zarr"):
    """A cells.zarr holding `patches` and their classifier inputs, as screen's patch stage writes them."""
    store = tmp_path / name
    create_store(store, detections_table(_dets(len(patches))), PatchConfig(size_px=patches.shape[1]), {}, input_px, len(patches))
    write_patches(store, 0, patches)
    write_model_input(store, 0, resize_patches(patches, input_px))
    return store


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    card = ModelCard("resnext_compact", 64, reject_codes=("PLT",), temperature=2.0)
    model = create_model("resnext_compact", 16).eval()
    path = save_weights(model, card, tmp_path_factory.mktemp("m") / "m.pt", half=False)
    return model, card, path


def test_store_patches_give_15_probabilities(tiny_model, tmp_path):
    model, card, _ = tiny_model
    patches = np.stack([cell_image(c, 400, 0) for c in CLASS_CODES[:3]])
    r = classify_inputs(model, card, open_model_input(_store(tmp_path, patches, card.input_px)), batch_size=2, device="cpu")
    assert r.probs.shape == (3, 15) and np.allclose(r.probs.sum(1), 1) and r.p_reject.shape == (3,)
    col = {c: r.probs[:, k] for k, c in enumerate(CLASS_CODES)}
    assert np.allclose(r.p_blast, col["MYO"] + col["MOB"])  # named columns: the blast set and the column order
    assert np.allclose(r.p_atypical, 1 - sum(col[c] for c in ("NGS", "NGB", "LYT", "MON", "EOS", "BAS", "KSC")))  # all but normal cells
    whole = classify_inputs(model, card, open_model_input(_store(tmp_path, patches, card.input_px)), batch_size=64, device="cpu")
    assert np.allclose(whole.probs, r.probs, atol=1e-6)  # batching and prefetch change nothing


def test_tta_is_rotation_invariant(tiny_model):
    model, _, _ = tiny_model
    x = torch.rand(2, 3, 64, 64)
    tta = batch_logits(model, [x], torch.device("cpu"), tta=True)
    rot = batch_logits(model, [torch.rot90(x, 1, (-2, -1))], torch.device("cpu"), tta=True)
    plain = batch_logits(model, [x], torch.device("cpu"))
    assert torch.allclose(tta, rot, atol=1e-5) and not torch.allclose(tta, plain, atol=1e-5)


def test_store_and_file_paths_see_the_same_field(tiny_model, tmp_path):
    """A 400 px patch (29 µm) as screen stores it and the same cell saved as a 0.1 µm/px crop (290 px
    of field inside a 360 px crop) give the same probabilities."""
    model, card, _ = tiny_model
    patch = cell_image("MYO", 400, 1)
    crop = np.asarray(Image.fromarray(patch).resize((290, 290), Image.Resampling.BOX))
    crop = np.pad(crop, ((35, 35), (35, 35), (0, 0)), mode="edge")
    Image.fromarray(crop).save(tmp_path / "crop.png")
    a = classify_inputs(model, card, open_model_input(_store(tmp_path, patch[None], card.input_px)), device="cpu").probs
    b = classify_files(model, card, [str(tmp_path / "crop.png")], input_mpp=0.1, device="cpu").probs
    assert np.abs(a - b).max() < 0.02


def test_a_colour_standard_undoes_a_colour_cast(tiny_model, tmp_path):
    """With a card's colour_reference a cell and the same cell in another lab's colours (a Reinhard
    transfer) reach the network alike; without it they do not."""
    import dataclasses

    from wsi_screen.preprocess import lab_moments, reinhard_transfer

    model, card, _ = tiny_model
    patch = cell_image("MON", 400, 2)
    cast = (reinhard_transfer(patch, np.array([55.0, 25.0, -25.0]), np.array([18.0, 12.0, 9.0])) * 255).round().astype(np.uint8)
    assert np.abs(lab_moments(cast)[0] - lab_moments(patch)[0]).max() > 5  # a real cast
    both = np.stack([patch, cast])
    standard = dataclasses.replace(card, colour_reference=tuple(np.concatenate(lab_moments(patch)).tolist()))
    plain = classify_inputs(model, card, open_model_input(_store(tmp_path, both, card.input_px)), device="cpu").probs
    held = classify_inputs(model, standard, open_model_input(_store(tmp_path, both, card.input_px, "s.zarr")), device="cpu").probs
    assert np.abs(held[0] - held[1]).max() < 0.3 * np.abs(plain[0] - plain[1]).max()


def test_temperature_and_reject_split():
    card = ModelCard("resnext_compact", 64, reject_codes=("PLT",), temperature=2.0)
    logits = torch.zeros(1, 16)
    logits[0, 15] = 2 * np.log(3)  # after T=2: reject weight 3 vs 1 per leukocyte class
    r = to_probabilities(logits, card)
    assert r.p_reject[0] == pytest.approx(3 / 18) and np.allclose(r.probs, 1 / 15)


def test_cli_csv_input_keeps_paths_as_given(tiny_model, tmp_path):
    _, _, path = tiny_model
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(cell_image("LYT", 120, i)).save(tmp_path / "imgs" / f"{i}.png")
    pd.DataFrame({"file": ["imgs/0.png", "imgs/2.png", str(tmp_path / "imgs/1.png")]}).to_csv(tmp_path / "in.csv", index=False)
    assert main(["classify", str(tmp_path / "in.csv"), "-o", str(tmp_path / "p.csv"), "--model", str(path)]) == 0
    p = pd.read_csv(tmp_path / "p.csv")
    assert p["file"].tolist() == ["imgs/0.png", "imgs/2.png", str(tmp_path / "imgs/1.png")]
    assert set(p["predicted"]) <= set(CLASS_CODES)
    assert np.allclose(p["p_blast"], p["MYO"] + p["MOB"])


def test_errors_are_one_line(tmp_path, capsys):
    Image.fromarray(cell_image("LYT", 50, 0)).save(tmp_path / "a.png")
    assert main(["classify", str(tmp_path), "-o", str(tmp_path / "p.csv"), "--model", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: model file not found" in capsys.readouterr().err
    pd.DataFrame({"path": ["a.png"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DatasetError, match="'file' column"):
        list_inputs(tmp_path / "bad.csv")
    (tmp_path / "empty").mkdir()
    assert main(["classify", str(tmp_path / "empty"), "-o", str(tmp_path / "e.csv")]) == 2
    assert "empty: no images to classify" in capsys.readouterr().err and not (tmp_path / "e.csv").exists()


def test_one_image_is_classified_where_it_lies(tiny_model, tmp_path, monkeypatch):
    """INPUT may be a single image; its path is not taken relative to its own folder."""
    _, _, path = tiny_model
    (tmp_path / "sub").mkdir()
    Image.fromarray(cell_image("LYT", 120, 0)).save(tmp_path / "sub" / "one.png")
    monkeypatch.chdir(tmp_path)
    assert main(["classify", "sub/one.png", "-o", "p.csv", "--model", str(path)]) == 0
    assert pd.read_csv(tmp_path / "p.csv")["file"].tolist() == ["sub/one.png"]


def test_predictions_frame_empty():
    from wsi_screen.classify import Probabilities

    frame = predictions_frame([], Probabilities(np.zeros((0, 15)), np.zeros(0)))
    assert len(frame) == 0 and frame.columns[0] == "file"


def test_saliency_cli(tiny_model, tmp_path):
    _, _, path = tiny_model
    Image.fromarray(cell_image("MON", 200, 0)).save(tmp_path / "c.png")
    assert main(["saliency", str(tmp_path / "c.png"), "-o", str(tmp_path / "s"), "--model", str(path)]) == 0
    assert (tmp_path / "s" / "c_saliency.png").stat().st_size > 1000


@pytest.mark.parametrize("starts", [range(0, 10, 3), range(0, 2, 1), range(0, 0, 1)])
def test_prefetch_yields_every_batch_in_order(starts):
    """The CUDA path's read-ahead thread: every load once, in order, whatever the batch count."""
    from wsi_screen.classify import _prefetched

    seen = []
    out = list(_prefetched(lambda s: seen.append(s) or s * 10, starts))
    assert out == [s * 10 for s in starts] and sorted(seen) == list(starts)


def test_bf16_forward_agrees_with_float32_on_real_cells(shared_cells):
    """bfloat16 autocast (on CPUs that compute it natively) halves the CPU forward time; on real
    locked cells it must leave the shipped model's probabilities and calls as they were in float32."""
    from unittest import mock

    from wsi_screen.registry import load_model, native_bf16
    from wsi_screen.train.export import locked_rows

    if not native_bf16():
        pytest.skip("this CPU has no native bfloat16: the product runs float32 here")
    rows = locked_rows(shared_cells, REPO / "configs" / "locked_test.csv").sample(300, random_state=0)
    model, card = load_model()
    bf16 = classify_files(model, card, rows["file"].tolist(), rows["mpp"].tolist(), device="cpu").probs
    with mock.patch("wsi_screen.registry.native_bf16", return_value=False):
        fp32 = classify_files(model, card, rows["file"].tolist(), rows["mpp"].tolist(), device="cpu").probs
    assert np.abs(bf16 - fp32).max() < 0.05 and (bf16.argmax(1) == fp32.argmax(1)).mean() >= 0.97


def test_inputs_normalised_in_the_forward_precision_give_the_float32_inputs_logits():
    """`classify_inputs` normalises uint8 inputs straight into bfloat16 where the forward runs in
    it (emulated here on any CPU): the shipped model's logits must be those of float32 inputs
    cast by autocast at its first layer, to the last bit."""
    from unittest import mock

    from wsi_screen.classify import batch_logits, classify_inputs, patch_batch, to_probabilities
    from wsi_screen.registry import for_inference, load_model

    model, card = load_model()
    model = for_inference(model, "cpu")
    inputs = np.random.default_rng(0).integers(0, 256, (12, card.input_px, card.input_px, 3), dtype=np.uint8)
    with mock.patch("wsi_screen.registry.native_bf16", return_value=True):
        assert patch_batch(inputs, card, dtype=torch.bfloat16).dtype == torch.bfloat16
        float32_inputs = to_probabilities(batch_logits(model, [patch_batch(inputs, card)], torch.device("cpu")), card)
        np.testing.assert_array_equal(classify_inputs(model, card, inputs, 5, "cpu").probs, float32_inputs.probs)


def test_cli_says_which_images_lie_outside_the_training_colours(tiny_model, tmp_path):
    """A card that records its training colours (here: of generated cells at 64 px) makes
    `classify` mark every image whose colours it does not cover: the same cells under another
    lab's yellow cast are marked, the cells themselves are not."""
    from wsi_screen.cell_images import to_canvas
    from wsi_screen.colour_range import colour_moments, fit_colour_range

    model, card, _ = tiny_model
    cells = [cell_image(c, 120, i) for c in CLASS_CODES for i in range(8)]
    training = np.stack([to_canvas(cell, np.nan, card.mpp, card.input_px, card.field_um) for cell in cells])
    path = save_weights(model, dataclasses.replace(card, colour_range=fit_colour_range(colour_moments(training))), tmp_path / "r.pt")
    files = []
    for i, code in enumerate(("NGS", "LYT", "MON")):
        cell = cell_image(code, 120, 20 + i)
        yellow = (cell * np.array([1.0, 0.97, 0.7])).astype(np.uint8)
        for name, image in ((f"{code}.png", cell), (f"{code}_yellow.png", yellow)):
            Image.fromarray(image).save(tmp_path / name)
            files.append(name)
    pd.DataFrame({"file": files}).to_csv(tmp_path / "in.csv", index=False)
    assert main(["classify", str(tmp_path / "in.csv"), "-o", str(tmp_path / "p.csv"), "--model", str(path)]) == 0
    p = pd.read_csv(tmp_path / "p.csv")
    assert p["outside_training_colours"].tolist() == [name.endswith("_yellow.png") for name in files]
    assert main(["classify", str(tmp_path / "in.csv"), "-o", str(tmp_path / "q.csv"), "--model", str(tiny_model[2])]) == 0
    assert "outside_training_colours" not in pd.read_csv(tmp_path / "q.csv").columns  # a card without the range
