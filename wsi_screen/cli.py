"""Command line: parse, call a pipeline, and turn every expected failure into one line on stderr."""

from __future__ import annotations

import sys

import logging

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
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]), show_default=True)
def train(data, run_dir, config_path, folds, fold, arch, device):
    """Train a cell classifier on DATA (manifest.csv, an LMU tree with annotations.dat, or class folders)."""
    from .train.run import train_run

    config = load_config(config_path)
    if arch:
        config = config.replace("train", arch=arch)
    if fold is not None and not 0 <= fold < max(folds, 1):
        raise click.BadParameter(f"--fold must be in [0, {folds}) and needs --folds", param_hint="--fold")
    train_run(data, run_dir, config, folds, fold, device)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: expected failures become one line and exit code 2."""
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
