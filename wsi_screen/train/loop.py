"""Training: class-balanced sampling, augmentation in DataLoader workers, AdamW with warm-up and
cosine decay, early stopping on validation loss, a checkpoint every epoch and resume from the last
one, then temperature scaling on the validation split and predictions for the test split."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..cell_images import CellDataset
from ..classes import CLASS_CODES
from ..classify import batch_logits, predictions_frame, to_probabilities
from ..config import TrainConfig
from ..errors import DatasetError
from ..evaluate import json_safe, operating_metrics
from ..metrics import fit_temperature
from ..preprocess import EvalTransform
from ..registry import ModelCard, create_model, default_input_px, mixed_precision, save_weights
from .augment import TrainTransform, colour_bank
from .cache import build_cache
from .group_colours import moved_canvases, patient_colours
from .non_leukocytes import LEUKOCYTE_CODE, REJECT_CODE

log = logging.getLogger(__name__)
REJECT = (REJECT_CODE,)  # platelets (PLT) and cut-out non-leukocytes train one reject output


def make_card(cfg: TrainConfig, field_um: float, reject: tuple[str, ...]) -> ModelCard:
    return ModelCard(arch=cfg.arch, input_px=cfg.input_px or default_input_px(cfg.arch), field_um=field_um, reject_codes=reject)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    table: pd.DataFrame,
    split: np.ndarray,
    run_dir: str | Path,
    cfg: TrainConfig,
    field_um: float = 29.0,
    device: torch.device | None = None,
    cache_dir: str | Path | None = None,
) -> ModelCard:
    """Train on split=='train', stop early on split=='val', resume from run_dir/last.pt if present.
    Without validation cells (a final run) every epoch is trained and the last kept, its
    temperature 1 until the export sets the folds'. Writes best.pt, model.pt (fp16, the card; with
    a test split, its held-out error rates too), history.csv and preds_{val,test}.csv."""
    run_dir, device = Path(run_dir), device or torch.device("cpu")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    table = table.assign(label=table["label"].replace("PLT", REJECT_CODE))
    reject = REJECT if cfg.keep_reject and table["label"].isin(REJECT).any() else ()
    unknown = (LEUKOCYTE_CODE,) if reject and table["label"].eq(LEUKOCYTE_CODE).any() else ()
    keep = table["label"].isin(CLASS_CODES + reject + unknown).to_numpy()
    table, split = table[keep].reset_index(drop=True), np.asarray(split)[keep]
    if not (split == "train").any():
        raise DatasetError("the train split is empty")
    card = make_card(cfg, field_um, reject)
    codes = card.class_codes + reject  # the model's outputs; an unknown leukocyte's target is one past them
    canvas_px = max(card.input_px, math.ceil(card.input_px * (1 + cfg.scale_jitter)))
    args = (card.mpp, canvas_px, field_um)
    key = hashlib.sha256(json.dumps([table["file"].tolist(), args]).encode()).hexdigest()[:12]
    cache = build_cache(CellDataset(table, codes + unknown, None, *args), Path(cache_dir or run_dir) / f"cache_{key}.npy", cfg.num_workers)
    train_idx, val_idx, test_idx = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    validating = len(val_idx) > 0  # a final run has no validation cells
    if cfg.slide_colours:  # before the colour bank: stain mixing draws moved colours
        groups, target = patient_colours(table, split, cache, card.input_px)
        card, cache = dataclasses.replace(card, slide_colour_target=target), moved_canvases(cache, groups, target)
    leukocytes = (i for i in train_idx if table["label"].iat[i] in card.class_codes)  # the bank draws training leukocytes only
    bank = colour_bank((cache[i] for i in leukocytes), card.input_px) if cfg.stain_mix or cfg.standardise_colours else None
    if cfg.standardise_colours:  # the training leukocytes' mean colour statistics: the standard every input is moved to
        card = dataclasses.replace(card, colour_reference=tuple(float(v) for v in bank.mean(0).ravel()))
    augmented = TrainTransform.for_card(card, cfg, bank)
    train_set = CellDataset(table, codes + unknown, augmented, *args, cache=cache)
    eval_set = CellDataset(table, codes + unknown, EvalTransform.for_card(card), *args, cache=cache)
    sources = table["source"].astype(str).to_numpy()
    if cfg.context_prob:
        train_set = _on_other_backgrounds(train_set, table, sources, train_idx, card, Path(cache_dir or run_dir) / f"alpha_{key}.npy", cfg)

    model = create_model(cfg.arch, len(codes))
    if cfg.init_weights:
        model.load_state_dict(_initial_state(cfg.init_weights))
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    twice = [codes.index(c) for c in cfg.drawn_twice]
    present = np.unique(train_set.targets[train_idx])
    draws = len(present) + np.isin(present, twice).sum()  # class shares drawn per epoch
    steps = math.ceil(draws * cfg.per_class_per_epoch / cfg.batch_size)  # per epoch; warm-up lasts one epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / steps) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / (steps * cfg.epochs))))
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True) if cfg.ema_decay else None
    scored = ema.module if ema is not None else model  # the weights validated, kept and exported
    state = {"epoch": 0, "best_loss": math.inf, "bad_epochs": 0, "history": []}
    last = run_dir / "last.pt"
    if last.is_file():
        ck = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"]), opt.load_state_dict(ck["opt"]), sched.load_state_dict(ck["sched"])
        scaler.load_state_dict(ck["scaler"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        state = ck["state"]
        log.info("resumed from %s at epoch %d", last, state["epoch"])

    patients = table["patient"].to_numpy()[train_idx] if cfg.balance_patients else None  # every loader fills the column
    weights = sampling_weights(train_set.targets[train_idx], sources[train_idx], cfg.balance_sources, patients, twice)
    val_loader = _eval_loader(torch.utils.data.Subset(eval_set, val_idx), cfg)
    mixer = _mixer(cfg, len(codes))
    while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
        epoch, t0 = state["epoch"], time.time()
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        sampler = torch.utils.data.WeightedRandomSampler(weights, steps * cfg.batch_size, replacement=True, generator=gen)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(train_set, train_idx),
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.num_workers,
            generator=gen,
            persistent_workers=False,
            drop_last=True,
        )
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        train_loss = _one_epoch(model, loader, opt, sched, scaler, cfg.label_smoothing, device, desc, ema, mixer)
        val_loss, val_acc = _validate(scored, val_loader, torch.from_numpy(eval_set.targets[val_idx]), device)
        improved = not validating or val_loss < state["best_loss"]  # without validation the newest epoch is kept
        if validating:
            state["best_loss"] = min(val_loss, state["best_loss"])
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        state["epoch"] = epoch + 1
        state["history"].append(
            {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc, "seconds": time.time() - t0}
        )
        log.info(
            "epoch %d train_loss %.4f val_loss %.4f val_acc %.4f %.0fs%s",
            epoch + 1,
            train_loss,
            val_loss,
            val_acc,
            time.time() - t0,
            " *" if improved else "",
        )
        if improved:
            torch.save(scored.state_dict(), run_dir / "best.pt")
        ck = {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "state": state,
        }
        if ema is not None:
            ck["ema"] = ema.state_dict()
        torch.save(ck, run_dir / "last.tmp")
        (run_dir / "last.tmp").replace(last)
    pd.DataFrame(state["history"]).to_csv(run_dir / "history.csv", index=False)

    model.load_state_dict(torch.load(run_dir / "best.pt", map_location=device, weights_only=True))
    temperature = 1.0
    if validating:
        temperature = fit_temperature(batch_logits(model, (x for x, _ in val_loader), device), torch.from_numpy(eval_set.targets[val_idx]))
    card = ModelCard(
        **{
            **card.to_dict(),
            "temperature": temperature,
            "provenance": {"epochs_trained": state["epoch"], "best_val_loss": state["best_loss"] if validating else None},
        }
    )
    frames = {}
    for name, idx in (("val", val_idx), ("test", test_idx)):
        if len(idx):
            lg = batch_logits(model, (x for x, _ in _eval_loader(torch.utils.data.Subset(eval_set, idx), cfg)), device)
            frames[name] = predictions_frame(table["file"].iloc[idx].tolist(), to_probabilities(lg, card))
            frames[name].to_csv(run_dir / f"preds_{name}.csv", index=False)
    known = table["label"].iloc[test_idx].isin(CLASS_CODES).to_numpy()
    if known.any():  # its own held-out error rates: `screen` corrects a slide's prevalence with this model too
        truth = table.iloc[test_idx[known]][["label", "source", "patient"]].rename(columns={"label": "class"})
        held_out = pd.concat([frames["test"][known].reset_index(drop=True), truth.reset_index(drop=True)], axis=1)
        card = dataclasses.replace(card, metrics=json_safe(operating_metrics(held_out)))
    save_weights(model, card, run_dir / "model.pt")  # last: a run with model.pt has its predictions too
    return card


def _validate(model: torch.nn.Module, loader, targets: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """Validation loss and accuracy; NaN without validation cells."""
    if not len(targets):
        return math.nan, math.nan
    logits = batch_logits(model, (x for x, _ in loader), device)
    return float(F.cross_entropy(logits, targets)), float((logits.argmax(1) == targets).float().mean())


def sampling_weights(
    targets: np.ndarray, sources: np.ndarray, balance_sources: bool, patients: np.ndarray | None = None, twice: Sequence[int] = ()
) -> np.ndarray:
    """Per-image sampling weights giving every class the same share, the targets in `twice` a
    double share (the non-blasts an AML patient's blasts are mistaken for); with `balance_sources`, every
    source of a class the same share of it too, so that a lab's own class mix (e.g. DeepAPL's
    800 segmented neutrophils to 106 bands, PBC's 450 of each) cannot stand in for morphology.
    With `patients` (ids; empty for images without one, each then its own patient), a patient's
    share of its class grows with the square root of its cells rather than in proportion: one APL
    patient holds 144 of DeepAPL's 316 promyelocytes, and a model that learns that patient's cells
    learns less of what the next patient's look like."""
    own = np.char.add("image ", np.arange(len(targets)).astype(str))  # never a patient id
    ids = own if patients is None else np.where(pd.Series(patients).fillna("").astype(str) == "", own, patients)
    rows = pd.DataFrame({"target": targets, "source": sources if balance_sources else "", "patient": ids})
    n_patient = rows.groupby(["target", "source", "patient"])["target"].transform("size").to_numpy(float)
    rows["root"] = np.sqrt(n_patient) / n_patient  # each cell's part of its patient's sqrt(n) share
    group_total = rows.groupby(["target", "source"])["root"].transform("sum")
    sources_of_class = rows.groupby("target")["source"].transform("nunique")
    return (rows["root"] / (group_total * sources_of_class)).to_numpy(float) * np.where(np.isin(targets, twice), 2.0, 1.0)


def _on_other_backgrounds(
    train_set: CellDataset,
    table: pd.DataFrame,
    sources: np.ndarray,
    train_idx: np.ndarray,
    card: ModelCard,
    alpha_path: Path,
    cfg: TrainConfig,
):
    """The training set with context augmentation: alphas for every leukocyte row (so one cache
    serves every fold); the training cells that could be cut out lend their surroundings."""
    from .context import OnOtherBackgrounds, alpha_cache

    alphas = alpha_cache(train_set, np.flatnonzero(np.isin(table["label"].to_numpy(), card.class_codes)), alpha_path, cfg.num_workers)
    cut = np.array([alphas[i].any() for i in train_idx], bool)
    return OnOtherBackgrounds(train_set, alphas, train_idx[cut], sources, cfg.context_prob)


def _initial_state(path: str) -> dict:
    """A warm start: a raw state_dict (a run's best.pt) or a shipped weights file."""
    if not Path(path).is_file():
        raise DatasetError("train.init_weights: no such file", path)
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state.get("state_dict", state)  # load_state_dict casts fp16 to the model's dtype


def _mixer(cfg: TrainConfig, outputs: int):
    """timm's Mixup (mixup and/or CutMix, one draw per batch), or None when both are off."""
    if not (cfg.mixup or cfg.cutmix):
        return None
    from timm.data import Mixup

    return Mixup(cfg.mixup, cfg.cutmix, prob=cfg.mix_prob, label_smoothing=cfg.label_smoothing, num_classes=outputs)


def mix_known(mixer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch with its known-class rows mixed among themselves (an even number of them: timm
    pairs a batch with its reverse), and those rows' soft targets, label-smoothed as the mixer is
    (its `num_classes` are the model's outputs). A leukocyte of unknown class (target past the
    outputs: "not rejected", no class) and an odd row out keep their image and target."""
    from timm.data.mixup import mixup_target

    known = torch.nonzero(y < mixer.num_classes).flatten()
    soft = mixup_target(y[known], mixer.num_classes, 1.0, mixer.label_smoothing)
    pairs = known[: len(known) // 2 * 2]
    if len(pairs):
        x = x.clone()
        x[pairs], soft[: len(pairs)] = mixer(x[pairs], y[pairs])
    return x, soft


def _one_epoch(model, loader, opt, sched, scaler, label_smoothing: float, device: torch.device, desc: str, ema=None, mixer=None) -> float:
    """One pass over `loader`, updating `ema` after every step, mixing images with `mixer` (timm's
    Mixup) when given; returns the mean training loss. channels_last, with float16 autocast on
    CUDA and bfloat16 autocast on CPUs that compute it natively (1.8x the samples per second of
    float32 for resnext26ts at 96 px on one thread)."""
    model.train()
    total, n = 0.0, 0
    for x, y in tqdm(loader, desc=desc, mininterval=30, leave=False):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        soft = None
        if mixer is not None:
            x, soft = mix_known(mixer, x, y)
        x = x.contiguous(memory_format=torch.channels_last)
        with mixed_precision(device):
            loss = training_loss(model(x), y, label_smoothing, soft)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        total, n = total + float(loss.detach()) * len(y), n + len(y)
    return total / max(n, 1)


def training_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float, soft: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the outputs; a target one past them (an unknown-class leukocyte, the
    reject output last) costs -log(1 - p_reject): it teaches "not rejected" and no class. `soft`:
    the known rows' targets as distributions (mixed images), in their order, instead of `y`'s."""
    known = y < logits.shape[1]
    if not known.any():
        loss = logits.sum() * 0
    elif soft is None:
        loss = F.cross_entropy(logits[known], y[known], label_smoothing=label_smoothing, reduction="sum")
    else:
        loss = -(soft * F.log_softmax(logits[known].float(), 1)).sum()
    odd = logits[~known].float()
    not_rejected = torch.logsumexp(odd, 1) - torch.logsumexp(odd[:, :-1], 1)
    return (loss + not_rejected.sum()) / len(y)


def _eval_loader(data, cfg: TrainConfig):
    return torch.utils.data.DataLoader(data, batch_size=cfg.batch_size * 2, num_workers=cfg.num_workers)
