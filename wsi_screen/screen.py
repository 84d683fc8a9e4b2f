"""The product's main job: detect every leukocyte, classify it, aggregate the smear and write
cells.zarr, QuPath GeoJSON and the report — all or nothing, into OUT/<slide stem>/.

Composes stages only; their logic lives in find_cells, classify, summarize, saliency and export."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from .config import Config
from .find_cells import SlideCells, find_cells, overview, prepare, write_store
from .records import Provenance, SlideSummary
from .timing import Stages


@dataclass(frozen=True)
class ScreenOptions:
    mpp: float | None = None
    aoi: str = "auto"
    workers: int | None = None
    scheduler: str | None = None
    specimen_id: str | None = None
    gzip: bool = False
    progress: bool = True


@dataclass(frozen=True)
class ScreenResult:
    """A screened slide: its summary (also OUT/<name>/report.json) and where the time went.

    `profile`: wall seconds of each stage on this (the client) process, in order, summing to
    about `seconds`: start-up, detection and patches (waiting on the workers), classification,
    aggregation, the writers, saliency. `task_profile`: seconds of the stages inside the worker
    tasks (tile and patch reads by pyramid level, U-Net, instances, patch writes, ...), summed
    over tasks, so on n workers up to n times the wall time of their phase."""

    summary: SlideSummary
    out_dir: Path
    seconds: float
    profile: dict[str, float] = field(default_factory=dict)
    task_profile: dict[str, float] = field(default_factory=dict)

    @property
    def startup_seconds(self) -> float:
        """Slide check, AOI, classifier load and cluster start."""
        return self.profile.get("startup", 0.0)

    @property
    def classify_seconds(self) -> float:
        """Classification of every cell, model load included."""
        return self.profile.get("classification", 0.0)

    def line(self) -> str:
        s, b = self.summary, self.summary.blast
        flag = "FLAG: " + "; ".join(s.flags) if s.flags else "no flag"
        return (
            f"{s.slide}: {s.n_leukocytes} leukocytes, blasts {b.prevalence:.2%} "
            f"(95% CI {b.ci95[0]:.2%}–{b.ci95[1]:.2%}), {flag}; {self.seconds:.1f} s → {self.out_dir / 'report.html'}"
        )


def load_classifier(config: Config):
    """The configured classifier, its card and its weights file (a missing file is told before
    torch is imported)."""
    from .model_files import resolve_model

    path = resolve_model(config.classify.model, "classifier")
    from .registry import load_model

    return *load_model(path), path


def screen_slide(
    slide_path: Path, out_root: Path, config: Config, options: ScreenOptions = ScreenOptions(), client=None, out_name: str | None = None
) -> ScreenResult:
    """Screen one slide into OUT/<out_name or slide stem>/; uses `client` when given (the batch
    runner's), else starts one for this job."""
    from contextlib import ExitStack

    from .checksum import sha256
    from .export.geojson import aoi_features, cell_features, write_features
    from .export.outdir import staged_dir
    from .export.report import write_report
    from .export.store import drop_model_input, open_model_input, write_calls
    from .parallel import dask_client
    from .provenance import model_provenance, software_versions
    from .summarize import rates_from_card, summarize_slide

    t0 = time.perf_counter()
    stages, tasks = Stages(), Stages()
    with ExitStack() as cluster:
        with stages.time("startup"):
            info, mask = prepare(slide_path, config, options.mpp, options.aoi)  # bad slide/AOI: fail before torch and Dask
            model, card, model_path = load_classifier(config)  # bad model: fail before any work
            rates = rates_from_card(card)
            out_dir = Path(out_root) / (out_name or Path(slide_path).stem)
            if client is None:
                client = cluster.enter_context(dask_client(options.scheduler, config.dask, options.workers))
        with stages.time("detection"):
            cells = find_cells(client, slide_path, info, mask, config, options.mpp, options.progress, tasks)
        with staged_dir(out_dir) as tmp:
            store = tmp / "cells.zarr"
            with stages.time("patches"):
                nuclei = write_store(client, store, cells, config, card.input_px, tasks)
            with stages.time("colour range"):
                outside, slide_colours = slide_colour_checks(open_model_input(store), card)
            with stages.time("classification"):
                calls, classifier_precision = classify_on_cluster(client, store, model_path, config, slide_colours)
            with stages.time("calls to zarr"):
                drop_model_input(store)
                write_calls(store, calls, calls.needs_review(config.classify.review_below), sha256(model_path))
            with stages.time("aggregation"):
                provenance = Provenance(
                    model_provenance(config, model_path, card, cells.detector_precision, classifier_precision),
                    config.sha256(),
                    software_versions(),
                    time.perf_counter() - t0,
                )
                summary = summarize_slide(cells, calls, rates, config, options.specimen_id, provenance, outside)
            with stages.time("geojson"):
                gz = options.gzip or len(cells.detections) > config.export.gzip_above_cells
                features = chain(
                    cell_features(cells.detections, cells.slide_key, calls, nuclei), aoi_features(cells.slide_key, cells.aoi.polygons)
                )
                write_features(features, tmp / "detections.geojson", gz=gz)
            images = _report_images(store, cells, summary, model, card, config, stages, slide_colours)
            with stages.time("report"):
                write_report(tmp, summary, cells.detections, calls, images)
    return ScreenResult(summary, out_dir, time.perf_counter() - t0, stages.seconds, tasks.seconds)


def slide_colour_checks(model_input, card) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per cell, whether its colours lie outside the card's training colours (None: the card does
    not record them), and the slide's colours its cells are moved by (None: the card moves none)."""
    from .colour_range import colour_moments, outside_colour_range
    from .slide_colours import group_colours

    if not (card.colour_range or card.slide_colour_target):
        return None, None
    moments = colour_moments(model_input)
    outside = outside_colour_range(moments, card.colour_range) if card.colour_range else None
    return outside, group_colours(moments) if card.slide_colour_target else None


