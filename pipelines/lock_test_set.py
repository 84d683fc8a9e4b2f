"""Lock the test set once: whole DeepAPL patients (every blast class on both sides of the lock) and a
class-stratified share of the PBC images (no patient ids), listed by file name in
configs/locked_test.csv with its SHA-256 in configs/locked_test.csv.sha256. No run trains on these
cells: recipe search, cross-validation and the shipped model use the rest; slide tests and the
README's slide figures use them only. Refuses to overwrite an existing lock.

    PYTHONPATH=$PWD python pipelines/lock_test_set.py ../shared/data/cells
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from wsi_screen.cell_images import read_manifest
from wsi_screen.train.splits import LOCKED_TEST, lock_test_set


@click.command()
@click.argument("cells", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--patients", default=11, show_default=True, help="Whole patients locked (of those with ids).")
@click.option("--image-frac", default=0.15, show_default=True, help="Share of the images without patient ids.")
@click.option("--seed", default=2026, show_default=True)
@click.option("--out", default=str(LOCKED_TEST), show_default=True, type=click.Path(path_type=Path))
def main(cells: Path, patients: int, image_frac: float, seed: int, out: Path):
    if out.exists():
        raise click.ClickException(f"{out}: already locked; a new lock would leak test cells into runs trained on the old rest")
    table = read_manifest(cells / "manifest.csv")
    locked = table[lock_test_set(table, patients, image_frac, seed)]
    rows = locked.assign(
        file=[Path(f).relative_to(cells.resolve()).as_posix() for f in locked["file"].map(lambda f: str(Path(f).resolve()))]
    )
    rows = rows.rename(columns={"label": "class"})[["file", "class", "source", "patient"]].sort_values("file")
    rows.to_csv(out, index=False)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_name(out.name + ".sha256").write_text(f"{digest}  {out.name}\n")
    click.echo(f"{out}: {len(rows)} cells, {rows['patient'].replace('', None).nunique()} patients; sha256 {digest}")
    click.echo(rows.groupby(["source", "class"]).size().unstack(0).fillna(0).astype(int).to_string())


if __name__ == "__main__":
    main()
