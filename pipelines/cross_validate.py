"""N-fold cross-validation as Matek et al. 2019 ran it: train every fold (patient-grouped where ids
exist, stratified by class), then score the folds' held-out predictions together: Table 1 as
mean ± SD over folds with image counts, blast and atypical ROC AUC ± SD, confusion matrix and ROC
plots (`wsi_screen.evaluate`), with the re-annotators' operating points when DATA is the Matek
tree and its annotations.dat. Each image is held out in exactly one fold, so the pooled labels
file lists every image once. Resumable: rerunning continues each fold from its last checkpoint.

    PYTHONPATH=$PWD python pipelines/cross_validate.py DATA -o runs/cv [--folds 5] [--config configs/train_gpu.yaml]
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from wsi_screen.config import load_config
from wsi_screen.evaluate import evaluate
from wsi_screen.train.run import pooled_labels, train_run


@click.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("-o", "--run-dir", required=True, type=click.Path(path_type=Path))
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2))
@click.option("--config", "config_path", type=click.Path(exists=True), help="YAML config (partial files are fine).")
@click.option("--device", default="auto", show_default=True)
def main(data, run_dir: Path, folds: int, config_path, device):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train_run(data, run_dir, load_config(config_path), folds, None, device)
    preds = [run_dir / f"fold_{k}" / "preds_test.csv" for k in range(folds)]
    annotations = Path(data) / "annotations.dat"  # an AML-Cytomorphology_LMU tree: draw the re-annotators
    report = evaluate(preds, pooled_labels(run_dir, folds), run_dir / "report", annotations=annotations if annotations.is_file() else None)
    b, a = report["blast_test"]["auc"], report["atypical_test"]["auc"]
    click.echo(
        f"{folds}-fold CV: blast AUC {b['mean']:.4f} ± {b['sd']:.4f}, atypical AUC {a['mean']:.4f} ± {a['sd']:.4f}, "
        f"mean sensitivity {report['mean_sensitivity']['mean']:.3f} ± {report['mean_sensitivity']['sd']:.3f} → {run_dir / 'report'}"
    )


if __name__ == "__main__":
    main()
