"""The product's main job: detect every leukocyte, classify it, aggregate the smear and write
cells.zarr, QuPath GeoJSON and the report — all or nothing, into OUT/<slide stem>/.

Composes stages only; their logic lives in find_cells, classify, aggregate and export."""

from __future__ import annotations

import json
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .aggregate import OperatingRates, blast_and_atypical, differential, lab_flags
from .classes import ATYPICAL, BLAST, CLASS_CODES, CLASS_COLORS, CLASS_NAMES
from .config import Config
from .find_cells import SlideCells, cell_measurements, find_cells, prepare, write_store


@dataclass(frozen=True)
class ScreenOptions:
    mpp: float | None = None
    aoi: str = "auto"
    workers: int | None = None
    scheduler: str | None = None
    specimen_id: str | None = None
    gzip: bool = False
    progress: bool = True
    completion: dict | None = None  # written as completed.json, last, inside the all-or-nothing folder


@dataclass(frozen=True)
class ScreenSummary:
    slide: str
    out_dir: Path
    n_leukocytes: int
    blast: dict
    flags: tuple[str, ...]
    seconds: float
    startup_seconds: float
    classify_seconds: float  # classification of every cell, model load included (benchmarks)

    def line(self) -> str:
        b = self.blast
        flag = "FLAG: " + "; ".join(self.flags) if self.flags else "no flag"
        return (
            f"{self.slide}: {self.n_leukocytes} leukocytes, blasts {b['prevalence']:.2%} "
            f"(95% CI {b['ci95'][0]:.2%}–{b['ci95'][1]:.2%}), {flag}; {self.seconds:.1f} s → {self.out_dir / 'report.html'}"
        )


def rates_from_card(card) -> dict[str, OperatingRates]:
    """Sensitivity/specificity of each clinical test as the counts define it (argmax in the class
    set), from the out-of-fold confusion matrix in the model card, and how often out-of-fold
    non-members reached each high probability (for the rare-population flag)."""
    return rates_from_metrics(card.metrics or {})


def rates_from_metrics(metrics: dict) -> dict[str, OperatingRates]:
    """`rates_from_card` of a card's metrics (`test`: a full_summary with its confusion;
    `confident_negatives`)."""
    test = metrics.get("test", {})
    confusion = np.asarray(test.get("confusion", []), float)
    if confusion.shape != (len(CLASS_CODES), len(CLASS_CODES)):
        from .errors import ModelError

        raise ModelError("model card has no held-out confusion matrix: cannot correct prevalence for its error rates")
    rates = {}
    for name, members in (("blast", BLAST), ("atypical", ATYPICAL)):
        idx = [CLASS_CODES.index(c) for c in members]
        pos, neg = confusion[idx], np.delete(confusion, idx, axis=0)
        n_pos, n_neg = pos.sum(), neg.sum()
        se = pos[:, idx].sum() / n_pos if n_pos else 0.5
        sp = 1 - neg[:, idx].sum() / n_neg if n_neg else 0.5
        confident = metrics.get("confident_negatives", {}).get(name, {})
        rates[name] = OperatingRates(
            float(se), float(sp), int(n_pos), int(n_neg), "model card: out-of-fold confusion matrix (argmax rule)",
            tuple(zip(confident.get("thresholds", []), confident.get("counts", []))),
            tuple(tuple(int(v) for v in row) for row in confusion),
        )  # fmt: skip
    return rates


def load_classifier(config: Config):
    from .registry import DEFAULT_WEIGHTS, load_model

    path = DEFAULT_WEIGHTS if config.classify.model == "default" else Path(config.classify.model)
    model, card = load_model(path)
    return model, card, path


def screen_slide(
    slide_path: Path, out_root: Path, config: Config, options: ScreenOptions = ScreenOptions(), client=None, out_name: str | None = None
) -> ScreenSummary:
    """Screen one slide into OUT/<out_name or slide stem>/; uses `client` when given (the batch
    runner's), else starts one for this job."""
    from contextlib import nullcontext

    from .export.outdir import staged_dir
    from .export.store import drop_model_input
    from .parallel import dask_client

    t0 = time.perf_counter()
    info, mask = prepare(slide_path, config, options.mpp, options.aoi)  # bad slide/AOI: fail before torch and Dask
    model, card, model_path = load_classifier(config)  # bad model: fail before any work
    rates = rates_from_card(card)
    out_dir = Path(out_root) / (out_name or Path(slide_path).stem)
    with nullcontext(client) if client is not None else dask_client(options.scheduler, config.dask, options.workers) as client:
        startup = time.perf_counter() - t0
        cells = find_cells(client, slide_path, info, mask, config, options.mpp, options.progress)
        with staged_dir(out_dir) as tmp:
            nuclei = write_store(client, tmp / "cells.zarr", cells, config, card.input_px)
            t_classify = time.perf_counter()
            result = classify_on_cluster(client, tmp / "cells.zarr", model_path, config)
            t_classify = time.perf_counter() - t_classify
            drop_model_input(tmp / "cells.zarr")
            report = _report(tmp, cells, nuclei, result, model, card, model_path, rates, config, options, t0)
            if options.completion is not None:
                (tmp / "completed.json").write_text(json.dumps(options.completion, indent=1))
    return ScreenSummary(
        str(slide_path), out_dir, report["n_leukocytes"], report["blast"], tuple(report["flags"]), time.perf_counter() - t0, startup, t_classify
    )  # fmt: skip


def classify_task(store: str, model_path: str, config: Config):
    """Classify every patch of a store where this runs (a GPU worker when the cluster has one)."""
    from .classify import classify_inputs, resolve_device
    from .export.store import open_model_input
    from .registry import for_inference, load_model

    c = config.classify
    device = resolve_device(c.device)
    model, card = load_model(model_path)
    return classify_inputs(for_inference(model, device), card, open_model_input(Path(store)), c.batch_size, device, c.tta)


