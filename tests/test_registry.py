"""Every registered model builds and runs; weights files round-trip; unusable files are ModelErrors;
"default", shipped names and paths resolve alike for both tasks."""

import json

import pytest
import torch

from wsi_screen.classes import CLASS_CODES
from wsi_screen.errors import ModelError
from wsi_screen.model_files import WEIGHTS_DIR, resolve_model
from wsi_screen.registry import (
    ClassifierCard,
    DetectorCard,
    ModelCard,
    create_model,
    default_input_px,
    list_models,
    load_card,
    load_model,
    model_task,
    save_weights,
)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_runs(name):
    """Fully convolutional: a small input for speed; classifiers give one row of outputs per image,
    detectors one map per output channel at the input size."""
    model = create_model(name, 3).eval()
    assert default_input_px(name) >= 64
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, 64, 64))
    assert out.shape == ((2, 3) if model_task(name) == "classifier" else (2, 3, 64, 64))


def test_both_tasks_are_registered():
    assert {"resnext_compact", "resnext50_32x4d"} <= set(list_models("classifier")) and list_models("detector") == ["unet_mobilenetv2_050"]
    groups = [m.groups for m in create_model("resnext_compact", 16).modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(groups) >= 8  # ResNeXt: grouped 3×3 convolutions


def test_compact_model_is_small():
    n = sum(p.numel() for p in create_model("resnext_compact", 16).parameters())
    assert n < 2_000_000  # < 4 MB in fp16


def test_round_trip(tmp_path):
    model = create_model("resnext_compact", 16).eval()
    card = ModelCard("resnext_compact", 128, reject_codes=("PLT",), temperature=1.5)
    path = save_weights(model, card, tmp_path / "m.pt")
    loaded, card2 = load_model(path)
    assert card2 == card and card2.mpp == pytest.approx(29 / 128) and ModelCard is ClassifierCard
    assert json.loads(path.with_suffix(".json").read_text())["task"] == "classifier"
    x = torch.rand(1, 3, 128, 128)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=2e-2)  # fp16 storage


def test_detector_round_trip_and_task_check(tmp_path):
    card = DetectorCard("unet_mobilenetv2_050", mpp=0.4)
    path = save_weights(create_model(card.arch, card.num_outputs), card, tmp_path / "d.pt")
    assert load_card(path, "detector") == card and load_model(path, task="detector")[1].mpp == 0.4
    with pytest.raises(ModelError, match="d.pt.*holds a detector, not a classifier"):
        load_model(path)


def test_default_names_and_paths_resolve_to_the_shipped_files(tmp_path):
    assert resolve_model("default", "classifier") == resolve_model(None, "classifier") == WEIGHTS_DIR / "classifier.pt"
    assert resolve_model("default", "detector") == resolve_model("unet-wbc", "detector") == WEIGHTS_DIR / "unet-wbc.pt"
    assert resolve_model(str(WEIGHTS_DIR / "unet-wbc.pt"), "detector") == WEIGHTS_DIR / "unet-wbc.pt"
    with pytest.raises(ModelError, match="nope.pt.*not found"):
        resolve_model("nope", "detector")


def test_every_shipped_weights_file_has_its_card_beside_it():
    shipped = sorted(WEIGHTS_DIR.glob("*.pt"))
    assert [p.stem for p in shipped] == ["classifier", "unet-wbc"]
    for path in shipped:
        beside = json.loads(path.with_suffix(".json").read_text())
        task = beside.get("task", "classifier")  # the classifier's card predates the task key
        card = load_card(path, task)
        assert json.loads(json.dumps({"task": card.task, **card.to_dict()})) == {"task": task, **beside}
    assert load_card("default", "detector").mpp == 0.5  # the scale the detector reads slides at


def test_unusable_files_name_the_file(tmp_path):
    with pytest.raises(ModelError, match="nope.pt.*not found"):
        load_model(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    card = ModelCard("resnext_compact", 128, class_codes=CLASS_CODES[:10])
    save_weights(create_model("resnext_compact", 10), card, tmp_path / "ten.pt")
    with pytest.raises(ModelError, match="ten.pt.*10 classes"):
        load_model(tmp_path / "ten.pt")
    save_weights(create_model("resnext_compact", 12), ModelCard("resnext_compact", 128), tmp_path / "head.pt")
    with pytest.raises(ModelError, match="head.pt.*15 outputs"):
        load_model(tmp_path / "head.pt")
    with pytest.raises(ModelError, match="unknown architecture"):
        create_model("vgg")
