"""Command line: parse, call a pipeline, and turn every expected failure into one line on stderr."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import click

from . import __version__
from .config import load_config
from .errors import WsiScreenError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsi-screen")
def cli() -> None:
    """Whole-slide blood smear screening (research use only, not for diagnosis)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("-o", "--out", "run_dir", required=True, type=click.Path(), help="Run directory (resumed if it holds last.pt).")
@click.option("--config", "config_path", type=click.Path(), help="YAML overriding configs/default.yaml values.")
@click.option("--folds", default=0, show_default=True, help="0: patient-wise held-out split; N: N-fold cross-validation.")
@click.option("--fold", type=int, help="Train only this fold (with --folds).")
@click.option("--arch", help="Registered architecture (overrides train.arch).")
@click.option("--threads", type=click.IntRange(min=1), help="Torch threads on CPU (overrides train.threads).")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]), show_default=True)
@click.option(
    "--exclude", type=click.Path(exists=True, dir_okay=False), help="Locked test list (configs/locked_test.csv): never trained on."
)
@click.option(
    "--non-leukocytes",
    type=click.Path(exists=True, file_okay=False),
    help="TXL-PBC tree: red cells and platelets cut from its train fields train the reject output.",
)
@click.option("--final", is_flag=True, help="No test or validation split (with --folds 0): every cell trains the model to ship.")
@click.option(
    "--init-weights",
    type=click.Path(exists=True, dir_okay=False),
    help="Start from these weights (overrides train.init_weights): a later stage of a multi-stage recipe.",
)
def train(data, run_dir, config_path, folds, fold, arch, threads, device, exclude, non_leukocytes, final, init_weights):
    """Train a cell classifier on DATA (manifest.csv, an LMU tree with annotations.dat, or class folders)."""
    from .train.run import train_run

    config = load_config(config_path)
    if arch:
        config = config.replace("train", arch=arch)
    if threads:
        config = config.replace("train", threads=threads)
    if init_weights:
        config = config.replace("train", init_weights=str(Path(init_weights).resolve()))
    if fold is not None and not 0 <= fold < max(folds, 1):
        raise click.BadParameter(f"--fold must be in [0, {folds}) and needs --folds", param_hint="--fold")
    train_run(data, run_dir, config, folds, fold, device, exclude, non_leukocytes, final)


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("-o", "--out", required=True, type=click.Path(), help="preds.csv to write.")
@click.option("--model", "model_path", type=click.Path(), help="Weights file or shipped name (default: the shipped classifier).")
@click.option("--tta/--no-tta", default=None, help="Average over the 8 rotations/flips (default: classify.tta).")
@click.option(
    "--input-mpp",
    type=click.FloatRange(0, 2, min_open=True),
    help="µm/px of the input images; default (classify.input_mpp 0): each image spans the model's 29 µm field.",
)
@click.option("--config", "config_path", type=click.Path())
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Default: classify.device.")
def classify(input_path, out, model_path, tta, input_mpp, config_path, device):
    """Classify cell images: INPUT is a folder (recursive), a CSV with a `file` column or one image. A model
    that moves each slide's colours (`train.slide_colours`) takes INPUT as one slide's cells."""
    from .classify import classify_files, file_colour_moments, list_inputs, predictions_frame
    from .colour_range import outside_colour_range
    from .registry import for_inference, load_model, resolve_device
    from .slide_colours import group_colours

    cfg = load_config(config_path).classify
    dev = resolve_device(device or cfg.device)
    model, card = load_model(model_path or cfg.model)
    model = for_inference(model, dev)
    files, base = list_inputs(input_path)
    mpp = input_mpp if input_mpp is not None else (cfg.input_mpp or None)
    tta = cfg.tta if tta is None else tta
    moments = file_colour_moments(card, files, mpp, base) if card.colour_range or card.slide_colour_target else None
    slide_colours = group_colours(moments) if card.slide_colour_target else None  # measured once, for both
    result = classify_files(model, card, files, mpp, cfg.batch_size, dev, tta, base=base, slide_colours=slide_colours)
    preds = predictions_frame(files, result, cfg.review_below)
    if card.colour_range:  # a lab's own stain: say which images the classifier's training colours do not cover
        preds["outside_training_colours"] = outside_colour_range(moments, card.colour_range)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    preds.to_csv(out, index=False)
    outside = f", {preds['outside_training_colours'].mean():.0%} outside the classifier's training colours" if card.colour_range else ""
    click.echo(f"{len(files)} image{'s' if len(files) != 1 else ''} → {out}{outside}")


