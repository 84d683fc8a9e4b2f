"""Per-cell agreement (issue 12): the locked test cells (the 15 leukocyte codes) are laid on
generated slides, each slide screened by `wsi-screen screen --aoi full`, and every placed cell's
slide call and P(blast) (`cell_agreement.slide_detections`) are set beside the same crop file
classified by `classify_files` at the crops' true scale, with the same model: overall agreement and
the blast test by lab. One figure per generator and slide µm/px; written to
docs/slide_agreement.json and .md, each cell's calls to WORK/calls_<generator>_<mpp>.csv. Slides are monolayer only (no thick
end or glass to screen for nothing), one specimen's cells on each (at most `--cells-per-slide`).

    PYTHONPATH=$PWD python pipelines/slide_agreement.py [--data-dir ../shared/data] [--work /tmp/agreement]
        [--classifier runs/r10/export/classifier.pt] [--detector runs/d/unet-wbc.pt] --out /tmp/candidate.json   # not shipped
        [--classifier runs/r21/final/model.pt --rates-from wsi_screen/weights/classifier.pt]   # a final run: no held-out rates
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd
import yaml
from doc_tables import slide_agreement_page as markdown  # pipelines/ is on sys.path when run as a script
from shapely.geometry import Polygon, shape

from wsi_screen.cell_agreement import blast_agreement, counted_outside, paired_accuracy, slide_detections
from wsi_screen.cell_images import CROP_MPP
from wsi_screen.checksum import sha256
from wsi_screen.classes import BLAST, CLASS_CODES, CLASS_NAMES, REJECTED, member_probability
from wsi_screen.classify import classify_files
from wsi_screen.errors import ModelError
from wsi_screen.export.geojson import read_features
from wsi_screen.model_files import DEFAULT_WEIGHTS
from wsi_screen.registry import for_inference, load_card, load_model, resolve_device, save_weights
from wsi_screen.summarize import RATE_KEYS, rates_from_card
from wsi_screen.synth import make_slide
from wsi_screen.train.splits import LOCKED_TEST, read_locked

ROOT = Path(__file__).resolve().parents[1]
CODE_OF = {name: code for code, name in CLASS_NAMES.items()}
UM2_PER_CELL = 1400.0  # monolayer area per placed cell: room to place each with its 2 µm margin and gap


def screen_config(work: Path, weights: Path, tta: bool = False, detector: Path | None = None) -> Path:
    """A `screen` config that judges `weights`, the model the crops are classified with (and a
    candidate detector instead of the shipped one)."""
    config = work / "screen.yaml"
    settings = {"classify": {"model": str(weights.resolve()), "tta": tta}}
    if detector is not None:
        settings["detect"] = {"model": str(detector.resolve())}
    config.write_text(yaml.safe_dump(settings))
    return config


def with_rates(model, card, rates_from: Path, work: Path) -> Path:
    """The model with the held-out rates of `rates_from`'s card, written into `work`. A final run's
    model has none (only its five folds measure them) and `screen` needs them to correct the
    prevalence; the per-cell calls this pipeline compares do not depend on them."""
    donor = load_card(rates_from).metrics
    metrics = {**card.metrics, **{k: donor[k] for k in RATE_KEYS if k in donor}}
    return save_weights(model, dataclasses.replace(card, metrics=metrics), work / "classifier_with_rates.pt", half=False)


def screened_calls(slide_path: Path, out: Path, config: Path) -> tuple[list[tuple[float, float, str]], list[float], int]:
    """Screen one slide through the CLI with `config`: its counted detections as (x, y, code), their
    P(blast), and how many objects it rejected (shown as Rejected, answering for no cell)."""
    subprocess.run(
        [sys.executable, "-m", "wsi_screen.cli", "screen", str(slide_path), "-o", str(out), "--aoi", "full", "--config", str(config)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    run = out / slide_path.stem
    path = next(p for p in (run / "detections.geojson", run / "detections.geojson.gz") if p.exists())
    calls, p_blast, rejected = [], [], 0
    for f in read_features(path):
        if f["properties"].get("objectType") not in ("detection", "cell"):
            continue
        name = f["properties"].get("classification", {}).get("name")
        if name in CODE_OF:
            c = shape(f["geometry"]).centroid
            calls.append((c.x, c.y, CODE_OF[name]))
            p_blast.append(f["properties"]["measurements"]["p_blast"])
        rejected += name == REJECTED
    return calls, p_blast, rejected


def slide_size(per_slide: int, mpp: float) -> tuple[int, int]:
    """Width and height in px of a 4:3 monolayer slide holding `per_slide` placed cells."""
    side_um = np.sqrt(per_slide * UM2_PER_CELL / 12)
    return round(4 * side_um / mpp), round(3 * side_um / mpp)


def specimen_slides(locked: pd.DataFrame, per_slide: int) -> list[list[tuple[str, str]]]:
    """(file, code) of each slide's cells: one specimen's to a slide (a DeepAPL patient; PBC's
    donors, which have no ids, as one), at most `per_slide` each. A real slide is one patient's
    blood in one lab's stain; the faithful generator takes its red cells from these cells' crops."""
    patient = locked["patient"].fillna("")
    specimen = patient.where(patient != "", locked["source"])
    slides = []
    for _, group in locked.groupby(specimen, sort=True):
        cells = list(zip(group["file"], group["class"]))
        slides += [cells[i : i + per_slide] for i in range(0, len(cells), per_slide)]
    return slides


def run_condition(
    slides: list[list[tuple[str, str]]], generator: str, mpp: float, data_dir: Path, work: Path, seed: int, config: Path
) -> tuple[dict[str, str | None], dict[str, float], dict[str, int]]:
    """Slide call and P(blast) per placed cell (keyed by its crop file; a missed cell's P(blast) 0)
    for one generator and µm/px, and the slides' object counts: counted, counted outside any placed
    cell (no leukocyte), rejected."""
    calls: dict[str, str | None] = {}
    p_blast: dict[str, float] = {}
    counts = {"counted": 0, "counted_outside_placed_cells": 0, "rejected": 0}
    for k, chunk in enumerate(slides):
        width, height = slide_size(len(chunk), mpp)
        slide = make_slide(
            work / f"{generator}_{mpp}_{k}.tiff",
            width=width,
            height=height,
            mpp=mpp,
            data_dir=data_dir,
            seed=seed + k,
            crops=[(data_dir / "cells" / f, code) for f, code in chunk],
            generator=generator,
            zones=(0.0, 1.0, 0.0),
        )
        outlines = [Polygon(c.polygon) for c in slide.cells]
        detections, p, rejected = screened_calls(slide.path, work / "screens", config)
        for cell, d in zip(slide.cells, slide_detections(outlines, detections)):
            calls[cell.source], p_blast[cell.source] = (None, 0.0) if d is None else (detections[d][2], p[d])
        counts["counted"] += len(detections)
        counts["counted_outside_placed_cells"] += counted_outside(outlines, detections)
        counts["rejected"] += rejected
        click.echo(f"  {generator} {mpp} µm/px slide {k}: {len(slide.cells)}/{len(chunk)} placed")
    return calls, p_blast, counts


@click.command()
@click.option(
    "--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=ROOT.parent / "shared" / "data", show_default=True
)
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("/tmp/slide_agreement"), show_default=True)
@click.option("--generator", "generators", multiple=True, default=("faithful", "pasted"), show_default=True)
@click.option("--mpp", "mpps", multiple=True, type=float, default=(0.1, 0.25), show_default=True)
@click.option("--cells-per-slide", default=300, show_default=True)
@click.option("--limit", type=int, help="Use N of the locked cells (shuffled by --seed); default all.")
@click.option("--seed", default=12, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=ROOT / "docs" / "slide_agreement.json", show_default=True)
@click.option(
    "--classifier",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Weights to judge instead of the shipped classifier: an exported run (screen needs its card's held-out rates).",
)
@click.option(
    "--detector", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Detector weights to judge, not the shipped."
)
@click.option(
    "--rates-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Weights whose card's held-out rates screen uses with --classifier (a final run's model.pt has none).",
)
@click.option("--tta", is_flag=True, help="Slides and crops both averaged over the 8 rotations/flips.")
def main(
    data_dir: Path,
    work: Path,
    generators,
    mpps,
    cells_per_slide: int,
    limit: int | None,
    seed: int,
    out: Path,
    classifier: Path | None,
    detector: Path | None,
    rates_from: Path | None,
    tta: bool,
) -> None:
    locked = read_locked()
    locked = locked[locked["class"].isin(CLASS_CODES)].sample(frac=1.0, random_state=seed)[:limit]
    cells = list(zip(locked["file"], locked["class"]))
    slides = specimen_slides(locked, cells_per_slide)
    model, card = load_model(classifier)
    weights = (classifier or DEFAULT_WEIGHTS).resolve()
    work.mkdir(parents=True, exist_ok=True)
    screened = with_rates(model, card, rates_from, work) if rates_from else weights
    try:
        rates_from_card(load_card(screened))
    except ModelError as exc:
        raise click.BadParameter(f"{weights}: {exc}; pass --rates-from WEIGHTS", param_hint="--classifier") from None
    config = screen_config(work, screened, tta, detector)
    device = resolve_device("auto")
    t0 = time.time()
    probs = classify_files(
        for_inference(model, device), card, [f for f, _ in cells], CROP_MPP, device=device, tta=tta, base=data_dir / "cells"
    ).probs
    crop_call = dict(zip(locked["file"], np.asarray(CLASS_CODES)[probs.argmax(1)]))
    crop_p_blast = dict(zip(locked["file"], member_probability(probs, BLAST)))
    click.echo(f"{len(cells)} crops classified in {time.time() - t0:.0f} s")
    truth, source = dict(cells), dict(zip(locked["file"], locked["source"]))
    result = {
        "n_locked_cells": len(cells),
        "locked_list_sha256": sha256(LOCKED_TEST),
        "model": f"{'shipped classifier' if classifier is None else weights.name} (sha256 {sha256(weights)[:12]})"
        + (", 8 views averaged" if tta else ""),
        "crop_mpp": CROP_MPP,
        "detector": "shipped U-Net" if detector is None else f"{detector.name} (sha256 {sha256(detector)[:12]})",
        "cells_per_slide": cells_per_slide,
        "slides": f"{len(slides)}, one specimen each",
        "seed": seed,
    }
    if rates_from:
        result["held_out_rates_from"] = f"{rates_from.resolve().name} (sha256 {sha256(rates_from)[:12]})"
    for generator in generators:
        for mpp in mpps:
            t0 = time.time()
            calls, p_blast, counts = run_condition(slides, generator, mpp, data_dir, work, seed, config)
            files = [f for f, _ in cells if f in calls]
            r = paired_accuracy([truth[f] for f in files], [calls[f] for f in files], [crop_call[f] for f in files])
            done = {"generator": generator, "mpp": mpp, **r, **counts, "not_placed": len(cells) - len(files)}
            done["blast_test"] = {}
            for lab in sorted(set(source.values())):
                group = [f for f in files if source[f] == lab]
                lab_truth, slide, crops, p_slide, p_crops = (
                    [v[f] for f in group] for v in (truth, calls, crop_call, p_blast, crop_p_blast)
                )
                done["blast_test"][lab] = blast_agreement(lab_truth, slide, crops, BLAST, p_slide, p_crops)
            per_cell = {"truth": truth, "slide": calls, "crops": crop_call, "slide_p_blast": p_blast, "crop_p_blast": crop_p_blast}
            frame = pd.DataFrame({"file": files, **{k: [v[f] for f in files] for k, v in per_cell.items()}})
            frame.to_csv(work / f"calls_{generator}_{mpp}.csv", index=False)  # per cell, for a closer look
            done["seconds"] = round(time.time() - t0)
            earlier = _earlier_conditions(out, result)  # read again: conditions may run in parallel processes
            result["conditions"] = [c for c in earlier if (c["generator"], c["mpp"]) != (generator, mpp)] + [done]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1) + "\n")  # after every condition: a long run leaves what it finished
            out.with_suffix(".md").write_text(markdown(result))
            click.echo(json.dumps(done))
    click.echo(markdown(result))


def _earlier_conditions(out: Path, result: dict) -> list[dict]:
    """Conditions already in `out` from a run on the same cells and model (kept; a run adds or
    replaces its own), or none."""
    if not out.exists():
        return []
    earlier = json.loads(out.read_text())
    keys = ("n_locked_cells", "locked_list_sha256", "model", "detector", "crop_mpp", "cells_per_slide", "slides", "seed")
    same = all(earlier.get(k) == result[k] for k in keys)
    return earlier["conditions"] if same else []


if __name__ == "__main__":
    main()
