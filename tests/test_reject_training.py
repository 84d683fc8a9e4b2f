"""The reject output's training examples from TXL-PBC-layout fields: non-leukocytes as "rejected",
the fields' own leukocytes (class unknown) as "not rejected", and the loss that uses them."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from wsi_screen.cli import main
from wsi_screen.train.loop import training_loss
from wsi_screen.train.non_leukocytes import cut_leukocytes, cut_non_leukocytes

from .test_train import TINY
from .test_train_detector import _field


@pytest.fixture(scope="module")
def txl_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("txl")
    rng = np.random.default_rng(3)
    for n in range(3):
        _field(root, "train", f"f{n}", rng)
    return root


def _centre(path: str) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    h, w = a.shape[:2]
    return a[h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3].reshape(-1, 3).mean(0)


def test_leukocytes_and_non_leukocytes_are_cut_around_their_own_objects(txl_tree, tmp_path):
    leukocytes = cut_leukocytes(txl_tree, "train", tmp_path)  # one per field: the other is cut by the border
    others = cut_non_leukocytes(txl_tree, "train", tmp_path)
    assert len(leukocytes) == 3 and set(leukocytes["label"]) == {"WBC"} and set(others["label"]) == {"NLK"}
    assert set(leukocytes["source"]) == {"txl_160x120"} and leukocytes["mpp"].iloc[0] == pytest.approx(0.5, rel=0.05)
    # the generated leukocyte's nucleus is (95, 45, 150), its red cells (215, 150, 160)
    assert all(_centre(f)[1] < 100 for f in leukocytes["file"])
    assert all(_centre(f)[1] > 100 for f in others["file"])
    assert cut_leukocytes(txl_tree, "train", tmp_path)["file"].tolist() == leukocytes["file"].tolist()  # read back


def test_an_unknown_class_leukocyte_costs_only_its_reject_probability():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.3], [0.1, 0.2, 0.3, 1.5], [1.0, 0.0, 0.0, 3.0]])
    y = torch.tensor([0, 4, 4])  # outputs: three classes then reject; 4 is one past them
    p_reject = logits.softmax(1)[:, -1]
    expected = (F.cross_entropy(logits[:1], y[:1], label_smoothing=0.1) - torch.log1p(-p_reject[1:]).sum()) / 3
    assert float(training_loss(logits, y, 0.1)) == pytest.approx(float(expected), rel=1e-6)
    # the gradient of an unknown leukocyte lowers the reject logit and leaves the classes' balance alone
    x = logits[1:2].clone().requires_grad_()
    training_loss(x, y[1:2], 0.1).backward()
    grad = x.grad[0]
    assert grad[-1] > 0 and float(grad[:-1].sum() + grad[-1]) == pytest.approx(0.0, abs=1e-6)
    assert float(training_loss(logits[:1], y[:1], 0.1)) == pytest.approx(float(F.cross_entropy(logits[:1], y[:1], label_smoothing=0.1)))
    assert math.isfinite(float(training_loss(logits[1:], y[1:], 0.1)))


@pytest.mark.slow
def test_train_with_field_leukocytes_keeps_them_out_of_validation_and_test(folder_tree, txl_tree, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"train": {**TINY["train"], "field_leukocytes": True}}))
    run = tmp_path / "runs" / "run"
    assert main(["train", str(folder_tree), "-o", str(run), "--config", str(cfg), "--non-leukocytes", str(txl_tree)]) == 0
    split = pd.read_csv(run / "split.csv")
    wbc = split[split["class"] == "WBC"]
    assert len(wbc) == 3 and set(wbc["split"]) == {"train"}
    assert {"train", "val", "test"} == set(split.loc[split["class"] != "WBC", "split"])
    assert not pd.read_csv(run / "preds_test.csv")["file"].isin(wbc["file"]).any()
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["field_leukocytes"] is True


def test_pooled_labels_hold_out_every_classed_image_once_and_no_unknown_leukocyte(tmp_path):
    from wsi_screen.train.run import pooled_labels

    rows = pd.DataFrame({"file": list("abcde"), "class": ["NGS", "LYT", "NLK", "WBC", "MYO"], "source": "s", "patient": "", "mpp": 0.1})
    for k, test in enumerate(("ab", "ce")):
        (tmp_path / f"fold_{k}").mkdir()
        rows.assign(split=["test" if f in test else "train" for f in rows["file"]]).to_csv(
            tmp_path / f"fold_{k}" / "split.csv", index=False
        )
    pooled = pd.read_csv(pooled_labels(tmp_path, 2))
    assert sorted(pooled["file"]) == list("abce") and pooled["fold"].tolist() == [0, 0, 1, 1]
    rows.assign(split="train").to_csv(tmp_path / "fold_1" / "split.csv", index=False)
    with pytest.raises(RuntimeError, match="exactly once"):
        pooled_labels(tmp_path, 2)


def test_a_later_stage_starts_each_run_from_the_same_run_of_the_earlier_one(tmp_path):
    import click

    from pipelines.train_classifier import stage_starts
    from wsi_screen.train.jobs import train_command

    for part in ("final", "cv/fold_0", "cv/fold_1"):
        (tmp_path / part).mkdir(parents=True)
        (tmp_path / part / "best.pt").write_bytes(b"")
    starts = stage_starts(tmp_path, 2)
    assert starts == {"final": tmp_path / "final" / "best.pt", 0: tmp_path / "cv/fold_0/best.pt", 1: tmp_path / "cv/fold_1/best.pt"}
    cmd = train_command(tmp_path, tmp_path / "cv", tmp_path / "r.yaml", tmp_path, 2, 1, init=starts[1])
    assert cmd[-2:] == ["--init-weights", str(tmp_path / "cv/fold_1/best.pt")]
    with pytest.raises(click.ClickException, match="fold_2/best.pt: the earlier stage has not trained this run"):
        stage_starts(tmp_path, 3)


def test_mixup_mixes_known_rows_only_and_keeps_the_smoothed_loss_unmixed():
    from timm.data import Mixup

    from wsi_screen.train.loop import mix_known

    torch.manual_seed(0)
    np.random.seed(0)
    x = torch.rand(5, 3, 8, 8)
    y = torch.tensor([0, 4, 1, 2, 3])  # four outputs (three classes, reject); row 1 an unknown leukocyte
    logits = torch.randn(5, 4)
    mixer = Mixup(mixup_alpha=0.3, cutmix_alpha=0.0, prob=1.0, label_smoothing=0.1, num_classes=4)
    mixed, soft = mix_known(mixer, x, y)
    # the known rows 0, 2, 3, 4 pair with their reverse, (0, 4) and (2, 3), under one lambda
    assert torch.equal(mixed[1], x[1]) and soft.shape == (4, 4)
    lam = float(soft[0, 0] - 0.1 / 4) / 0.9
    assert torch.allclose(mixed[0], lam * x[0] + (1 - lam) * x[4], atol=1e-6)
    assert torch.allclose(mixed[2], lam * x[2] + (1 - lam) * x[3], atol=1e-6)
    assert torch.allclose(soft.sum(1), torch.ones(4)) and soft[0, 3] > 0.1 / 4  # row 0 carries row 4's class
    # unmixed soft targets give exactly the label-smoothed loss; mixed ones a different one
    from timm.data.mixup import mixup_target

    plain = mixup_target(y[[0, 2, 3, 4]], 4, 1.0, 0.1)
    assert float(training_loss(logits, y, 0.1, plain)) == pytest.approx(float(training_loss(logits, y, 0.1)), rel=1e-6)
    assert float(training_loss(logits, y, 0.1, soft)) != pytest.approx(float(training_loss(logits, y, 0.1)), rel=1e-3)
    # an odd known row out keeps its image and its own smoothed target
    mixed, soft = mix_known(mixer, x[:4], y[:4])  # known rows 0, 2, 3: (0, 2) mix, 3 is left
    assert torch.equal(mixed[3], x[3]) and torch.allclose(soft[2], plain[2])
