"""Build the committed demo slide, wsi_screen/demo/demo_smear.tiff (+ .geojson ground truth),
from locked PBC crops (CC BY 4.0; configs/locked_test.csv, so no shipped model trained on them and
the demo slide measures the classifier end to end) and TXL-PBC fields (MIT) only; never DeepAPL
(research use only). Cells are laid on by the faithful generator (own rim, stain and plasma).

    python pipelines/make_demo_slide.py [--data-dir ../shared/data] [--out wsi_screen/demo/demo_smear.tiff]
"""

from __future__ import annotations

from pathlib import Path

import click

from wsi_screen.synth import make_slide
from wsi_screen.train.splits import read_locked

ROOT = Path(__file__).resolve().parents[1]
# a normal differential plus immature/atypical granulocytes and erythroblasts to find
DEMO_MIX = {
    "NGS": 0.30,
    "NGB": 0.05,
    "LYT": 0.18,
    "MON": 0.08,
    "EOS": 0.05,
    "BAS": 0.02,
    "MYB": 0.09,
    "MMZ": 0.09,
    "PMO": 0.08,
    "EBO": 0.06,
}


@click.command()
@click.option(
    "--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=ROOT.parent / "shared" / "data", show_default=True
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=ROOT / "wsi_screen" / "demo" / "demo_smear.tiff", show_default=True
)
@click.option("--seed", default=2024, show_default=True)
def main(data_dir: Path, out: Path, seed: int) -> None:
    locked = read_locked()
    only_files = set(locked.loc[locked["source"] == "pbc", "file"])
    synth = make_slide(
        out,
        width=10000,
        height=3600,
        mpp=0.25,
        n_leukocytes=150,
        class_mix=DEMO_MIX,
        sources=("pbc",),
        data_dir=data_dir,
        only_files=only_files,
        seed=seed,
        quality=78,
        generator="faithful",
    )
    size_mb = (synth.path.stat().st_size + synth.geojson.stat().st_size) / 1e6
    click.echo(f"{synth.path} and {synth.geojson.name}: {len(synth.cells)} leukocytes, {size_mb:.1f} MB")


if __name__ == "__main__":
    main()
