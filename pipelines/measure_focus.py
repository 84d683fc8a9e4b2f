"""The QC focus score of real smear fields read at a detector's µm/px, sharp and blurred: what sets
`qc.min_focus` (the score depends on the µm/px of the tiles it is read from; docs/detector.md).
Each TXL-PBC field is taken at its source's one µm/px, blurred by a Gaussian of the given µm,
resampled to each detector µm/px and scored as one QC block; medians and 10th-90th percentiles per
source of the fields with cells in them.

    PYTHONPATH=$PWD python pipelines/measure_focus.py ../shared/data/detection/txl_pbc [--mpp 0.5 --mpp 0.75]
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from wsi_screen.cell_images import read_image
from wsi_screen.qc import tile_qc
from wsi_screen.train.detector import resized
from wsi_screen.train.fields import load_fields, source_mpp, source_of

MIN_COVERAGE = 0.02  # as summarize_qc: a block with fewer stained pixels has no cells to judge


def blurred(rgb: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px == 0:
        return rgb
    return np.clip(ndi.gaussian_filter(rgb.astype(np.float32), (sigma_px, sigma_px, 0)), 0, 255).astype(np.uint8)


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="val", show_default=True)
@click.option("--mpp", "mpps", multiple=True, type=float, default=(0.5, 0.75), show_default=True)
@click.option("--blur-um", "blurs", multiple=True, type=float, default=(0.0, 0.5, 1.0), show_default=True)
def main(data: Path, split: str, mpps: tuple[float, ...], blurs: tuple[float, ...]) -> None:
    fields = load_fields(data, split)
    scale = source_mpp(fields)
    scores: dict[tuple[str, float, float], list[float]] = {}
    for field in fields:
        source = source_of(field)
        rgb = read_image(field.image)
        for blur in blurs:
            image = blurred(rgb, blur / scale[source])
            for mpp in mpps:
                qc = tile_qc(resized(image, scale[source] / mpp, Image.BILINEAR))
                if qc.coverage > MIN_COVERAGE:
                    scores.setdefault((source, blur, mpp), []).append(qc.focus)
    print("| source | blur (µm) | " + " | ".join(f"focus at {m} µm/px: median (10th-90th)" for m in mpps) + " |")
    print("|---|---|" + "---|" * len(mpps))
    for source in sorted(scale):
        for blur in blurs:
            cells = []
            for mpp in mpps:
                v = scores.get((source, blur, mpp), [])
                cells.append(f"{np.median(v):.2f} ({np.percentile(v, 10):.2f}-{np.percentile(v, 90):.2f})" if v else "-")
            print(f"| {source} | {blur:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
