"""A screenshot of a slide's report.html in headless Chromium, for the README (docs/report.png)
and for the test that the report renders in a real browser.

    wsi-screen screen wsi_screen/demo/demo_smear.tiff -o out --specimen-id DEMO-1
    python pipelines/report_screenshot.py out/demo_smear/report.html -o docs/report.png --width 1280 --height 1800 --scale 0.6
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import click
from PIL import Image


@click.command()
@click.argument("report", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--width", default=1280, show_default=True, help="Browser window width (px).")
@click.option("--height", default=2000, show_default=True, help="Browser window height (px): the part of the page shot.")
@click.option("--scale", default=1.0, show_default=True, help="Resize the shot by this factor (a smaller PNG for the README).")
def main(report: Path, out: Path, width: int, height: int, scale: float) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise click.ClickException("no Chromium found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={shot}",
        ]
        subprocess.run([*cmd, report.resolve().as_uri()], capture_output=True, timeout=120, check=True)
        img = Image.open(shot).convert("RGB")
        if scale != 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, optimize=True)
    click.echo(f"{out}: {img.width}×{img.height}")


if __name__ == "__main__":
    main()
