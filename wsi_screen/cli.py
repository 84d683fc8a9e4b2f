"""Command line: parse, call a pipeline, and turn every expected failure into one line on stderr."""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import WsiScreenError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsi-screen")
def cli() -> None:
    """Whole-slide blood smear screening (research use only, not for diagnosis)."""


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