@cli.command("evaluate")
@click.argument("preds", nargs=-1, required=True, type=click.Path(exists=True))
@click.argument("labels", type=click.Path(exists=True))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(), help="Report directory.")
@click.option("--threshold", default=0.5, show_default=True, help="Operating threshold of the blast/atypical tests.")
@click.option(
    "--annotations", type=click.Path(exists=True, dir_okay=False), help="Matek annotations.dat: draw the re-annotators' operating points."
)
def evaluate_cmd(preds, labels, out_dir, threshold, annotations):
    """Score one or more PREDS csv files (e.g. CV folds) against LABELS (csv with file, class[, source])."""
    from .evaluate import evaluate

    report = evaluate(list(preds), labels, out_dir, threshold, annotations)
    click.echo(
        f"balanced accuracy {report['balanced_accuracy']['mean']:.4f}, macro-F1 {report['macro_f1']['mean']:.4f}, "
        f"blast AUC {report['blast_test']['auc']['mean']:.4f}, atypical AUC {report['atypical_test']['auc']['mean']:.4f} → {out_dir}"
    )


@cli.command("human-agreement")
@click.argument("annotations", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print every number as JSON.")
def human_agreement_cmd(annotations, as_json):
    """Inter-observer agreement in an AML-Cytomorphology_LMU annotations.dat (Matek et al. 2019)."""
    import json

    from .agreement import format_agreement, human_agreement

    result = human_agreement(annotations)
    click.echo(json.dumps(result, indent=2) if as_json else format_agreement(result))


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(), help="Directory for the PNGs.")
@click.option("--model", "model_path", type=click.Path(), help="Weights file or shipped name (default: the shipped classifier).")
@click.option("--input-mpp", type=float, help="µm/px of the images; default: each image spans the 29 µm field.")
def saliency(images, out_dir, model_path, input_mpp):
    """Gradient saliency maps (Simonyan et al. 2014) of the predicted class for IMAGES."""
    from .registry import load_model
    from .saliency import save_saliency

    model, card = load_model(model_path)
    for image in images:
        click.echo(save_saliency(model, card, image, out_dir, input_mpp))