def classify_task(store: str, model_path: str, config: Config, slide_colours: np.ndarray | None = None):
    """Classify every patch of a store where this runs (a GPU worker when the cluster has one);
    returns the calls and the arithmetic they were made in (`registry.precision`)."""
    from .classify import classify_inputs
    from .export.store import open_model_input
    from .registry import for_inference, load_model, precision, resolve_device

    c = config.classify
    device = resolve_device(c.device)
    model, card = load_model(model_path)
    calls = classify_inputs(for_inference(model, device), card, open_model_input(Path(store)), c.batch_size, device, c.tta, slide_colours)
    return calls, precision(device)


def classify_on_cluster(client, store: Path, model_path: Path, config: Config, slide_colours: np.ndarray | None = None):
    """`classify_task`'s calls and precision. Classification lands on workers that declare a GPU
    resource (`dask worker --resources GPU=1`) when the cluster has any; otherwise it runs here."""
    from .parallel import declares

    if client is not None and declares(client, "GPU"):
        task = client.submit(classify_task, str(store.resolve()), str(model_path), config, slide_colours, resources={"GPU": 1}, pure=False)
        return task.result()
    return classify_task(str(store), str(model_path), config, slide_colours)


def _report_images(store: Path, cells: SlideCells, summary: SlideSummary, model, card, config: Config, stages: Stages, slide_colours):
    """The slide overview and the gallery cells' patches, the blast candidates with saliency."""
    from .export.report import ReportImages
    from .export.store import open_patches
    from .saliency import patch_saliency

    patches = open_patches(store)

    def pick(ids: tuple[int, ...]) -> np.ndarray:
        return np.stack([patches[i] for i in ids]) if ids else np.zeros((0, 8, 8, 3), np.uint8)

    with stages.time("overview"):
        thumbnail, downsample = overview(cells, config.slide.max_mpp)
    with stages.time("saliency"):
        candidates = pick(summary.blast_candidates)
        saliency = patch_saliency(model, card, candidates, slide_colours)
    return ReportImages(thumbnail, downsample, cells.aoi.polygons, candidates, saliency, pick(summary.review_cells))
