"""Every registered model builds and runs; weights files round-trip; unusable files are ModelErrors."""

import pytest
import torch

from wsi_screen.classes import CLASS_CODES
from wsi_screen.errors import ModelError
from wsi_screen.registry import ModelCard, create_model, default_input_px, list_models, load_model, save_weights


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model(name):
    model = create_model(name, 16).eval()
    assert default_input_px(name) in (128, 400)
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 16)  # fully convolutional: small input for speed
    groups = [m.groups for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(groups) >= 8  # ResNeXt: grouped 3×3 convolutions


def test_compact_model_is_small():
    n = sum(p.numel() for p in create_model("resnext_compact", 16).parameters())
    assert n < 2_000_000  # < 4 MB in fp16


def test_round_trip(tmp_path):
    model = create_model("resnext_compact", 16).eval()
    card = ModelCard("resnext_compact", 128, reject_codes=("PLT",), temperature=1.5)
    path = save_weights(model, card, tmp_path / "m.pt")
    loaded, card2 = load_model(path)
    assert card2 == card and card2.mpp == pytest.approx(29 / 128) and path.with_suffix(".json").is_file()
    x = torch.rand(1, 3, 128, 128)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=2e-2)  # fp16 storage


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
