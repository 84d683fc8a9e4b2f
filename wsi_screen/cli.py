"""Command line: parse, call a pipeline, and turn every expected failure into one line on stderr."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from . import __version__
from .errors import WsiScreenError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsi-screen")
def cli() -> None:
    """Whole-slide blood smear screening (research use only, not for diagnosis)."""


def _slide_options(fn):
    """Options shared by every command that reads a slide."""
    options = [
        click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder; results go to OUT/<slide stem>/."),
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
def detect(slide: Path, out: Path, mpp: float | None, aoi: str, config_path: Path | None, workers: int | None, scheduler: str | None) -> None:
    """Find every leukocyte in SLIDE: QuPath GeoJSON, cells.zarr with 400×400 patches."""
    from .config import load_config
    from .find_cells import detect_slide

    summary = detect_slide(slide, out, load_config(config_path), mpp=mpp, aoi=aoi, workers=workers, scheduler=scheduler)
    click.echo(summary.line())


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