def classify_on_cluster(client, store: Path, model_path: Path, config: Config):
    """Classification lands on workers that declare a GPU resource (`dask worker --resources
    GPU=1`) when the cluster has any; otherwise it runs here, in this process."""
    from .parallel import declares

    if client is not None and declares(client, "GPU"):
        return client.submit(classify_task, str(store.resolve()), str(model_path), config, resources={"GPU": 1}, pure=False).result()
    return classify_task(str(store), str(model_path), config)


def _report(tmp: Path, cells: SlideCells, nuclei, result, model, card, model_path: Path, rates, config: Config, options: ScreenOptions, t0: float) -> dict:
    from .export.store import open_patches, write_columns
    from .registry import sha256

    patches = open_patches(tmp / "cells.zarr")
    probs = result.probs
    predicted = np.asarray(CLASS_CODES)[probs.argmax(1)] if len(probs) else np.asarray([], "U3")
    review = result.needs_review(config.classify.review_below)
    write_columns(
        tmp / "cells.zarr",
        {
            "probabilities": probs.astype(np.float32).reshape(-1, len(CLASS_CODES)),
            "p_blast": result.p_blast.astype(np.float32),
            "p_atypical": result.p_atypical.astype(np.float32),
            "predicted": predicted.astype("U3"),
            "confidence": probs.max(1, initial=0).astype(np.float32),
            "p_reject": result.p_reject.astype(np.float32),
            "needs_review": review,
        },
        {"class_codes": list(CLASS_CODES), "classifier_sha256": sha256(model_path)},
    )
    diff = differential(predicted)
    tests = blast_and_atypical(probs, rates, config.aggregate)
    flags = [f"blasts: {tests['blast'].rule}"] if tests["blast"].flag else []
    flags += [f"atypical cells: {tests['atypical'].rule}"] if tests["atypical"].flag else []
    flags += lab_flags(diff, config.aggregate)
    report_warnings = []
    if len(predicted) < config.aggregate.min_leukocytes:
        report_warnings.append(f"only {len(predicted)} leukocytes classified (< {config.aggregate.min_leukocytes}): the differential is unreliable")
    if not len(predicted):
        warnings.warn(f"{cells.slide_path}: no leukocytes in the AOI; the report has zero counts", stacklevel=2)
    report = {
        "slide": cells.slide_path.name,
        "specimen_id": options.specimen_id or cells.slide_path.stem,
        "aoi_area_mm2": cells.aoi_area_mm2,
        "n_leukocytes": int(len(predicted)),
        **diff,
        "blast": _prevalence_dict(tests["blast"]),
        "atypical": _prevalence_dict(tests["atypical"]),
        "needs_review": int(review.sum()),
        "flags": flags,
        "lab_flags": lab_flags(diff, config.aggregate),
        "warnings": report_warnings + [f"corrupt tile skipped: {e}" for e in cells.tile_errors],
        "qc": cells.qc,
        "error_rates": {k: asdict(v) for k, v in rates.items()},
        "model": {
            "detector": {"name": config.detect.model, "method": config.detect.method, "sha256": _detector_sha256(config)},
            "classifier": {"path": model_path.name, "arch": card.arch, "sha256": sha256(model_path), "temperature": card.temperature},
        },
        "config_sha256": config.sha256(),
        "software": {"wsi_screen": __version__, "python": platform.python_version(), **software_versions()},
        "runtime_s": None,
    }
    _write_geojson(tmp, cells, nuclei, probs, predicted, result, config, options)
    report["runtime_s"] = time.perf_counter() - t0
    from .export.report import write_report_page

    write_report_page(tmp / "report.html", report, cells, probs, predicted, result, review, patches, model, card, config)
    (tmp / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    return report


def _prevalence_dict(p) -> dict:
    return {
        "count": p.count,
        "raw_prevalence": p.raw_prevalence,
        "prevalence": p.prevalence,
        "ci95": list(p.ci95),
        "expected_count": p.expected_count,
        "flag": p.flag,
        "rule": p.rule,
        "specificity_on_this_slide": p.specificity,
    }


def _write_geojson(tmp: Path, cells: SlideCells, nuclei, probs, predicted, result, config: Config, options: ScreenOptions) -> None:
    from .export.geojson import REJECTED, REJECTED_COLOR, aoi_features, cell_uuid, feature, write_features

    feats = []
    for i, (d, n) in enumerate(zip(cells.detections, nuclei)):
        code = str(predicted[i])
        measurements = {"cell_id": i, "p_blast": float(result.p_blast[i]), "p_atypical": float(result.p_atypical[i]), **cell_measurements(d, n)}
        measurements.update({f"p_{c}": float(probs[i, k]) for k, c in enumerate(CLASS_CODES)} | {"p_reject": float(result.p_reject[i])})
        name, color = (REJECTED, REJECTED_COLOR) if result.p_reject[i] > 0.5 else (CLASS_NAMES[code], CLASS_COLORS[code])
        feats.append(feature(d.polygon, name, color, measurements, cell_uuid(cells.slide_key, i), object_type="cell", nucleus=n.lobes))
    feats += aoi_features(cells.slide_key, cells.aoi.polygons)
    write_features(feats, tmp / "detections.geojson", gz=options.gzip or len(feats) > config.export.gzip_above_cells)


def _detector_sha256(config: Config) -> str | None:
    from .registry import sha256
    from .segmenters import resolve_weights

    return sha256(resolve_weights(config.detect.model)) if config.detect.method == "unet" else None


def software_versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "torchvision", "segmentation-models-pytorch", "dask", "zarr", "openslide-python")}
