"""Where the per-cell slide-vs-crop gap comes from (docs/classifier.md, "Where the slide gap comes
from"): locked cells are laid on faithful slides as `slide_agreement.py` lays them, and each placed
cell is classified four ways with the same model: its crop file; the 29 µm field at its true
centre on the composed smear in memory (no JPEG); the same field read from the written JPEG
pyramid through `patches.extract_patches`; and, with --screen, its call by `wsi-screen screen`.

    PYTHONPATH=$PWD python pipelines/slide_gap.py --limit 600 [--model PATH] [--screen] -o runs/slide_gap
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd
from shapely.geometry import Polygon
from slide_agreement import screen_config, screened_calls, slide_size, specimen_slides  # pipelines/ is on sys.path when run as a script

from wsi_screen.cell_agreement import paired_accuracy, slide_calls
from wsi_screen.cell_images import CROP_MPP
from wsi_screen.classes import CLASS_CODES
from wsi_screen.classify import classify_files, classify_inputs
from wsi_screen.config import PatchConfig, load_config
from wsi_screen.model_files import DEFAULT_WEIGHTS
from wsi_screen.patches import extract_patches, patch_box, resize_patches
from wsi_screen.registry import for_inference, load_model, resolve_device
from wsi_screen.slide import open_slide
from wsi_screen.synth import compose, write_ground_truth, write_pyramid
from wsi_screen.train.splits import read_locked

ROOT = Path(__file__).resolve().parents[1]
CODES = np.asarray(CLASS_CODES)


def field_in_memory(rgb: np.ndarray, x: float, y: float, mpp: float, cfg: PatchConfig) -> np.ndarray:
    """The patch `extract_patches` cuts around (x, y) (same box, same resize), from the smear in
    memory instead of its JPEG pyramid; white beyond the smear."""
    box = patch_box(x, y, mpp, cfg)
    x0, y0, side = box.x0, box.y0, box.width
    field = np.full((side, side, 3), 255, np.uint8)
    ys, xs = slice(max(0, y0), min(rgb.shape[0], y0 + side)), slice(max(0, x0), min(rgb.shape[1], x0 + side))
    field[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = rgb[ys, xs]
    return resize_patches(field[None], cfg.size_px)[0]


@click.command()
@click.option(
    "--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=ROOT.parent / "shared" / "data", show_default=True
)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "runs" / "slide_gap", show_default=True)
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="Default: the shipped classifier.")
@click.option("--limit", default=600, show_default=True, help="Locked cells (shuffled by --seed, as slide_agreement.py).")
@click.option("--mpp", default=0.1, show_default=True)
@click.option("--cells-per-slide", default=300, show_default=True)
@click.option("--seed", default=12, show_default=True)
@click.option("--screen/--no-screen", default=False, show_default=True, help="Also screen each slide (slow).")
def main(data_dir: Path, out: Path, model_path: str | None, limit: int, mpp: float, cells_per_slide: int, seed: int, screen: bool):
    locked = read_locked()
    locked = locked[locked["class"].isin(CLASS_CODES)].sample(frac=1.0, random_state=seed)[:limit]
    truth = dict(zip(locked["file"], locked["class"]))
    weights = Path(model_path) if model_path else DEFAULT_WEIGHTS
    model, card = load_model(weights)
    device = resolve_device("auto")
    model = for_inference(model, device)
    crops = classify_files(model, card, list(truth), CROP_MPP, device=device, base=data_dir / "cells").probs.argmax(1)
    crop_call = dict(zip(truth, CODES[crops]))
    patch_cfg = load_config(None).patches
    out.mkdir(parents=True, exist_ok=True)
    config = screen_config(out, weights)
    rows = []
    for k, cells in enumerate(specimen_slides(locked, cells_per_slide)):
        chunk = [(data_dir / "cells" / f, code) for f, code in cells]
        width, height = slide_size(len(chunk), mpp)
        rng = np.random.default_rng(seed + k)
        smear = compose(
            rng=rng, width=width, height=height, mpp=mpp, data_dir=data_dir, crops=chunk, generator="faithful", zones=(0.0, 1.0, 0.0)
        )
        if not smear.cells:  # none of its crops could be cut out
            continue
        path = out / f"faithful_{mpp}_{k}.tiff"
        write_pyramid(path, smear.rgb, mpp)
        write_ground_truth(path.with_suffix(".geojson"), smear.cells, smear.band, mpp, rng)
        slide = open_slide(path)

        def calls(fields: np.ndarray) -> np.ndarray:
            return CODES[classify_inputs(model, card, resize_patches(fields, card.input_px), 64, device).probs.argmax(1)]

        in_memory = calls(np.stack([field_in_memory(smear.rgb, c.x, c.y, mpp, patch_cfg) for c in smear.cells]))
        from_jpeg = calls(extract_patches(slide, [(c.x, c.y) for c in smear.cells], patch_cfg))
        screened = [None] * len(smear.cells)
        if screen:
            screened = slide_calls([Polygon(c.polygon) for c in smear.cells], screened_calls(path, out / "screens", config)[0])
        for c, a, b, s in zip(smear.cells, in_memory, from_jpeg, screened):
            rows.append({"file": c.source, "truth": truth[c.source], "crop": crop_call[c.source], "in_memory": a, "jpeg": b, "screen": s})
        click.echo(f"slide {k}: {len(smear.cells)}/{len(chunk)} placed")
    table = pd.DataFrame(rows)
    table.to_csv(out / "slide_gap.csv", index=False)
    for column in ("in_memory", "jpeg") + (("screen",) if screen else ()):
        r = paired_accuracy(table["truth"].tolist(), table[column].tolist(), table["crop"].tolist())
        lo, hi = r["difference_ci95"]
        click.echo(f"{column}: {r['slide_accuracy']:.1%} vs crops {r['crop_accuracy']:.1%}, {r['difference']:+.1%} [{lo:+.1%}, {hi:+.1%}]")
    for source, group in table.groupby(table["file"].str.contains("deepapl").map({True: "deepapl", False: "pbc"})):
        crop, memory = (group["crop"] == group["truth"]).mean(), (group["in_memory"] == group["truth"]).mean()
        click.echo(f"{source}: crops {crop:.1%}, in memory {memory:.1%}")


if __name__ == "__main__":
    main()
