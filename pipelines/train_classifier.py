"""Train the shipped classifier with a chosen recipe and export it with its model card: N-fold
patient-grouped cross-validation on the unlocked cells (the out-of-fold predictions give the card's
metrics and the prevalence correction's operating rates) and the final model on every unlocked
cell, none held back (the recipe's epochs; its temperature the folds' mean), tested on the locked
cells.
The folds and the final run train in waves of one-thread processes side by side, a lone last run on
every thread (`train.jobs.run_jobs`); resumable.

    PYTHONPATH=$PWD nohup python pipelines/train_classifier.py --config configs/recipes/r1_resnext26ts_96.yaml > runs/shipped.log 2>&1 &

A two-stage recipe runs its second stage with --from-run RUN_DIR_OF_THE_FIRST: the final model and
every fold start from the same run of the first stage, so the folds stay out of fold as a whole.

Writes wsi_screen/weights/classifier.pt (fp16) and classifier.json (the model card)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from wsi_screen.config import load_config
from wsi_screen.model_files import DEFAULT_WEIGHTS
from wsi_screen.train.export import export
from wsi_screen.train.jobs import run_jobs, train_command
from wsi_screen.train.non_leukocytes import cut_non_leukocytes

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The recipe.")
@click.option("--data", default=str(SHARED / "cells"), show_default=True, type=click.Path(exists=True, path_type=Path))
@click.option("--txl", default=str(SHARED / "detection" / "txl_pbc"), show_default=True, type=click.Path(exists=True, path_type=Path))
@click.option("--run-dir", default=str(REPO / "runs" / "shipped"), show_default=True, type=click.Path(path_type=Path))
@click.option("--folds", default=5, show_default=True)
@click.option(
    "--cv-dir",
    type=click.Path(path_type=Path),
    help="Out-of-fold predictions of an existing cross-validation of this recipe (default RUN_DIR/cv).",
)
@click.option("--jobs", default=2, show_default=True, help="Runs trained at once (one thread each; a lone last run gets them all).")
@click.option("--dest", default=str(DEFAULT_WEIGHTS), show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--from-run",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A later stage: each run starts from the same run of this earlier one (its final/best.pt, cv/fold_K/best.pt).",
)
def main(
    config_path: Path, data: Path, txl: Path, run_dir: Path, folds: int, cv_dir: Path | None, jobs: int, dest: Path, from_run: Path | None
):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cv_dir = cv_dir or run_dir / "cv"
    final = run_dir / "final"
    starts = stage_starts(from_run, folds) if from_run else {}
    cut_non_leukocytes(txl, "train", run_dir / "non_leukocytes")  # where final's and the folds' runs look for them
    cut_non_leukocytes(txl, "train", cv_dir.parent / "non_leukocytes")
    todo = [(train_command(data, final, config_path, txl, final=True, init=starts.get("final")), run_dir / "final.log")]
    todo = todo if not (final / "model.pt").is_file() else []
    todo += [
        (train_command(data, cv_dir, config_path, txl, folds, k, init=starts.get(k)), cv_dir / f"fold_{k}.log")
        for k in range(folds)
        if not (cv_dir / f"fold_{k}" / "model.pt").is_file()
    ]
    run_jobs(todo, jobs, REPO)
    path = export(final, cv_dir, folds, data, dest, config_sha256=load_config(config_path).sha256(sections=None))
    click.echo(f"shipped weights: {path} ({path.stat().st_size / 1e6:.1f} MB), card: {path.with_suffix('.json')}")


def stage_starts(earlier: Path, folds: int) -> dict:
    """The earlier stage's weights for each run ('final' and every fold), all present or a one-line error."""
    starts = {"final": earlier / "final" / "best.pt", **{k: earlier / "cv" / f"fold_{k}" / "best.pt" for k in range(folds)}}
    missing = [str(p) for p in starts.values() if not p.is_file()]
    if missing:
        raise click.ClickException(f"{missing[0]}: the earlier stage has not trained this run ({len(missing)} missing)")
    return starts


if __name__ == "__main__":
    main()
