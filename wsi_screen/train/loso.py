"""Leave-one-source-out detector runs: train on three of TXL-PBC's sources, choose the probability
threshold on their val fields, then test on every field (train + val) of the fourth at that
source's one µm/px. This is what predicts a new lab, which val fields of the training labs do not.

Training goes through `train_detector` unchanged, on a view of the data folder (symlinks) that
holds only the training sources. A run is complete when its result.json exists; a rerun skips
complete sources and restarts an interrupted one from scratch."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..config import DetectConfig
from .detector import DetectorTrainConfig, evaluate, train_detector
from .detector_eval import evaluate_sources, summarize
from .error_gallery import write_gallery
from .fields import Field, load_fields, source_mpp, source_of

SOURCES = ("raabin", "pbc", "bccd", "bcd")


@dataclass(frozen=True)
class LosoConfig:
    train: DetectorTrainConfig = field(default_factory=DetectorTrainConfig)
    thresholds: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)  # cell/core probability, chosen per run
    fields_per_source: int = 0  # 0: all; n > 0: the first n fields of each source and split (smoke runs)


def _subset(fields: list[Field], n: int) -> list[Field]:
    if not n:
        return fields
    seen: dict[str, int] = {}
    out = []
    for f in fields:
        seen[source_of(f)] = seen.get(source_of(f), 0) + 1
        if seen[source_of(f)] <= n:
            out.append(f)
    return out


def write_view(root: Path, splits: dict[str, list[Field]], data: Path) -> Path:
    """A TXL-PBC-layout folder of symlinks holding only `splits`' fields."""
    for split, fields in splits.items():
        for kind in ("images", "labels"):
            (root / kind / split).mkdir(parents=True, exist_ok=True)
        for f in fields:
            label = data / "labels" / f.image.parent.name / (f.image.stem + ".txt")
            for src, dst in ((f.image, root / "images" / split / f.image.name), (label, root / "labels" / split / label.name)):
                if src.exists() and not dst.exists():
                    dst.symlink_to(src.resolve())
    return root


def choose_threshold(segmenter, fields: list[Field], thresholds: tuple[float, ...]) -> tuple[float, dict[float, float]]:
    """The threshold with the best F1 on `fields` (training sources only), each source at its one
    µm/px; ties go to the threshold nearest 0.5."""
    mpp = source_mpp(fields)
    mpps = [mpp[source_of(f)] for f in fields]
    f1 = {t: evaluate(segmenter, fields, mpps, DetectConfig(threshold=t)).f1 for t in thresholds}
    return max(thresholds, key=lambda t: (round(f1[t], 6), -abs(t - 0.5))), f1


def run_one(data: Path, left_out: str, out: Path, card, cfg: LosoConfig, retest: bool = False) -> dict:
    """Train `card` (a DetectorCard: architecture and µm/px) afresh without `left_out`, choose the
    threshold on the others' val fields, test on all of `left_out`'s fields; writes out/result.json and out/gallery/.
    With `retest`, a complete run keeps its trained model and is tested again: a change to what
    follows the network (the instance checks) needs no retraining."""
    from ..segmenters import UnetSegmenter

    done = out / "result.json"
    previous = json.loads(done.read_text()) if done.exists() else None
    if previous and not retest:
        return previous
    t0 = time.time()
    train = _subset(load_fields(data, "train"), cfg.fields_per_source)
    val = _subset(load_fields(data, "val"), cfg.fields_per_source)

    def keep(fields: list[Field]) -> list[Field]:
        return [f for f in fields if source_of(f) != left_out]

    test = [f for f in train + val if source_of(f) == left_out]
    name = f"unet-loso-{left_out}"
    if previous:
        best_epoch, t_train = previous["best_epoch"], previous["seconds"]["train"]
    else:
        view = write_view(out / "data", {"train": keep(train), "val": keep(val)}, data)
        run_card = replace(card, provenance={"data": f"TXL-PBC train split without {left_out}", "train_config": asdict(cfg.train)})
        best_epoch = train_detector(view, out / "model", name, run_card, cfg.train)
        t_train = time.time() - t0
    t_test = time.time()
    segmenter = UnetSegmenter(str(out / "model" / f"{name}.pt"), "cpu")
    threshold, f1 = choose_threshold(segmenter, keep(val), cfg.thresholds)
    detect_cfg = DetectConfig(threshold=threshold)
    evals = evaluate_sources(test, source_mpp(test), segmenter, detect_cfg)
    result = {
        "left_out": left_out,
        "train_fields": len(keep(train)),
        "val_fields": len(keep(val)),
        "test_fields": len(test),
        "best_epoch": best_epoch,
        "threshold": threshold,
        "val_f1_by_threshold": {str(t): v for t, v in f1.items()},
        "test_mpp": source_mpp(test),
        "figures": summarize(evals)["pooled"],
        "gallery": write_gallery(evals, out / "gallery"),
        "seconds": {"train": t_train, "total": t_train + time.time() - t_test},
    }
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(done)  # written last: its presence marks the run complete
    return result


def summarize_loso(results: list[dict]) -> dict:
    """Per left-out source, and the worst source (the targets hold on each)."""
    per = {
        r["left_out"]: {k: r["figures"][k] for k in ("precision", "recall", "f1", "precision_ci95", "recall_ci95", "far_fp_per_1000_rbc")}
        for r in results
    }
    return {
        "per_source": per,
        "min_precision": min(p["precision"] for p in per.values()),
        "min_recall": min(p["recall"] for p in per.values()),
    }
