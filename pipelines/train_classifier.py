"""Train the shipped CPU classifier and export it with its model card.

    PYTHONPATH=$PWD nohup nice -n 5 python pipelines/train_classifier.py > runs/shipped/train.log 2>&1 &

Resumable: rerunning continues from runs/shipped/last.pt (a finished run only re-exports).
Writes wsi_screen/weights/classifier.pt (fp16) and classifier.json (the model card)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from wsi_screen.config import load_config
from wsi_screen.registry import DEFAULT_WEIGHTS
from wsi_screen.train.export import export
from wsi_screen.train.run import train_run

REPO = Path(__file__).resolve().parents[1]


@click.command()
@click.option("--data", default=str(REPO.parent / "shared" / "data" / "cells"), show_default=True)
@click.option("--run-dir", default=str(REPO / "runs" / "shipped"), show_default=True)
@click.option("--config", "config_path", default=str(REPO / "configs" / "train_cpu.yaml"), show_default=True)
@click.option("--dest", default=str(DEFAULT_WEIGHTS), show_default=True)
@click.option("--export-only", is_flag=True, help="Skip training (e.g. export the best checkpoint of a stopped run after `wsi-screen train` finished it).")
def main(data, run_dir, config_path, dest, export_only):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(config_path)
    if not export_only:
        train_run(data, run_dir, config)
    path = export(run_dir, data, dest, config.sha256(sections=None))
    click.echo(f"shipped weights: {path} ({path.stat().st_size / 1e6:.1f} MB), card: {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