def _slide_options(fn):
    """Options shared by every command that reads a slide."""
    options = [
        click.option(
            "-o",
            "--out",
            "out",
            type=click.Path(file_okay=False, path_type=Path),
            required=True,
            help="Output folder; results go to OUT/<slide stem>/.",
        ),
        click.option("--mpp", type=click.FloatRange(min=0, min_open=True), help="µm per level-0 pixel; overrides the file's own value."),
        click.option("--aoi", default="auto", show_default=True, help="auto | full | FILE.geojson (e.g. drawn in QuPath)."),
        click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config (partial files are fine)."),
        click.option("--workers", type=click.IntRange(min=1), help="Local Dask worker processes (default: one per core)."),
        click.option("--scheduler", help="Address of an existing dask.distributed scheduler, e.g. tcp://host:8786."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command()
@click.argument("slide", type=click.Path(path_type=Path))
@_slide_options
def detect(
    slide: Path, out: Path, mpp: float | None, aoi: str, config_path: Path | None, workers: int | None, scheduler: str | None
) -> None:
    """Find every leukocyte in SLIDE: QuPath GeoJSON, cells.zarr with 400×400 patches."""
    from .config import load_config
    from .find_cells import detect_slide

    summary = detect_slide(slide, out, load_config(config_path), mpp=mpp, aoi=aoi, workers=workers, scheduler=scheduler)
    click.echo(summary.line())


def _screen_options(fn):
    """Options of `screen` (and `batch`) beyond the slide options."""
    options = [
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where the models run (default: config, auto)."),
        click.option("--tta", is_flag=True, default=None, help="Average the classifier over the 8 rotations/flips."),
        click.option("--gzip", "gz", is_flag=True, help="Write detections.geojson.gz (automatic above export.gzip_above_cells)."),
        click.option("--specimen-id", help="Shown on the report instead of the slide name."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def screen_config(config_path: Path | None, device: str | None, tta: bool | None):
    """The loaded config with command-line overrides applied (validated like a file)."""
    from .config import load_config

    config = load_config(config_path)
    if device:
        config = config.replace("classify", device=device).replace("detect", device=device)
    if tta is not None:
        config = config.replace("classify", tta=tta)
    return config


@cli.command()
@click.argument("slide", type=click.Path(path_type=Path))
@_slide_options
@_screen_options
def screen(slide: Path, out: Path, mpp, aoi, config_path, workers, scheduler, device, tta, gz, specimen_id) -> None:
    """Screen SLIDE end to end: every leukocyte classified, the differential, blast prevalence with
    its uncertainty, flags, report.html/json, cells.zarr and QuPath GeoJSON."""
    from .screen import ScreenOptions, screen_slide

    options = ScreenOptions(mpp=mpp, aoi=aoi, workers=workers, scheduler=scheduler, specimen_id=specimen_id, gzip=gz)
    result = screen_slide(slide, out, screen_config(config_path, device, tta), options)
    click.echo(result.line())


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_slide_options
@_screen_options
@click.option("--retry-failed", is_flag=True, help="Screen again the slides that failed in an earlier run.")
@click.option(
    "--specimens",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV slide,specimen_id[,aoi] naming each slide's specimen (and AOI).",
)
@click.option(
    "--slides-in-flight", type=click.IntRange(min=1), help="Slides screened at once (default: one per 8 worker threads, at least 1)."
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="WARNING",
    show_default=True,
    help="Of wsi_screen and Dask.",
)
@click.option(
    "--qupath", "qupath_project", is_flag=True, help="Also write OUT/qupath/, a QuPath project of the night (see `wsi-screen qupath`)."
)
def batch(
    inputs,
    out,
    mpp,
    aoi,
    config_path,
    workers,
    scheduler,
    device,
    tta,
    gz,
    specimen_id,
    retry_failed,
    specimens,
    slides_in_flight,
    log_level,
    qupath_project,
) -> None:
    """Screen many slides (files, folders, or text files listing paths) into OUT/, resumably;
    OUT/summary.csv, summary.html and run.json are kept up to date after every slide. A slide's
    AOI may sit beside it as <stem>.aoi.geojson."""
    from .batch import run_batch
    from .screen import ScreenOptions

    logging.getLogger().setLevel(log_level)
    logging.getLogger("distributed").setLevel(log_level)
    options = ScreenOptions(mpp=mpp, aoi=aoi, workers=workers, scheduler=scheduler, specimen_id=specimen_id, gzip=gz)
    rows = run_batch(
        list(inputs),
        out,
        screen_config(config_path, device, tta),
        options,
        retry_failed,
        specimens=specimens,
        slides_in_flight=slides_in_flight,
    )
    failed = [r for r in rows if r.status == "failed"]
    click.echo(f"{len(rows) - len(failed)} slides ok, {len(failed)} failed → {out / 'summary.html'}")
    if qupath_project and len(failed) < len(rows):
        qupath.callback(out)
    for r in failed:
        click.echo(f"failed: {r.error}" + (f" (traceback: {out / r.error_file})" if r.error_file else ""), err=True)
    if failed:
        raise SystemExit(1)


@cli.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def qupath(out: Path) -> None:
    """Write OUT/qupath/, a QuPath 0.5 project of the night in OUT (flagged slides first) and the
    script that imports every slide's cells and screened area with one "Run for project"."""
    from .export.qupath_project import write_project
    from .night import screened_slides

    slides = screened_slides(out)
    path = write_project(out, slides)
    flagged = sum(s.flagged for s in slides)
    click.echo(
        f"{len(slides)} slides ({flagged} flagged, listed first) → {path}; in QuPath run scripts/import_results.groovy with Run for project"
    )


@cli.command("import-review")
@click.argument("review", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("result_dir", metavar="OUT/SLIDE", type=click.Path(file_okay=False, path_type=Path))
@click.option("--reviewer", required=True, help="Who reviewed (stored with the labels).")
def import_review_cmd(review: Path, result_dir: Path, reviewer: str) -> None:
    """Store the classes a reviewer set in QuPath (REVIEW: its GeoJSON export, QuPath >= 0.4)
    beside the model's in OUT/SLIDE/cells.zarr, and print the agreement."""
    from datetime import UTC, datetime

    from .reviewed import import_review

    outcome = import_review(result_dir, review, reviewer, datetime.now(UTC).isoformat(timespec="seconds"))
    click.echo(", ".join(f"{n} {k}" for k, n in outcome.counts().items()) + f" → {result_dir / 'cells.zarr'}")
    click.echo(outcome.agreement.line())


@cli.command("export-cells")
@click.argument("result_dir", metavar="OUT/SLIDE", type=click.Path(file_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
def export_cells_cmd(result_dir: Path, dest: Path) -> None:
    """Write the reviewed cells of OUT/SLIDE into DEST/<CLASS>/ as 29 µm patches, a tree that
    `wsi-screen train` reads (e.g. to fine-tune to a lab's stain with train.init_weights)."""
    from .export_cells import export_cells

    counts = export_cells(result_dir, dest)
    click.echo(f"{sum(counts.values())} reviewed cells → {dest} (" + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())) + ")")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: expected failures become one line and exit code 2."""
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        cli.main(args=argv, prog_name="wsi-screen", standalone_mode=False)
    except WsiScreenError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
